"""Sanic application of the web server.

Each feature contributes a blueprint (`BLUEPRINT_FACTORIES`): the web chat page and widget
assets, the operator console. Sanic is the server Rasa itself runs on, so no second web
framework is installed.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from sanic import Blueprint, Sanic, response
from sanic.request import Request

from bot.settings import Settings

#: "module:function" returning a Blueprint, given the settings.
BLUEPRINT_FACTORIES: tuple[str, ...] = (
    "bot.webchat.routes:webchat_blueprint",
    "bot.console.routes:console_blueprint",
)


def create_app(settings: Settings, name: str = "fusiondesk_web") -> Sanic:
    """Build the web application for `settings`."""
    app = Sanic(name)
    app.config.FALLBACK_ERROR_FORMAT = "json"
    app.ctx.settings = settings

    @app.get("/healthz")
    async def healthz(request: Request) -> response.HTTPResponse:
        return response.json({"status": "ok"})

    for spec in BLUEPRINT_FACTORIES:
        module_name, _, function = spec.partition(":")
        factory: Callable[[Settings], Blueprint] = getattr(
            importlib.import_module(module_name), function
        )
        app.blueprint(factory(settings))
    return app
