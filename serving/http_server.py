"""uvicorn for `imgpipe serve`, with a deadline on request headers.

uvicorn closes idle keep-alive connections (timeout_keep_alive) but waits
forever for a request whose headers never finish: one socket per slow client
held open. The protocol below closes a connection whose request headers have
not arrived within `header_timeout` seconds of its first byte (or of the
connection). Slow bodies are the app's side: app.read_body answers 408.
"""
from __future__ import annotations

import asyncio
from typing import Optional

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol


class HeaderTimeoutProtocol(H11Protocol):
    """H11Protocol that closes a connection stuck inside its request headers."""

    header_timeout: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_deadline: Optional[asyncio.TimerHandle] = None
        super().connection_made(transport)
        self._await_headers()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE and self._between_requests():
            self._await_headers()          # a next request has begun (or the first goes on)
        else:
            self._stop_waiting()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    def _between_requests(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _await_headers(self) -> None:
        if self._header_deadline is None:
            self._header_deadline = self.loop.call_later(self.header_timeout, self._headers_late)

    def _stop_waiting(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_late(self) -> None:
        self._header_deadline = None
        if self.conn.their_state is h11.IDLE and self._between_requests() \
                and not self.transport.is_closing():
            self.transport.close()


def server_config(app, host: str, port: int, read_timeout: float) -> uvicorn.Config:
    """uvicorn's configuration: request headers within `read_timeout` seconds."""
    protocol = type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,),
                    {"header_timeout": read_timeout})
    return uvicorn.Config(app, host=host, port=port, log_level="warning", http=protocol,
                          timeout_keep_alive=5)
