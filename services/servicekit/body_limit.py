"""Request bodies are capped: 413 for a body over the limit, before it is read whole.

A request that declares a `Content-Length` over the limit is answered at once,
without running the route. One that does not (chunked), or that sends more
than it declared, is counted as it is received: the chunk that crosses the
limit raises a 413 inside the route's body read, so at most the limit plus one
chunk is ever held. Nothing the route would have written happens: the body is
read before any handler runs.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.servicekit.problems import problem_response

DEFAULT_MAX_BODY_BYTES = 1024 * 1024


class BodyTooLarge(HTTPException):
    """Raised while receiving a body that grew past the limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, too_large(limit))


def too_large(limit: int) -> str:
    return f"request body too large: at most {limit} bytes"


class BodyLimitMiddleware:
    """Pure ASGI, so the body is never buffered by a middleware layer of its own."""

    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, receive, send)
            return

        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge:
            # Raised outside an app that turns it into a problem itself.
            if started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The client may still be sending: closing the connection after the answer
        # is the server's business (uvicorn does), reading the rest is not ours.
        response = problem_response(413, too_large(self.max_bytes), headers={"Connection": "close"})
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
