"""How much an OpenAI-compatible server can read and write at once: its context window, and prompt sizes in its
tokens.

A request whose prompt plus reply budget exceeds the window fails in a server-specific way: OpenAI and vLLM refuse
it (400), llama-cpp-python's server refuses only a prompt that alone fills the window and otherwise *silently*
stops generating at the window's end -- a reply cut mid-JSON with ``finish_reason`` "length", which looks like a
model that cannot follow the format. So the window is learned before a run (``inspect_server``) and each request's
reply budget is fitted into it (``OpenAICompatibleChat`` in ``backends``).

Where the window comes from, first answer wins: an explicit ``context_length``; llama.cpp's llama-server
(``GET /props``); vLLM (``max_model_len`` in ``GET /v1/models``); llama-server's model metadata in the same
listing; for llama-cpp-python's server, which reports neither, one over-long request whose refusal names the
window (sent only to loopback and private addresses, never to a public API); else it stays unknown until a refusal
at run time names it (``window_in_refusal``).
"""

from __future__ import annotations

import ipaddress
import math
import re
import socket
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel

from map_agent.llm.http import tls_context

#: the refusal of OpenAI, vLLM and llama-cpp-python alike when a request does not fit the window
CONTEXT_REFUSAL = re.compile(r"maximum context length is (\d+) tokens")
#: tokens of the over-long probe: more than any window llama-cpp-python serves (its tokenizer reads it in ~0.5 s)
PROBE_TOKENS = 2**20
#: a chat template's tokens around each message (role header and end marker: ChatML, Llama 3 and Gemma use 5)
TOKENS_PER_MESSAGE = 6
#: a chat template's tokens around the whole prompt (BOS, the assistant's header: ChatML 3, Llama 3 5)
TOKENS_PER_PROMPT = 16
#: seconds each discovery request may take: they are small, and a server that is slow here is slow anyway
DISCOVERY_TIMEOUT = 10.0

TokenizerKind = Literal["llama-cpp-python", "llama-server", "vllm"]


class ContextWindowError(ValueError):
    """A request cannot fit the server's context window with a reply budget a valid reply needs."""


def window_in_refusal(error: object) -> int | None:
    """The window a context-length refusal (an exception or its text) names, else ``None``.

    >>> window_in_refusal(ValueError("This model's maximum context length is 2048 tokens. However, ..."))
    2048
    """
    found = CONTEXT_REFUSAL.search(str(error))
    return int(found[1]) if found else None


def server_root(base_url: str) -> str:
    """The server's root for its own (non-OpenAI) endpoints: the base URL without its ``/v1``.

    >>> server_root("http://127.0.0.1:8080/v1/")
    'http://127.0.0.1:8080'
    """
    url = base_url.rstrip("/")
    return url[:-3] if url.endswith("/v1") else url


def is_private(url: str) -> bool:
    """Whether the endpoint's host is this machine or a private network (every address it resolves to).

    >>> is_private("http://127.0.0.1:8000/v1"), is_private("https://api.openai.com/v1")
    (True, False)
    """
    host = (urlsplit(url).hostname or "").split("%")[0]
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        addresses = {ipaddress.ip_address(host)}
    except ValueError:
        try:
            addresses = {ipaddress.ip_address(info[4][0].split("%")[0]) for info in socket.getaddrinfo(host, None)}
        except (OSError, ValueError):
            return False
    return bool(addresses) and all(a.is_loopback or a.is_private or a.is_link_local for a in addresses)


class ServerTokenizer(BaseModel):
    """A server's own tokenize endpoint: exact counts in the served model's vocabulary."""

    kind: TokenizerKind
    root: str
    model: str
    headers: dict[str, str] = {}
    timeout: float = DISCOVERY_TIMEOUT

    def request(self) -> tuple[str, Callable[[str], dict[str, Any]], Callable[[dict[str, Any]], int]]:
        """(URL, body of a text, count from the answer) for this kind of server."""
        if self.kind == "llama-cpp-python":
            return f"{self.root}/extras/tokenize/count", lambda t: {"input": t}, lambda r: int(r["count"])
        if self.kind == "llama-server":
            return f"{self.root}/tokenize", lambda t: {"content": t}, lambda r: len(r["tokens"])
        return (f"{self.root}/tokenize", lambda t: {"model": self.model, "prompt": t, "add_special_tokens": False},
                lambda r: int(r["count"]))

    def count(self, text: str) -> int:
        url, body, answer = self.request()
        reply = httpx.post(url, json=body(text), headers=self.headers, timeout=self.timeout)
        reply.raise_for_status()
        return answer(reply.json())


def estimate_tokens(text: str) -> int:
    """A conservative token count without a tokenizer: a third of the characters (English prose averages four per
    token; JSON, digits and names fewer).

    >>> estimate_tokens("x" * 10)
    4
    """
    return math.ceil(len(text) / 3)


