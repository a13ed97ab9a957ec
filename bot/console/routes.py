"""The operator console: page, JSON API and live events under `/console/`.

A thin HTTP layer over `bot.handoff.service`. Security model:

- Sign-in with a name and password (argon2id hashes, `fusiondesk operator add`). The session is a
  random token in an HttpOnly, SameSite=Strict cookie scoped to `/console`; the database keeps
  only its SHA-256, with an expiry that slides with use (`console_session_hours`).
- Every state-changing request must carry the session's CSRF token in `X-CSRF-Token` and, when
  the browser sends an `Origin`, come from this host; replies carry a client message id, so a
  replayed request is refused (409) instead of sending twice.
- No session → 401; another operator's ticket → 403; a closed ticket → 409 with the reason.
- The page renders every message with `textContent` and is served with a strict CSP.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Coroutine
from functools import wraps
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sanic import Blueprint, response
from sanic.exceptions import WebsocketClosed
from sanic.request import Request
from websockets.exceptions import ConnectionClosed

from bot.handoff.config import HandoffConfig
from bot.handoff.db import get_engine
from bot.handoff.errors import (
    AlreadyClaimedError,
    DuplicateMessageError,
    HandoffError,
    IllegalTransitionError,
    NotYourTicketError,
    TicketClosedError,
    TicketNotFoundError,
)
from bot.handoff.rasa_client import RasaClient
from bot.handoff.repository import HandoffRepository, SessionView
from bot.handoff.service import HandoffService, visible_to
from bot.handoff.states import TicketEvent, TicketState
from bot.settings import Settings

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_FILES = {"app.js": "text/javascript", "app.css": "text/css"}
COOKIE = "fd_console"
CSRF_HEADER = "X-CSRF-Token"
MAX_REPLY_CHARS = 4000
MAX_NOTE_CHARS = 4000
#: Failed sign-ins allowed per name and address within `LOGIN_WINDOW_S`.
LOGIN_ATTEMPTS, LOGIN_WINDOW_S = 5, 300.0

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

Handler = Callable[..., Coroutine[Any, Any, response.HTTPResponse]]


def _error(status: int, code: str, message: str) -> response.HTTPResponse:
    return response.json({"error": code, "message": message}, status=status)


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another site."""
    origin = request.headers.get("origin")
    if not origin:
        return True
    return urlsplit(origin).netloc == request.headers.get("host", "")


class LoginThrottle:
    """Counts failed sign-ins per (name, address); refuses after `LOGIN_ATTEMPTS`."""

    def __init__(self) -> None:
        self._failures: dict[tuple[str, str], list[float]] = {}

    def blocked(self, key: tuple[str, str]) -> bool:
        now = time.monotonic()
        recent = [t for t in self._failures.get(key, []) if now - t < LOGIN_WINDOW_S]
        self._failures[key] = recent
        return len(recent) >= LOGIN_ATTEMPTS

    def failed(self, key: tuple[str, str]) -> None:
        self._failures.setdefault(key, []).append(time.monotonic())

    def succeeded(self, key: tuple[str, str]) -> None:
        self._failures.pop(key, None)


