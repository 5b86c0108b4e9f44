"""Unexpected errors: one traceback in the log under a request id, a 500 that carries the id and nothing else.

Every request gets an id (`X-Request-ID` on the response). Handled errors (4xx, and the fallbacks of
the consultation) are logged as the one access line; an exception nothing handled is logged with its
traceback exactly once, here, and the client sees only the id to quote. Starlette's own
ServerErrorMiddleware would print the traceback a second time and answer plain text, so this
middleware sits inside it and never lets the exception through.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("murmurscope.api")


def request_id(scope: Scope) -> str:
    return scope.setdefault("state", {}).setdefault("request_id", uuid.uuid4().hex[:16])


def internal_message(rid: str) -> str:
    return f"internal error (request id {rid}); the server log has the details"


def log_internal(rid: str, where: str) -> None:
    """Log the exception being handled, with its traceback, under the request id."""
    log.exception("request %s: unexpected error on %s", rid, where)


class InternalErrors:
    def __init__(self, app: ASGIApp, internal: Callable[[str], Response]):
        self.app, self.internal = app, internal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id(scope)
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:  # noqa: BLE001 - the one place an unexpected error is turned into a 500
            log_internal(rid, scope.get("path", "?"))
            if not started:
                await self.internal(rid)(scope, receive, send_with_id)
