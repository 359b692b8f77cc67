"""A local OpenAI-compatible chat server for tests, on 127.0.0.1: it answers every MAP module with the smallest
reply the module's JSON schema (quoted in the system prompt) accepts -- slowly, never, or with garbage, as told.

>>> with FakeOpenAI() as server:
...     from map_agent.llm import make_chat_model
...     make_chat_model("openai", "m", base_url=server.url, cache=False).invoke("hi").content
'{}'
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SCHEMA_MARK = "follows this JSON schema:\n"


def smallest(schema: dict[str, Any], defs: dict[str, Any] | None = None) -> Any:
    """The simplest value a JSON schema accepts: required properties only, one item, the lowest number."""
    defs = defs if defs is not None else schema.get("$defs", {})
    if "$ref" in schema:
        return smallest(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return smallest(options[0], defs)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        return {name: smallest(props[name], defs) for name in schema.get("required", [])}
    if kind == "array":
        n = min(max(1, schema.get("minItems", 1)), schema.get("maxItems", 1))
        return [smallest(schema.get("items", {}), defs) for _ in range(n)]
    if kind in ("integer", "number"):
        return schema.get("minimum", 0)
    if kind == "string":
        return "x" * max(1, schema.get("minLength", 1))
    if kind == "boolean":
        return True
    return None


def schema_reply(body: dict[str, Any]) -> str:
    """The reply to a chat request: the smallest instance of the schema in its system message, else ``{}``."""
    for message in body.get("messages", []):
        content = message.get("content")
        if isinstance(content, str) and SCHEMA_MARK in content:
            return json.dumps(smallest(json.loads(content.split(SCHEMA_MARK, 1)[1].strip())))
    return "{}"


class FakeOpenAI:
    """Serve ``/v1/chat/completions`` (any path, in fact) until the ``with`` block ends.

    ``delay``: seconds before each answer; ``hang_after``: answer that many requests, then hold every later
    connection open without a byte until the server stops; ``respond``: ``(n, body) -> (status, content type,
    bytes)`` or ``None`` for the normal reply, to script errors and garbage; ``keep_alive``: speak HTTP/1.1 and keep
    connections open between requests, as real model servers do (default: HTTP/1.0, one request per connection).
    ``requests`` keeps every request, with the client's port (``client_port``: one per connection).
    """

    def __init__(self, delay: float = 0.0, hang_after: int | None = None,
                 respond: Callable[[int, dict[str, Any]], tuple[int, str, bytes] | None] | None = None,
                 path: str = "/v1", keep_alive: bool = False) -> None:
        self.delay, self.hang_after, self.respond, self.path = delay, hang_after, respond, path
        self.keep_alive = keep_alive
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_port}{self.path}"

    def __enter__(self) -> FakeOpenAI:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if self.keep_alive else "HTTP/1.0"
            disable_nagle_algorithm = True  # as model servers do: a reply's head and body go out at once

            def do_POST(self) -> None:  # noqa: N802 -- http.server's naming
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with fake._lock:
                    n = len(fake.requests)
                    fake.requests.append({"path": self.path, "body": body, "headers": dict(self.headers),
                                          "client_port": self.client_address[1]})
                if fake.hang_after is not None and n >= fake.hang_after:
                    fake._stop.wait()  # never answer while the server runs
                    return
                if fake.delay:
                    fake._stop.wait(fake.delay)
                scripted = fake.respond(n, {"path": self.path, "body": body, "headers": dict(self.headers)}) \
                    if fake.respond else None
                status, kind, data = scripted or (200, "application/json", completion(schema_reply(body)))
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", kind)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (timeout, Ctrl-C)
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    def wait_for(self, n: int, timeout: float = 60.0) -> None:
        """Block until ``n`` requests have arrived."""
        deadline = time.monotonic() + timeout
        while len(self.requests) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.requests)} of {n} requests after {timeout} s")
            time.sleep(0.05)


def completion(text: str) -> bytes:
    """A chat-completion response body whose reply is ``text``."""
    return json.dumps({
        "id": "fake", "object": "chat.completion", "created": 0, "model": "fake",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }).encode()
