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
import http.client
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
#: bytes read from a reply at a time
CHUNK_BYTES = 64 * 1024


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


class BoundedTransport(httpx.BaseTransport):
    """An ``httpx`` transport whose every request ends within ``deadline`` seconds (raising ``httpx.ReadTimeout``)
    and whose reply bodies are at most ``max_bytes`` (raising ``ReplyTooLarge``).

    Each request is one ``http.client`` connection of the standard library: the transport owns its socket (the
    watchdog shuts exactly that one down), and a loopback round trip costs about a third of the CPU that httpcore
    and h11 spend on it (``bench/bench_schedule.py``'s ``cpu_per_module_call``). The client above it is still
    ``httpx``, as the OpenAI SDK expects; the body is passed on as the server sent it (httpx decodes it)."""

    def __init__(self, deadline: float, max_bytes: int = MAX_REPLY_BYTES) -> None:
        self.deadline, self.max_bytes = deadline, max_bytes

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                url.host, url.port or 443, timeout=self.deadline, context=tls_context())
        elif url.scheme == "http":
            conn = http.client.HTTPConnection(url.host, url.port or 80, timeout=self.deadline)
        else:
            raise httpx.UnsupportedProtocol(f"the URL's scheme is {url.scheme!r}: http or https", request=request)
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            if conn.sock is not None:
                _shut(conn.sock)

        started = time.monotonic()
        cancel = _DEADLINES.add(self.deadline, expire)
        try:
            status, version, headers, body = self._exchange(conn, request, expired)
        except (OSError, http.client.HTTPException) as e:
            if expired.is_set() or time.monotonic() - started >= self.deadline:
                raise httpx.ReadTimeout(f"no complete reply within {self.deadline:g} s", request=request) from e
            raise _transport_error(e, connected=conn.sock is not None)(str(e) or type(e).__name__,
                                                                      request=request) from e
        finally:
            cancel()
            conn.close()
        if expired.is_set():
            raise httpx.ReadTimeout(f"no complete reply within {self.deadline:g} s", request=request)
        return httpx.Response(status, headers=headers, content=body, request=request,
                              extensions={"http_version": version})

    def _exchange(self, conn: http.client.HTTPConnection, request: httpx.Request,
                  expired: threading.Event) -> tuple[int, bytes, list[tuple[bytes, bytes]], bytes]:
        """Send ``request`` as httpx built it (its own Host and length headers), in one write, and read the
        reply, capped. The head is written here rather than by ``putheader``, whose per-header checks cost more
        than the rest of the request; the one check that matters, no line break inside a header, is kept."""
        lines = [b"%s %s HTTP/1.1" % (request.method.encode("ascii"), request.url.raw_path)]
        for name, value in request.headers.raw:
            if any(c in name or c in value for c in (b"\r", b"\n", b"\0")):
                raise httpx.LocalProtocolError(f"the header {name.decode('latin-1')!r} holds a line break",
                                               request=request)
            lines.append(name + b": " + value)
        conn.connect()
        if expired.is_set():  # the deadline passed while connecting: the watchdog found no socket to shut
            _shut(conn.sock)
        conn.sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + request.read())
        response = http.client.HTTPResponse(conn.sock, method=request.method)
        try:
            response.begin()
            body = bytearray()
            while chunk := response.read(CHUNK_BYTES):
                body += chunk
                if len(body) > self.max_bytes:
                    raise ReplyTooLarge(f"the reply body exceeds {self.max_bytes // 2**20} MiB", request=request)
        finally:
            response.close()
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.getheaders()]
        return response.status, b"HTTP/1.0" if response.version == 10 else b"HTTP/1.1", headers, bytes(body)


def _transport_error(error: Exception, connected: bool) -> type[httpx.TransportError]:
    """The httpx error the OpenAI SDK and the retry policy expect for a standard-library failure."""
    if isinstance(error, TimeoutError):
        return httpx.ReadTimeout if connected else httpx.ConnectTimeout
    if isinstance(error, http.client.HTTPException):
        return httpx.RemoteProtocolError
    return httpx.ReadError if connected else httpx.ConnectError


def _shut(sock: socket.socket) -> None:
    """End a socket's blocking reads at once (from another thread); a TLS socket's own ``shutdown`` would also drop
    its TLS state under the reading thread, so the operating system's is called."""
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:  # already closed
        pass


def bounded_client(deadline: float, **kwargs: Any) -> httpx.Client:
    """An ``httpx.Client`` on ``BoundedTransport``: every request within ``deadline`` seconds, capped bodies."""
    return httpx.Client(transport=BoundedTransport(deadline), timeout=deadline, **kwargs)
