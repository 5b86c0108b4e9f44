"""Request-size limits enforced on what is actually received.

`Content-Length` is a claim: a chunked body, or one whose header lies, is only bounded by counting
the bytes the server reads. `BodyLimit` is a pure ASGI middleware that wraps `receive`; once the
count passes the limit it stops reading, discards whatever the application answers and sends 413.

`check_json_shape` bounds the number of JSON values in a body before `json.loads` turns each of
them into a Python object: 200,000 tiny messages fit in 7 MB and cost hundreds of MB as objects.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import aclosing
from pathlib import Path
from tempfile import SpooledTemporaryFile

from fastapi import HTTPException, Request
from fastapi.routing import APIRoute
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# A JSON string: quote, then runs of ordinary characters or escapes, then quote (unrolled, no backtracking).
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


class BodyTooLarge(Exception):
    """Raised from `receive` when the body passes the limit; the middleware answers 413."""


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int, too_large: Callable[[], Response]):
        self.app, self.max_bytes, self.too_large = app, max_bytes, too_large

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self.too_large()(scope, receive, send)
            return
        received = 0
        over = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, over
            if over:
                raise BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    over = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over:  # whatever the app makes of the aborted read, the client gets the 413
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLarge:
            pass
        except Exception:
            if not over:
                raise
        if over and not started:
            await self.too_large()(scope, receive, send)


def json_value_count(body: bytes) -> int:
    """An upper bound on the values in a JSON text, from its structure with the strings removed."""
    skeleton = _JSON_STRING.sub(b"0", body)
    return skeleton.count(b",") + skeleton.count(b"[") + skeleton.count(b"{") + 1


class _SpoolInDir(MultiPartParser):
    """Starlette's multipart parser, with uploads over 1 MB spooled to `spool_dir` rather than $TMPDIR."""

    def __init__(self, *args, spool_dir: Path | None, **kwargs):
        super().__init__(*args, **kwargs)
        self.spool_dir = spool_dir

    def on_headers_finished(self) -> None:
        super().on_headers_finished()
        upload = self._current_part.file
        if upload is not None and self.spool_dir is not None:
            default = upload.file  # still in memory: nothing has been written to it
            upload.file = SpooledTemporaryFile(max_size=self.spool_max_size, dir=self.spool_dir)
            self._files_to_close_on_error[-1] = upload.file
            default.close()


def bounded_route(max_values: int, too_many: Callable[[int], Exception], max_files: int,
                  spool_dir: Path | None) -> type[APIRoute]:
    """A FastAPI route class that refuses JSON bodies of more than `max_values` values before parsing,
    and parses multipart bodies itself: at most `max_files` files, spooled to `spool_dir`."""

    class BoundedRoute(APIRoute):
        def get_route_handler(self):
            handler = super().get_route_handler()

            async def bounded(request: Request) -> Response:
                content_type = request.headers.get("content-type", "")
                if content_type.startswith("application/json"):
                    count = json_value_count(await request.body())  # cached: the handler reuses it
                    if count > max_values:
                        raise too_many(count)
                elif content_type.startswith("multipart/form-data"):
                    try:
                        async with aclosing(request.stream()) as stream:
                            parser = _SpoolInDir(request.headers, stream, max_files=max_files, max_fields=64,
                                                 spool_dir=spool_dir)
                            # Starlette's Request.form() returns this parsed form instead of parsing again.
                            request._form = await parser.parse()
                    except MultiPartException as e:
                        raise HTTPException(400, e.message) from None
                return await handler(request)

            return bounded

    return BoundedRoute
