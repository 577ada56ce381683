"""uvicorn's h11 protocol with a deadline for a request's headers, and the open connections in
each request's scope.

uvicorn bounds how long a finished connection stays idle (``timeout_keep_alive``) but not how
long a client may take to send a request's headers: a connection that sends nothing, or half a
request line, holds one of the ``--max-connections`` slots forever (enough of them and every
new client is refused). Here each connection must start a request within ``timeout`` seconds of
opening, and of its previous response; otherwise it is closed. The body then has its own
deadline (`middleware.Guard`, the same ``--body-timeout``).

The connection cap itself is `middleware.Guard`'s (it answers in the service's JSON error shape;
uvicorn's ``limit_concurrency`` answers plain text): the set of open connections reaches it as
``scope["state"][CONNECTIONS]``.
"""

from __future__ import annotations

from uvicorn.protocols.http.h11_impl import H11Protocol

from transalign.serve.middleware import CONNECTIONS


def with_header_timeout(timeout: float) -> type[H11Protocol]:
    """The protocol class to give uvicorn (``Config(http=...)``)."""

    class HeaderTimeoutProtocol(H11Protocol):
        _timer = None

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.app_state = {**self.app_state, CONNECTIONS: self.connections}  # copied into each scope

        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def connection_lost(self, exc) -> None:
            if self._timer is not None:
                self._timer.cancel()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self.loop.call_later(timeout, self._no_request, self.cycle)

        def _no_request(self, cycle) -> None:
            """No request began since the timer was armed (the cycle is the same one, and not one
            still being answered: a pipelined request may have begun in on_response_complete)."""
            idle = self.cycle is cycle and (cycle is None or cycle.response_complete)
            if idle and not self.transport.is_closing():
                self.transport.close()

    return HeaderTimeoutProtocol
