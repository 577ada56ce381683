"""One pure ASGI middleware in front of the app: request metrics, body-size and body-time limits,
API key and readiness for /v1/*. It is pure ASGI (not BaseHTTPMiddleware) so it adds no task per
request, and it runs before FastAPI parses anything, so an oversized, slow or unauthenticated
body is refused without being decoded.

Every resource a client holds is bounded: a body is at most ``max_body_bytes`` and must arrive
within ``body_timeout`` seconds of the request's headers (408, then the connection is closed);
at most ``max_connections`` connections are open when a request arrives (the set of them comes
from `protocol`; beyond it 503 ``overloaded`` and the connection is closed). When a shutdown's
drain ends and uvicorn cancels what is left, a request still reading its body or waiting for the
worker is answered 503 ``shutting_down`` instead of a bare 500.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time

from transalign.serve.config import RETRY_AFTER_S
from transalign.serve.errors import ApiError

_BODY_METHODS = {"POST", "PUT", "PATCH"}
TICKET = "transalign.ticket"  # scope key of the request's `batcher.Ticket`
CONNECTIONS = "transalign.connections"  # key in scope["state"] of the set of open connections (`protocol`)


class Guard:
    """Wraps the FastAPI app; errors it raises itself use the same JSON format as the app's."""

    def __init__(self, app, *, metrics, batcher, max_body_bytes: int, body_timeout: float, max_connections: int,
                 api_key: str | None, is_ready, known_paths):
        self.app, self.metrics, self.batcher, self.max_body = app, metrics, batcher, max_body_bytes
        self.body_timeout, self.max_connections = body_timeout, max_connections
        self.api_key = api_key.encode() if api_key else None
        self.is_ready, self.known_paths = is_ready, known_paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        path = scope["path"] if scope["path"] in self.known_paths else "other"
        status, ticket, started = 500, None, False

        async def send_recording(message):
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
            await send(message)

        align = path == "/v1/align"
        if align:
            self.metrics.in_flight.inc()
        try:
            error = self._check(scope)
            if error is None and align and scope["method"] == "POST":
                # tell the batcher a request is coming, so that it may wait for it (not longer)
                ticket = scope[TICKET] = self.batcher.expect()
            if error is None and scope["method"] in _BODY_METHODS:
                receive, error = await self._read_body(scope, receive)
                if receive is None:  # the client disconnected before sending its body
                    status = 499
                    return
            if error is not None:
                await send_error(send_recording, error)
            else:
                await self.app(scope, receive, send_recording)
        except asyncio.CancelledError:  # uvicorn's shutdown drain is over
            if started:
                raise
            await send_error(send_recording, ApiError(503, "shutting_down", "the server is shutting down and "
                                                      "could not finish this request in time (--shutdown-timeout); "
                                                      "retry on another instance", headers={"Connection": "close"}))
        finally:
            self.batcher.release(ticket)
            if align:
                self.metrics.in_flight.dec()
            self.metrics.request(path, status, time.perf_counter() - start)

    def _check(self, scope) -> ApiError | None:
        connections = scope.get("state", {}).get(CONNECTIONS)
        if connections is not None and len(connections) > self.max_connections:
            return ApiError(503, "overloaded", f"the server holds its limit of {self.max_connections} open connections "
                            f"(--max-connections); retry after {RETRY_AFTER_S} s",
                            headers={"Retry-After": str(RETRY_AFTER_S), "Connection": "close"})
        if not scope["path"].startswith("/v1/"):
            return None
        if self.api_key is not None:
            header = dict(scope["headers"]).get(b"authorization", b"")
            scheme, _, token = header.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self.api_key):
                return ApiError(401, "unauthorized", "this server needs 'Authorization: Bearer <key>' "
                                "with the key of its --api-key-file", headers={"WWW-Authenticate": "Bearer"})
        reason = self.is_ready()
        if reason is not None:
            return ApiError(503, "not_ready", reason, headers={"Retry-After": "1"})
        return None

    async def _read_body(self, scope, receive):
        """The whole body, at most max_body bytes within body_timeout seconds, replayed to the app
        as one message. Refusals close the connection: the rest of the body is not read."""
        close = {"Connection": "close"}
        too_large = ApiError(413, "body_too_large", f"the request body is larger than this server's limit of "
                             f"{self.max_body} bytes (--max-body-bytes); send fewer pairs per request", headers=close)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            return receive, too_large
        chunks, size = [], 0
        try:
            async with asyncio.timeout(self.body_timeout):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":  # the client went away
                        return None, None
                    chunks.append(message.get("body", b""))
                    size += len(chunks[-1])
                    if size > self.max_body:
                        return receive, too_large
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            return receive, ApiError(408, "body_timeout", f"the request body did not arrive within "
                                     f"{self.body_timeout:g} s (--body-timeout); {size} bytes came", headers=close)
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return replay, None


async def send_error(send, error: ApiError) -> None:
    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