class PromptCounter:
    """Prompt sizes in tokens: each message's text counted exactly where the server tokenizes (else estimated),
    plus the chat template's overhead, which no endpoint reports.

    Counts are memoised per message text: a run sends the same system prompt and in-context examples thousands
    of times, and only the last user message is new. ``upper_bound`` needs no request at all (no tokenizer makes
    more tokens than UTF-8 bytes), so a prompt that clearly fits is never tokenized.
    """

    def __init__(self, tokenizer: ServerTokenizer | None = None, memo_size: int = 4096) -> None:
        self.tokenizer = tokenizer
        self.memo_size = memo_size
        self._memo: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def exact(self) -> bool:
        return self.tokenizer is not None

    def text_tokens(self, text: str) -> int:
        with self._lock:
            if text in self._memo:
                self._memo.move_to_end(text)
                return self._memo[text]
        if self.tokenizer is None:
            return estimate_tokens(text)
        try:
            n = self.tokenizer.count(text)
        except (httpx.HTTPError, ValueError, KeyError, TypeError):  # the tokenizer failed: estimate this one
            return max(estimate_tokens(text), len(text.encode()) // 2)
        with self._lock:
            self._memo[text] = n
            if len(self._memo) > self.memo_size:
                self._memo.popitem(last=False)
        return n

    def prompt_tokens(self, texts: list[str]) -> int:
        return sum(self.text_tokens(t) + TOKENS_PER_MESSAGE for t in texts) + TOKENS_PER_PROMPT

    @staticmethod
    def upper_bound(texts: list[str]) -> int:
        return sum(len(t.encode()) + TOKENS_PER_MESSAGE for t in texts) + TOKENS_PER_PROMPT


class ServerInfo(BaseModel):
    """What a server said about itself: its window (and where that came from) and its tokenizer, if any."""

    context_length: int | None = None
    source: str | None = None
    tokenizer: ServerTokenizer | None = None


def inspect_server(base_url: str, model: str, api_key: str | None, *, want_window: bool = True,
                   timeout: float = DISCOVERY_TIMEOUT) -> ServerInfo:
    """Ask an OpenAI-compatible server for its context window and tokenizer (see the module docstring); every
    question that fails just goes unanswered. ``want_window=False``: the window is known, find the tokenizer only.
    """
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    root, base = server_root(base_url), base_url.rstrip("/")
    info = ServerInfo()

    def get(url: str) -> Any:
        try:
            reply = httpx.get(url, headers=headers, timeout=timeout, verify=tls_context())
            return reply.json() if reply.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None

    def tokenizer(kind: TokenizerKind) -> ServerTokenizer:
        return ServerTokenizer(kind=kind, root=root, model=model, headers=headers, timeout=timeout)

    props = get(f"{root}/props")
    if isinstance(props, dict):  # llama.cpp's llama-server
        n_ctx = (props.get("default_generation_settings") or {}).get("n_ctx") or props.get("n_ctx")
        info.tokenizer = tokenizer("llama-server")
        if n_ctx:
            info.context_length, info.source = int(n_ctx), "GET /props"
            return info
    listing = get(f"{base}/models")
    if not isinstance(listing, dict):  # not an OpenAI-compatible server we can learn more about
        return info
    entries = [m for m in listing.get("data") or [] if isinstance(m, dict)]
    entry = next((m for m in entries if m.get("id") == model), entries[0] if len(entries) == 1 else {})
    meta = entry.get("meta") if isinstance(entry.get("meta"), dict) else {}
    if entry.get("max_model_len"):  # vLLM
        info.tokenizer = tokenizer("vllm")
        info.context_length, info.source = int(entry["max_model_len"]), "max_model_len in GET /v1/models"
        return info
    if meta.get("n_ctx") or meta.get("n_ctx_train"):  # llama-server's model metadata
        info.tokenizer = info.tokenizer or tokenizer("llama-server")
        key = "n_ctx" if meta.get("n_ctx") else "n_ctx_train"
        info.context_length, info.source = int(meta[key]), f"{key} in GET /v1/models"
        return info
    if info.tokenizer is None:
        candidate = tokenizer("llama-cpp-python")
        try:
            candidate.count("ok")
            info.tokenizer = candidate
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            pass
    if want_window and info.tokenizer is not None and info.tokenizer.kind == "llama-cpp-python" \
            and is_private(base_url):
        info.context_length = probe_window(base, model, headers, timeout)
        info.source = "named by the refusal of an over-long probe" if info.context_length else None
    return info


def probe_window(base: str, model: str, headers: dict[str, str], timeout: float) -> int | None:
    """llama-cpp-python's window, from its refusal of a prompt longer than any window it serves (a 400 naming
    the window; it tokenizes the prompt and refuses before evaluating any of it)."""
    body = {"model": model, "max_tokens": 1, "messages": [{"role": "user", "content": " a" * PROBE_TOKENS}]}
    try:
        reply = httpx.post(f"{base}/chat/completions", json=body, headers=headers, timeout=timeout)
    except httpx.HTTPError:
        return None
    return window_in_refusal(reply.text) if reply.status_code == 400 else None
