"""HTTP for model endpoints with whole-request deadlines and capped reply bodies.

httpx's timeouts bound each socket operation, so a server that sends one byte a second holds a request (and a
run's start-up check) for as long as it likes, and a reply body is read into memory whatever its size.
``BoundedTransport`` bounds the whole request, connect to last byte: a watchdog shuts the request's socket down
at the deadline, and the body is read in chunks and refused past a cap. Keep-alive is off so that every request
has a socket of its own to shut down (one TCP connect per request: nothing next to a model reply).

>>> with bounded_client(5.0) as client:
...     type(client._transport).__name__
'BoundedTransport'
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import httpx

#: the largest reply body read from an endpoint (a chat completion is kilobytes)
MAX_REPLY_BYTES = 32 * 1024 * 1024


class ReplyTooLarge(httpx.TransportError):
    """A reply body over ``MAX_REPLY_BYTES``: the server misbehaves, the request failed (and may be retried)."""


class BoundedTransport(httpx.HTTPTransport):
    """An ``httpx`` transport whose every request ends within ``deadline`` seconds (raising ``httpx.ReadTimeout``)
    and whose reply bodies are at most ``max_bytes`` (raising ``ReplyTooLarge``)."""

    def __init__(self, deadline: float, max_bytes: int = MAX_REPLY_BYTES, **kwargs: Any) -> None:
        super().__init__(limits=httpx.Limits(max_keepalive_connections=0), **kwargs)
        self.deadline, self.max_bytes = deadline, max_bytes

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        sockets: list[socket.socket] = []
        expired = threading.Event()
        outer_trace = request.extensions.get("trace")

        def trace(event: str, info: dict[str, Any]) -> None:  # httpcore reports each new connection's stream
            if event == "connection.connect_tcp.complete" and info.get("return_value") is not None:
                sock = info["return_value"].get_extra_info("socket")
                if sock is not None:
                    sockets.append(sock)
                    if expired.is_set():
                        _shut(sock)
            if outer_trace:
                outer_trace(event, info)

        def expire() -> None:
            expired.set()
            for sock in sockets:
                _shut(sock)

        request.extensions["trace"] = trace
        watchdog = threading.Timer(self.deadline, expire)
        watchdog.daemon = True
        started = time.monotonic()
        watchdog.start()
        try:
            response = super().handle_request(request)
            try:
                body = bytearray()
                for chunk in response.stream:
                    body += chunk
                    if len(body) > self.max_bytes:
                        raise ReplyTooLarge(f"the reply body exceeds {self.max_bytes // 2**20} MiB", request=request)
            finally:
                response.close()
        except httpx.TransportError as e:
            if expired.is_set() or time.monotonic() - started >= self.deadline:
                raise httpx.ReadTimeout(f"no complete reply within {self.deadline:g} s", request=request) from e
            raise
        finally:
            watchdog.cancel()
        if expired.is_set():
            raise httpx.ReadTimeout(f"no complete reply within {self.deadline:g} s", request=request)
        return httpx.Response(response.status_code, headers=response.headers, content=bytes(body),
                              request=request, extensions={"http_version": response.extensions.get("http_version",
                                                                                                    b"HTTP/1.1")})


def _shut(sock: socket.socket) -> None:
    """End a socket's blocking reads at once (from another thread)."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed
        pass


def bounded_client(deadline: float, **kwargs: Any) -> httpx.Client:
    """An ``httpx.Client`` on ``BoundedTransport``: every request within ``deadline`` seconds, capped bodies."""
    return httpx.Client(transport=BoundedTransport(deadline), timeout=deadline, **kwargs)
