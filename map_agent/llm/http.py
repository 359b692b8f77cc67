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

import heapq
import itertools
import socket
import ssl
import threading
import time
from collections.abc import Callable
from functools import cache
from typing import Any

import httpx

#: the largest reply body read from an endpoint (a chat completion is kilobytes)
MAX_REPLY_BYTES = 32 * 1024 * 1024


@cache
def tls_context() -> ssl.SSLContext:
    """httpx's default TLS settings, built once: building them reads the CA bundle, some 20 ms of CPU that every
    new client and every ``httpx.get`` would otherwise spend again (three per ``MAPAgent`` on a server)."""
    return httpx.create_ssl_context()


class _Deadlines:
    """Every request's watchdog on one daemon thread. A ``threading.Timer`` per request started and stopped a thread
    per model call, and each start hands the GIL from thread to thread: under many parallel calls, that is latency
    on every call. Deadlines are kept in a heap; one that finished in time is dropped when it comes up."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, list[bool], Callable[[], None]]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, seconds: float, expire: Callable[[], None]) -> Callable[[], None]:
        """Call ``expire`` (quick: it runs on the watchdog thread) in ``seconds``, unless the returned function is
        called first."""
        cancelled = [False]
        with self._wake:
            entry = (time.monotonic() + seconds, next(self._order), cancelled, expire)
            heapq.heappush(self._heap, entry)
            if self._thread is None or not self._thread.is_alive():  # first use, or a forked child
                self._thread = threading.Thread(target=self._run, name="map-agent-deadlines", daemon=True)
                self._thread.start()
            if self._heap[0] is entry:  # the thread sleeps until the earliest deadline: this one is earlier
                self._wake.notify()

        def cancel() -> None:
            cancelled[0] = True

        return cancel

    def _run(self) -> None:
        with self._wake:
            while True:
                if not self._heap:
                    self._wake.wait()
                    continue
                due, _, cancelled, expire = self._heap[0]
                if cancelled[0]:
                    heapq.heappop(self._heap)
                elif due > time.monotonic():
                    self._wake.wait(due - time.monotonic())
                else:
                    heapq.heappop(self._heap)
                    expire()


_DEADLINES = _Deadlines()


class ReplyTooLarge(httpx.TransportError):
    """A reply body over ``MAX_REPLY_BYTES``: the server misbehaves, the request failed (and may be retried)."""


class BoundedTransport(httpx.HTTPTransport):
    """An ``httpx`` transport whose every request ends within ``deadline`` seconds (raising ``httpx.ReadTimeout``)
    and whose reply bodies are at most ``max_bytes`` (raising ``ReplyTooLarge``)."""

    def __init__(self, deadline: float, max_bytes: int = MAX_REPLY_BYTES, **kwargs: Any) -> None:
        super().__init__(limits=httpx.Limits(max_keepalive_connections=0), **{"verify": tls_context(), **kwargs})
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
        started = time.monotonic()
        cancel = _DEADLINES.add(self.deadline, expire)
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
            cancel()
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
