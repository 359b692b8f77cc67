"""What names an OpenAI-compatible endpoint, how it takes a JSON schema, and what keeps its secrets out of text.

Kept apart from ``backends`` because it needs no client library: the CLI's options and one-line errors use it on
every command, and importing ``backends`` costs the OpenAI SDK and ``langchain_openai`` -- most of a second --
which ``--help``, ``tasks`` or an oracle plan never need. ``backends`` imports these names, so
``map_agent.llm.backends.redact`` and the like still work.
"""

from __future__ import annotations

import os
import re
from typing import Literal, get_args
from urllib.parse import urlsplit

#: How an OpenAI-compatible server takes a JSON schema, in the order ``"auto"`` tries them: ``json_schema``
#: (OpenAI, vLLM, Ollama's OpenAI endpoint, llama.cpp's llama-server), ``json_object`` plus a schema
#: (llama-cpp-python's server), ``guided_json`` in the body (vLLM's own). "off" sends none (plain prompting).
JsonSchemaForm = Literal["json_schema", "json_object", "guided_json"]
JSON_SCHEMA_FORMS: tuple[str, ...] = get_args(JsonSchemaForm)
#: what ``make_chat_model(json_schema=...)`` takes: a form, "auto" (resolved by ``check_endpoint``) or "off"
FormChoice = Literal["auto", "json_schema", "json_object", "guided_json", "off"]
JSON_SCHEMA_CHOICES: tuple[str, ...] = get_args(FormChoice)


class SetupError(RuntimeError):
    """The backend cannot work at all (no key, endpoint unreachable or refusing): say so once, before a run."""

    #: the endpoint could not be reached at all (no connection, no reply in time), as opposed to refused
    unreachable: bool = False


#: the environment variable an API key is read from unless ``--api-key-env`` names another
DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"


def env_api_key(variable: str | None = None) -> str | None:
    """The API key the environment variable ``variable`` (default ``OPENAI_API_KEY``) holds, or ``None``: the one
    place a key is read, so the chat model, the evaluation's redaction and the CLI's error lines agree on it (a
    key never comes from the command line, where ``ps`` and shell histories would show it)."""
    return os.environ.get(variable or DEFAULT_API_KEY_ENV) or None


def endpoint_url(base_url: str | None = None) -> str | None:
    """The OpenAI-compatible endpoint in use: ``base_url``, else ``MAP_AGENT_BASE_URL``, else ``OPENAI_BASE_URL``
    (``None``: the OpenAI API)."""
    return base_url or os.environ.get("MAP_AGENT_BASE_URL") or os.environ.get("OPENAI_BASE_URL")


#: a path segment shown as is: a word (``v1``, ``openai``, ``chat``) rather than something shaped like a token
_PLAIN_SEGMENT = re.compile(r"[A-Za-z][A-Za-z_-]{0,23}|v\d+(?:[a-z]+\d*)?")
#: the ``user:password@`` of a URL anywhere in a text
_USERINFO = re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/\s@]+@", re.I)


def _url_secrets(url: str) -> list[str]:
    """The parts of an endpoint URL that may carry a credential: user name and password, the path segments that
    are not plain words, the query and each of its values."""
    parts = urlsplit(url)
    query_values = [v for pair in parts.query.split("&") for v in pair.split("=", 1)[1:]]
    return [p for p in (parts.username, parts.password, parts.query, *query_values,
                        *(s for s in parts.path.split("/") if s and not _PLAIN_SEGMENT.fullmatch(s))) if p]


# Shapes of credentials: OpenAI-style keys, bearer tokens, key=value pairs in URLs and messages, long opaque tokens.
_KEY_LIKE = re.compile(
    r"\b(sk|pk|rk|hf|gsk|xai)[-_][A-Za-z0-9_\-]{8,}"
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/=\-]{8,}"
    r"|(?P<name>(?i:(api[_-]?key|access[_-]?token|token|secret|password|auth)[\"']?\s*[=:]\s*[\"']?))[^\s&\"',}]+"
    r"|\b[A-Za-z0-9_\-]{40,}\b")


def redact(text: str, base_url: str | None = None, secrets: tuple[str, ...] = ()) -> str:
    """Text fit to print or store -- the one redaction of every output: the given secrets; the endpoint's (given,
    or from the environment) user name and password, path segments shaped like tokens and query; the userinfo of
    any URL; anything shaped like a key. Each is replaced by ``<redacted>``; the host, port and plain path words
    (``/v1``) stay, to say where it failed.

    >>> redact("404 for http://h:8/v1/t0ps3cret/chat?key=abc", "http://h:8/v1/t0ps3cret?key=abc")
    '404 for http://h:8/v1/<redacted>/chat?<redacted>'
    >>> redact("cannot connect to https://me:hunter2@h/v1", "https://me:hunter2@h/v1")
    'cannot connect to https://<redacted>@h/v1'
    >>> redact("invalid api key sk-proj-abcdefgh12345678")
    'invalid api key <redacted>'
    """
    if not text:
        return text
    hidden = [*secrets, *(piece for url in {base_url, endpoint_url()} if url for piece in _url_secrets(url))]
    for secret in sorted(hidden, key=len, reverse=True):  # the longest first: a query before its values
        if secret and len(secret) >= 4:
            text = text.replace(secret, "<redacted>")
    text = _USERINFO.sub(r"\1<redacted>@", text)
    return _KEY_LIKE.sub(lambda m: (m["name"] or "") + "<redacted>", text)
