"""The console API over real HTTP: sign-in, sessions, CSRF, ownership, closed tickets, masking."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid

import pytest
import requests
import sqlalchemy as sa
import websockets

from bot.handoff.db import session_scope
from bot.handoff.models import ConsoleSession
from tests.console.conftest import Operator, WebServer


def new_ticket(web: WebServer, sender: str | None = None) -> int:
    ticket, _ = web.repo.open_ticket(
        sender or f"cust-{uuid.uuid4().hex[:8]}", "request_human", "socketio"
    )
    return ticket.id


def test_page_is_served_with_a_strict_policy(web: WebServer) -> None:
    page = requests.get(f"{web.url}/console/", timeout=10)
    assert page.status_code == 200 and "operator console" in page.text
    csp = page.headers["Content-Security-Policy"]
    assert (
        "script-src 'self'" in csp
        and "frame-ancestors 'none'" in csp
        and "unsafe-inline" not in csp
    )
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    script = requests.get(f"{web.url}/console/static/app.js", timeout=10)
    assert (
        script.status_code == 200
        and "textContent" in script.text
        and "innerHTML" not in script.text
    )
    assert requests.get(f"{web.url}/console/static/../routes.py", timeout=10).status_code == 404


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/me"),
        ("GET", "/tickets"),
        ("GET", "/tickets/1"),
        ("POST", "/tickets/1/claim"),
        ("POST", "/tickets/1/messages"),
        ("POST", "/tickets/1/handback"),
        ("POST", "/tickets/1/resolve"),
        ("POST", "/logout"),
    ],
)
def test_no_session_is_401(web: WebServer, method: str, path: str) -> None:
    response = requests.request(method, f"{web.url}/console/api{path}", json={}, timeout=10)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthenticated"
    forged = requests.request(
        method,
        f"{web.url}/console/api{path}",
        json={},
        cookies={"fd_console": "forged-token"},
        timeout=10,
    )
    assert forged.status_code == 401


def test_sign_in(web: WebServer) -> None:
    wrong = requests.post(
        f"{web.url}/console/api/login",
        json={"name": "alice", "password": "nope nope nope"},
        timeout=10,
    )
    assert wrong.status_code == 401 and wrong.json()["message"] == "Wrong name or password."
    unknown = requests.post(
        f"{web.url}/console/api/login", json={"name": "mallory", "password": "x" * 12}, timeout=10
    )
    assert unknown.status_code == 401 and unknown.json() == wrong.json()
    form = requests.post(
        f"{web.url}/console/api/login", data={"name": "alice", "password": "x"}, timeout=10
    )
    assert form.status_code == 400  # a cross-site HTML form cannot post JSON
    alice = web.login("alice")
    cookie = alice.http.cookies.get("fd_console")
    assert cookie and len(cookie) >= 40
    raw = requests.post(
        f"{web.url}/console/api/login",
        json={"name": "alice", "password": "a long test password"},
        timeout=10,
    ).headers["Set-Cookie"]
    assert "HttpOnly" in raw and "SameSite=Strict" in raw and "Path=/console" in raw
    me = alice.get("/me").json()
    assert me["operator"]["name"] == "alice" and me["csrf_token"] == alice.csrf
    with session_scope(web.repo.engine) as session:
        stored = session.execute(sa.select(ConsoleSession.token_hash)).scalars().all()
    assert cookie not in stored  # only its hash is kept


def test_repeated_failures_are_throttled(web: WebServer) -> None:
    statuses = [
        requests.post(
            f"{web.url}/console/api/login",
            json={"name": "carol", "password": f"wrong {n}"},
            timeout=10,
        ).status_code
        for n in range(6)
    ]
    assert statuses[:5] == [401] * 5 and statuses[5] == 429


def test_csrf_and_origin_are_required(web: WebServer) -> None:
    alice = web.login("alice")
    ticket_id = new_ticket(web)
    assert alice.post(f"/tickets/{ticket_id}/claim", csrf=None).status_code == 403
    assert alice.post(f"/tickets/{ticket_id}/claim", csrf="guessed").json()["error"] == "csrf"
    cross_site = alice.http.post(
        f"{web.url}/console/api/tickets/{ticket_id}/claim",
        json={},
        headers={"X-CSRF-Token": alice.csrf, "Origin": "https://evil.example"},
        timeout=10,
    )
    assert cross_site.status_code == 403
    assert web.repo.get_ticket(ticket_id).state.value == "waiting"  # nothing happened
    assert alice.post(f"/tickets/{ticket_id}/claim").status_code == 200


def test_claim_ownership_and_closed_tickets(web: WebServer) -> None:
    alice, bob = web.login("alice"), web.login("bob")
    ticket_id = new_ticket(web)
    assert bob.get(f"/tickets/{ticket_id}").status_code == 200  # waiting: anyone may look
    assert alice.post(f"/tickets/{ticket_id}/claim").status_code == 200
    lost = bob.post(f"/tickets/{ticket_id}/claim")
    assert lost.status_code == 409 and "alice" in lost.json()["message"]
    # another operator's ticket: 403 for reading and for every action
    assert bob.get(f"/tickets/{ticket_id}").status_code == 403
    assert (
        bob.post(
            f"/tickets/{ticket_id}/messages", {"text": "hi", "client_msg_id": uuid.uuid4().hex}
        ).status_code
        == 403
    )
    assert bob.post(f"/tickets/{ticket_id}/handback").status_code == 403
    assert bob.post(f"/tickets/{ticket_id}/resolve", {"note": "x"}).status_code == 403
    listing = {t["id"]: t for t in bob.get("/tickets").json()["tickets"]}
    assert listing[ticket_id]["readable"] is False and listing[ticket_id]["agent_name"] == "alice"
    # bad input
    assert alice.post(f"/tickets/{ticket_id}/messages", {"text": "   "}).status_code == 400
    assert alice.post(f"/tickets/{ticket_id}/messages", {"text": "x" * 4001}).status_code == 400
    assert alice.post(f"/tickets/{ticket_id}/resolve", {"note": ""}).status_code == 400
    assert alice.get("/tickets/999999").status_code == 404
    # resolve with a note, then replying is a clear 409
    resolved = alice.post(
        f"/tickets/{ticket_id}/resolve", {"note": "Card blocked, new one ordered."}
    )
    assert resolved.status_code == 200 and resolved.json()["ticket"]["state"] == "resolved"
    late = alice.post(
        f"/tickets/{ticket_id}/messages",
        {"text": "one more thing", "client_msg_id": uuid.uuid4().hex},
    )
    assert late.status_code == 409
    assert late.json() == {
        "error": "ticket_closed",
        "message": f"ticket {ticket_id} is resolved: the customer is back with the bot, so the reply was not sent",
    }
    assert alice.post(f"/tickets/{ticket_id}/handback").status_code == 409
    assert alice.post(f"/tickets/{ticket_id}/claim").status_code == 409


def test_reply_is_masked_kept_as_text_and_not_replayed(web: WebServer) -> None:
    alice = web.login("alice")
    ticket_id = new_ticket(web)
    alice.post(f"/tickets/{ticket_id}/claim")
    client_id = uuid.uuid4().hex
    body = {
        "text": "Your card 4111 1111 1111 1111 <img src=x onerror=alert(1)>",
        "client_msg_id": client_id,
    }
    sent = alice.post(f"/tickets/{ticket_id}/messages", body)
    assert sent.status_code == 201
    message = sent.json()["message"]
    assert message["text"] == "Your card **** **** **** 1111 <img src=x onerror=alert(1)>"
    assert message["delivery"] == "pending"  # no Rasa here: kept and retried, not lost
    replay = alice.post(f"/tickets/{ticket_id}/messages", body)
    assert replay.status_code == 409 and replay.json()["error"] == "duplicate"
    transcript = alice.get(f"/tickets/{ticket_id}").json()["messages"]
    assert [m["text"] for m in transcript if m["author"] == "agent"] == [message["text"]]
    assert "4111 1111" not in json.dumps(transcript)


def test_logout_and_expiry_end_the_session(web: WebServer) -> None:
    alice = web.login("alice")
    assert alice.post("/logout").status_code == 200
    assert alice.get("/me").status_code == 401
    replayed = requests.get(
        f"{web.url}/console/api/me",
        cookies={"fd_console": alice.http.cookies.get("fd_console") or "x"},
        timeout=10,
    )
    assert replayed.status_code == 401
    bob = web.login("bob")
    with session_scope(web.repo.engine) as session:
        session.execute(sa.update(ConsoleSession).values(expires_at=time.time() - 1))
    assert bob.get("/tickets").status_code == 401


def test_live_events_need_a_session_and_push_changes(web: WebServer) -> None:
    alice = web.login("alice")
    ws_url = web.url.replace("http://", "ws://") + "/console/api/live"

    async def scenario() -> list[dict]:
        async with websockets.connect(ws_url) as anonymous:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(anonymous.recv(), 5)
            assert closed.value.code == 4401
        cookie = f"fd_console={alice.http.cookies.get('fd_console')}"
        async with websockets.connect(
            ws_url, extra_headers={"Cookie": cookie}, origin="https://evil.example"
        ) as foreign:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(foreign.recv(), 5)
            assert closed.value.code == 4401  # cross-site websocket hijacking refused
        async with websockets.connect(ws_url, extra_headers={"Cookie": cookie}) as live:
            hello = json.loads(await asyncio.wait_for(live.recv(), 5))
            assert hello == {"type": "hello", "operator": "alice"}
            ticket_id = new_ticket(web)  # opened by "the action server"
            seen = [json.loads(await asyncio.wait_for(live.recv(), 5))]
            await asyncio.to_thread(alice.post, f"/tickets/{ticket_id}/claim")
            await asyncio.to_thread(
                alice.post,
                f"/tickets/{ticket_id}/messages",
                {"text": "hello", "client_msg_id": uuid.uuid4().hex},
            )
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not any(e.get("type") == "message" for e in seen):
                seen.append(json.loads(await asyncio.wait_for(live.recv(), 5)))
            return seen

    events = asyncio.run(scenario())
    assert events[0] == {"type": "queue"}
    message = next(e["message"] for e in events if e["type"] == "message")
    assert message["text"] == "hello" and message["author"] == "agent"


def _claim_over_http(
    operator: Operator,
    ticket_id: int,
    barrier: threading.Barrier,
    statuses: dict[str, int],
    name: str,
) -> None:
    barrier.wait()
    statuses[name] = operator.post(f"/tickets/{ticket_id}/claim").status_code


def test_two_operators_claim_at_once_over_http(web: WebServer) -> None:
    alice, bob = web.login("alice"), web.login("bob")
    for _ in range(5):
        ticket_id = new_ticket(web)
        barrier = threading.Barrier(2, timeout=60)
        statuses: dict[str, int] = {}
        threads = [
            threading.Thread(target=_claim_over_http, args=(op, ticket_id, barrier, statuses, name))
            for name, op in (("alice", alice), ("bob", bob))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(statuses.values()) == [200, 409], statuses
        winner = "alice" if statuses["alice"] == 200 else "bob"
        assert web.repo.get_ticket(ticket_id).agent_name == winner