def console_blueprint(settings: Settings) -> Blueprint:
    """The console blueprint for the web server (`bot.web.app.BLUEPRINT_FACTORIES`)."""
    config = HandoffConfig.load()
    repository = HandoffRepository(get_engine(settings.db_url))
    rasa_url = os.environ.get("FUSIONDESK_RASA_URL") or settings.rasa_url
    service = HandoffService(repository, RasaClient(rasa_url, settings.rasa_token), config)
    hasher = PasswordHasher()
    dummy_hash = hasher.hash(secrets.token_urlsafe(16))
    throttle = LoginThrottle()
    session_ttl_s = config.console_session_hours * 3600

    bp = Blueprint("operator_console", url_prefix="/console")
    bp.ctx.service = service

    async def db(function: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, function, *args)

    @bp.listener("after_server_start")
    async def _start(app: Any, loop: Any) -> None:
        service.start()

    @bp.listener("before_server_stop")
    async def _stop(app: Any, loop: Any) -> None:
        await service.stop()

    @bp.middleware("response")
    async def _headers(request: Request, resp: response.HTTPResponse) -> None:
        if resp is not None:
            for key, value in SECURITY_HEADERS.items():
                resp.headers.setdefault(key, value)

    async def current_session(request: Request) -> SessionView | None:
        token = request.cookies.get(COOKIE)
        if not token:
            return None
        return await db(repository.session_for, _hash_token(token), session_ttl_s)

    def authenticated(handler: Handler) -> Handler:
        """401 without a valid session; CSRF and origin checks on state-changing methods."""

        @wraps(handler)
        async def wrapper(request: Request, *args: Any, **kwargs: Any) -> response.HTTPResponse:
            session = await current_session(request)
            if session is None:
                return _error(
                    401,
                    "unauthenticated",
                    "Sign in to the console first (your session may have expired).",
                )
            if request.method not in ("GET", "HEAD", "OPTIONS"):
                supplied = request.headers.get(CSRF_HEADER, "")
                if not _same_origin(request) or not hmac.compare_digest(
                    supplied, session.csrf_token
                ):
                    return _error(
                        403,
                        "csrf",
                        "Request refused: missing or wrong CSRF token. Reload the console.",
                    )
            return await handler(request, session, *args, **kwargs)

        return wrapper

    def errors(handler: Handler) -> Handler:
        """Translate the handoff error vocabulary into HTTP statuses."""

        @wraps(handler)
        async def wrapper(*args: Any, **kwargs: Any) -> response.HTTPResponse:
            try:
                return await handler(*args, **kwargs)
            except TicketNotFoundError as e:
                return _error(404, "not_found", str(e))
            except NotYourTicketError as e:
                return _error(403, "not_your_ticket", str(e))
            except AlreadyClaimedError as e:
                return _error(409, "already_claimed", str(e))
            except TicketClosedError as e:
                return _error(409, "ticket_closed", str(e))
            except DuplicateMessageError as e:
                return _error(409, "duplicate", str(e))
            except IllegalTransitionError as e:
                return _error(409, "illegal_transition", str(e))
            except HandoffError as e:
                return _error(400, "handoff_error", str(e))

        return wrapper

    def json_body(request: Request) -> dict[str, Any]:
        if "application/json" not in request.headers.get("content-type", ""):
            raise ValueError("send JSON (Content-Type: application/json)")
        try:
            body = json.loads(request.body or b"{}")
        except ValueError as e:
            raise ValueError("the body is not valid JSON") from e
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        return body

    # -- page ------------------------------------------------------------------------------

    @bp.get("/")
    async def index(request: Request) -> response.HTTPResponse:
        return await response.file(STATIC_DIR / "index.html", mime_type="text/html; charset=utf-8")

    @bp.get("/static/<name>")
    async def static(request: Request, name: str) -> response.HTTPResponse:
        if name not in STATIC_FILES:
            return _error(404, "not_found", "no such file")
        return await response.file(
            STATIC_DIR / name, mime_type=f"{STATIC_FILES[name]}; charset=utf-8"
        )

    # -- sign-in ---------------------------------------------------------------------------

    @bp.post("/api/login")
    async def login(request: Request) -> response.HTTPResponse:
        if not _same_origin(request):
            return _error(403, "csrf", "Sign-in from another site refused.")
        try:
            body = json_body(request)
        except ValueError as e:
            return _error(400, "bad_request", str(e))
        name, password = str(body.get("name", "")).strip(), str(body.get("password", ""))
        key = (name.lower(), request.remote_addr or request.ip or "")
        if throttle.blocked(key):
            return _error(429, "too_many_attempts", "Too many failed sign-ins; wait five minutes.")
        found = await db(repository.credentials, name) if name else None
        try:
            await db(hasher.verify, found[1] if found else dummy_hash, password)
            ok = found is not None
        except (VerificationError, InvalidHashError):
            ok = False
        if not ok or found is None:
            throttle.failed(key)
            return _error(401, "bad_credentials", "Wrong name or password.")
        throttle.succeeded(key)
        operator, password_hash = found
        if hasher.check_needs_rehash(password_hash):
            await db(repository.set_password_hash, operator.id, await db(hasher.hash, password))
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        expires_at = await db(
            repository.create_session, operator.id, _hash_token(token), csrf, session_ttl_s
        )
        resp = response.json(
            {
                "operator": {"id": operator.id, "name": operator.name},
                "csrf_token": csrf,
                "expires_at": expires_at,
            }
        )
        secure = request.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"
        resp.cookies[COOKIE] = token
        cookie = resp.cookies[COOKIE]
        cookie["httponly"] = True
        cookie["samesite"] = "Strict"
        cookie["path"] = "/console"
        cookie["max-age"] = int(session_ttl_s)
        if secure:
            cookie["secure"] = True
        return resp

    @bp.post("/api/logout")
    @authenticated
    async def logout(request: Request, session: SessionView) -> response.HTTPResponse:
        token = request.cookies.get(COOKIE, "")
        await db(repository.delete_session, _hash_token(token))
        resp = response.json({"ok": True})
        resp.cookies[COOKIE] = ""
        resp.cookies[COOKIE]["max-age"] = 0
        resp.cookies[COOKIE]["path"] = "/console"
        return resp

    @bp.get("/api/me")
    @authenticated
    async def me(request: Request, session: SessionView) -> response.HTTPResponse:
        return response.json(
            {
                "operator": {"id": session.operator.id, "name": session.operator.name},
                "csrf_token": session.csrf_token,
                "expires_at": session.expires_at,
            }
        )

    # -- tickets ---------------------------------------------------------------------------

    @bp.get("/api/tickets")
    @authenticated
    async def tickets(request: Request, session: SessionView) -> response.HTTPResponse:
        now = time.time()
        views = await db(repository.list_tickets, now - 24 * 3600)
        me_id = session.operator.id
        items, position = [], 0
        for ticket in views:
            if not ticket.state.is_open and ticket.agent_id != me_id:
                continue
            item = ticket.as_dict()
            item["mine"] = ticket.agent_id == me_id
            item["readable"] = visible_to(ticket, me_id)
            item["waiting_s"] = (ticket.claimed_at or ticket.closed_at or now) - ticket.opened_at
            if ticket.state is TicketState.WAITING:
                position += 1
                item["position"] = position
                item["waiting_s"] = now - ticket.opened_at
            items.append(item)
        online = await db(repository.operators_online)
        return response.json({"tickets": items, "now": now, "operators_online": online})

    async def readable_ticket(ticket_id: int, session: SessionView) -> Any:
        ticket = await db(repository.get_ticket, ticket_id)
        if not visible_to(ticket, session.operator.id):
            raise NotYourTicketError(
                f"ticket {ticket_id} belongs to {ticket.agent_name or 'another operator'}"
            )
        return ticket

    @bp.get("/api/tickets/<ticket_id:int>")
    @authenticated
    @errors
    async def ticket_detail(
        request: Request, session: SessionView, ticket_id: int
    ) -> response.HTTPResponse:
        ticket = await readable_ticket(ticket_id, session)
        messages = await db(repository.messages, ticket_id)
        item = ticket.as_dict()
        item["mine"] = ticket.agent_id == session.operator.id
        return response.json({"ticket": item, "messages": [m.as_dict() for m in messages]})

    @bp.post("/api/tickets/<ticket_id:int>/claim")
    @authenticated
    @errors
    async def claim(
        request: Request, session: SessionView, ticket_id: int
    ) -> response.HTTPResponse:
        ticket = await service.claim(ticket_id, session.operator.id)
        return response.json({"ticket": ticket.as_dict()})

    @bp.post("/api/tickets/<ticket_id:int>/release")
    @authenticated
    @errors
    async def release(
        request: Request, session: SessionView, ticket_id: int
    ) -> response.HTTPResponse:
        ticket = await service.release(ticket_id, session.operator.id)
        return response.json({"ticket": ticket.as_dict()})

    @bp.post("/api/tickets/<ticket_id:int>/messages")
    @authenticated
    @errors
    async def reply(
        request: Request, session: SessionView, ticket_id: int
    ) -> response.HTTPResponse:
        try:
            body = json_body(request)
        except ValueError as e:
            return _error(400, "bad_request", str(e))
        text = str(body.get("text", "")).strip()
        client_msg_id = body.get("client_msg_id")
        if not text:
            return _error(400, "empty", "Write a message first.")
        if len(text) > MAX_REPLY_CHARS:
            return _error(
                400, "too_long", f"A reply can have at most {MAX_REPLY_CHARS} characters."
            )
        if client_msg_id is not None and (
            not isinstance(client_msg_id, str) or not 8 <= len(client_msg_id) <= 64
        ):
            return _error(400, "bad_request", "client_msg_id must be a string of 8–64 characters.")
        message = await service.reply(ticket_id, session.operator.id, text, client_msg_id)
        return response.json({"message": message.as_dict()}, status=201)

    @bp.post("/api/tickets/<ticket_id:int>/handback")
    @authenticated
    @errors
    async def hand_back(
        request: Request, session: SessionView, ticket_id: int
    ) -> response.HTTPResponse:
        ticket = await service.close(ticket_id, session.operator.id, TicketEvent.HAND_BACK)
        return response.json({"ticket": ticket.as_dict()})

    @bp.post("/api/tickets/<ticket_id:int>/resolve")
    @authenticated
    @errors
    async def resolve(
        request: Request, session: SessionView, ticket_id: int
    ) -> response.HTTPResponse:
        try:
            body = json_body(request)
        except ValueError as e:
            return _error(400, "bad_request", str(e))
        note = str(body.get("note", "")).strip()
        if not note:
            return _error(400, "empty", "Write a resolution note: what was done for the customer.")
        if len(note) > MAX_NOTE_CHARS:
            return _error(400, "too_long", f"A note can have at most {MAX_NOTE_CHARS} characters.")
        ticket = await service.close(ticket_id, session.operator.id, TicketEvent.RESOLVE, note)
        return response.json({"ticket": ticket.as_dict()})

    # -- live events -----------------------------------------------------------------------

    @bp.websocket("/api/live")
    async def live(request: Request, ws: Any) -> None:
        session = await current_session(request)
        if session is None or not _same_origin(request):
            await ws.close(code=4401, reason="sign in first")
            return
        subscriber = service.subscribe(session.operator.id)
        token_hash = _hash_token(request.cookies.get(COOKIE, ""))
        # The browser only listens; a finished recv() means it closed the connection.
        receiver = asyncio.ensure_future(ws.recv())
        try:
            await ws.send(json.dumps({"type": "hello", "operator": session.operator.name}))
            while True:
                getter = asyncio.ensure_future(subscriber.queue.get())
                done, _ = await asyncio.wait(
                    {getter, receiver}, timeout=30, return_when=asyncio.FIRST_COMPLETED
                )
                if getter in done:
                    await ws.send(json.dumps(getter.result()))
                    continue
                getter.cancel()
                if receiver in done:
                    if receiver.cancelled() or receiver.exception() is not None:
                        break  # the browser closed the connection
                    receiver = asyncio.ensure_future(ws.recv())  # the page said something: ignore
                    continue
                # Quiet for 30 s: check the session still holds (sign-out, expiry).
                if await db(repository.session_for, token_hash, session_ttl_s) is None:
                    await ws.close(code=4401, reason="session ended")
                    break
                await ws.send(json.dumps({"type": "ping"}))
        except (ConnectionClosed, WebsocketClosed, asyncio.CancelledError):
            pass
        finally:
            receiver.cancel()
            service.unsubscribe(subscriber)

    return bp
