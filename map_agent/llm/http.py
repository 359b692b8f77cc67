"""HTTP for model endpoints with whole-request deadlines and capped reply bodies.

httpx's timeouts bound each socket operation, so a server that sends one byte a second holds a request (and a
run's start-up check) for as long as it likes, and a reply body is read into memory whatever its size.
``BoundedTransport`` bounds the whole request, connect to last byte: a watchdog shuts the request's socket down
at the deadline, and the body is read in chunks and refused past a cap. A request has its connection to itself
(kept alive for the next request once its reply is read), so the watchdog knows which socket to shut down.

>>> with bounded_client(5.0) as client:
...     type(client._transport).__name__
'BoundedTransport'
"""

from __future__ import annotations

import heapq
import http.client
import itertools
import os
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
#: idle kept-alive connections per server (as many as a wide evaluation has requests in flight)
KEPT_ALIVE = 64


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

    Requests go over the standard library's ``http.client`` connections, kept alive between requests where the
    server allows it (up to ``KEPT_ALIVE`` idle ones per server). The transport owns each connection's socket, so
    the watchdog shuts down exactly the one a request is using; a kept-alive connection the server has closed
    meanwhile is replaced once by a new one. A loopback round trip through the httpx client costs about a third
    less CPU than it did on httpcore and h11, and a kept connection saves the TCP (and TLS) set-up of every request
    after the first (``bench/bench_schedule.py``'s ``cpu_per_module_call``). The client above is still ``httpx``,
    as the OpenAI SDK expects; the body is passed on as the server sent it (httpx decodes it)."""

    def __init__(self, deadline: float, max_bytes: int = MAX_REPLY_BYTES) -> None:
        self.deadline, self.max_bytes = deadline, max_bytes
        self._idle: dict[tuple[str, str, int], list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"the URL's scheme is {url.scheme!r}: http or https", request=request)
        origin = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        expired = threading.Event()
        used: list[http.client.HTTPConnection] = []

        def expire() -> None:
            expired.set()
            for conn in used:
                if conn.sock is not None:
                    _shut(conn.sock)

        started = time.monotonic()
        cancel = _DEADLINES.add(self.deadline, expire)
        try:
            conn, reused = self._checkout(origin)
            used.append(conn)
            try:
                reply = self._exchange(conn, request, expired)
            except _STALE:
                if not reused or expired.is_set():
                    raise
                conn.close()  # the server closed the kept connection while it was idle: once more, on a new one
                conn = self._new(origin)
                used.append(conn)
                reply = self._exchange(conn, request, expired)
        except (OSError, http.client.HTTPException) as e:
            _close(used)
            if expired.is_set() or time.monotonic() - started >= self.deadline:
                raise self._late(request) from e
            raise _transport_error(e, connected=used[-1].sock is not None)(str(e) or type(e).__name__,
                                                                          request=request) from e
        except BaseException:
            _close(used)
            raise
        finally:
            cancel()
        status, version, headers, body, reusable = reply
        if expired.is_set():
            conn.close()
            raise self._late(request)
        if reusable:
            self._checkin(origin, conn)
        else:
            conn.close()
        return httpx.Response(status, headers=headers, content=body, request=request,
                              extensions={"http_version": version})

    def _late(self, request: httpx.Request) -> httpx.ReadTimeout:
        """The error of a request the deadline cut, whatever the socket raised when it was shut."""
        return httpx.ReadTimeout(f"no complete reply within {self.deadline:g} s", request=request)

    def _new(self, origin: tuple[str, str, int]) -> http.client.HTTPConnection:
        scheme, host, port = origin
        if scheme == "https":
            return http.client.HTTPSConnection(host, port, timeout=self.deadline, context=tls_context())
        return http.client.HTTPConnection(host, port, timeout=self.deadline)

    def _checkout(self, origin: tuple[str, str, int]) -> tuple[http.client.HTTPConnection, bool]:
        """An idle kept-alive connection to ``origin`` (True) or a new, unconnected one (False)."""
        with self._lock:
            if self._pid != os.getpid():  # a forked child: the parent's connections are not its to use
                self._idle, self._pid = {}, os.getpid()
            idle = self._idle.get(origin)
            if idle:
                return idle.pop(), True
        return self._new(origin), False

    def _checkin(self, origin: tuple[str, str, int], conn: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(origin, [])
            if len(idle) < KEPT_ALIVE:
                idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            _close(conns)

    def _exchange(self, conn: http.client.HTTPConnection, request: httpx.Request,
                  expired: threading.Event) -> tuple[int, bytes, list[tuple[bytes, bytes]], bytes, bool]:
        """Send ``request`` as httpx built it (its own Host and length headers), in one write, and read the
        reply, capped. The head is written here rather than by ``putheader``, whose per-header checks cost more
        than the rest of the request; the one check that matters, no line break inside a header, is kept."""
        lines = [b"%s %s HTTP/1.1" % (request.method.encode("ascii"), request.url.raw_path)]
        for name, value in request.headers.raw:
            if any(c in name or c in value for c in (b"\r", b"\n", b"\0")):
                raise httpx.LocalProtocolError(f"the header {name.decode('latin-1')!r} holds a line break",
                                               request=request)
            lines.append(name + b": " + value)
        if conn.sock is None:
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
        return (response.status, b"HTTP/1.0" if response.version == 10 else b"HTTP/1.1", headers, bytes(body),
                not response.will_close)


#: a kept-alive connection that the server closed while it was idle fails with one of these before any reply
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, ConnectionAbortedError, BrokenPipeError)


def _close(conns: list[http.client.HTTPConnection]) -> None:
    for conn in conns:
        conn.close()


def _transport_error(error: Exception, connected: bool) -> type[httpx.TransportError]:
    """The httpx error the OpenAI SDK and the retry policy expect for a standard-library failure."""
    if isinstance(error, ssl.SSLError):  # the TLS handshake failed (a bad certificate, a plain-HTTP server)
        return httpx.ConnectError
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
