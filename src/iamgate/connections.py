"""HTTP connections with deadlines: a request head must arrive in time, an idle one closes.

aiohttp (3.14) bounds the size of a request head (`max_line_size`, `max_field_size`,
`max_headers`) and closes a connection that has not sent a whole request within
`keepalive_timeout` of its start or of its last answer (an hour by default; `idle_timeout`
here), but has no shorter deadline for a head once begun: a client may send it a byte at a
time. `GuardedRunner` serves an application as `web.AppRunner` does, with each connection
given `head_timeout` seconds from the first byte of a request head to its last; a client
that is late is answered 408 and disconnected. It relies on private parts of aiohttp (the
runner's `_make_server`, the `Server`'s `_kwargs`, a connection's `_request_count`,
`_messages` and `_waiter`), which tests/pipeline/test_limits.py exercises.

Bodies are bounded where they are read (`proxy/body.py`), since only the reader knows
whether it is waiting for the client or the client for it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

_LATE_BODY = b"iamgate: the request head came too slowly\n"
_LATE = (
    b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: text/plain\r\n"
    + f"Content-Length: {len(_LATE_BODY)}\r\n\r\n".encode()
    + _LATE_BODY
)


class GuardedRunner(web.AppRunner):
    """`web.AppRunner` whose connections must send each request head within
    `head_timeout` seconds of its first byte, and close after `idle_timeout` idle."""

    def __init__(
        self, app: web.Application, *, head_timeout: float, idle_timeout: float, **kwargs: Any
    ) -> None:
        super().__init__(app, keepalive_timeout=idle_timeout, **kwargs)
        self._head_timeout = head_timeout

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()  # starts the application
        return _GuardedServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=asyncio.get_running_loop(),
            head_timeout=self._head_timeout,
            **plain._kwargs,
        )


class _GuardedServer(web.Server):
    def __init__(self, *args: Any, head_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timeout = head_timeout

    def __call__(self) -> RequestHandler:
        return _GuardedConnection(
            self, loop=self._loop, head_timeout=self._head_timeout, **self._kwargs
        )


class _GuardedConnection(RequestHandler):
    """A connection that times each request head from its first byte.

    Bytes that arrive while the connection waits for a request (before the first, or
    between requests) begin a head; once a request has been parsed the count of requests
    moves on and the deadline no longer applies. Body bytes arrive while a request is being
    handled, never while the connection waits, so they never start the timer.
    """

    __slots__ = ("_head_count", "_head_timeout", "_head_timer")

    def __init__(self, manager: web.Server, *, head_timeout: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._head_timeout = head_timeout
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_count = 0

    def data_received(self, data: bytes) -> None:
        waiting = not self._messages and (
            self._request_count == 0 or (self._waiter is not None and not self._waiter.done())
        )
        super().data_received(data)
        if self._head_timer is not None and self._request_count != self._head_count:
            self._head_timer.cancel()  # that head arrived whole
            self._head_timer = None
        if self._head_timer is None and waiting and data and not self._messages:
            self._head_count = self._request_count
            self._head_timer = self._loop.call_later(self._head_timeout, self._head_late)

    def _head_late(self) -> None:
        self._head_timer = None
        if self._request_count != self._head_count or self.transport is None:
            return
        self.transport.write(_LATE)
        self.force_close()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)
