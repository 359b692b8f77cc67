"""The embedded backend: llama.cpp through LangChain's ChatLlamaCpp, made thread-safe and grammar-friendly."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any, ClassVar

from langchain_community.chat_models import ChatLlamaCpp
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatResult

GRAMMAR_INT_BOUND = 10**6
GRAMMAR_MAX_STRING = 300


def grammar_friendly(schema: Any) -> Any:
    """Rewrite a JSON schema into one llama.cpp turns into a fast, *finite* grammar; it accepts a subset of what
    the schema accepts, so every reply the grammar allows still validates.

    * Free text is capped at ``GRAMMAR_MAX_STRING`` characters (or the schema's own ``maxLength`` if smaller). A
      tiny model left unbounded rambles inside a string until ``max_tokens`` cuts the JSON off; llama.cpp
      unrolls the bound into nested rules, which it rejects (and may crash on) in the thousands, hence a cap
      rather than the schema's larger limits.
    * An unbounded ``integer`` becomes a 15-level nested rule that is ~50x slower to sample than a bounded
      one, so missing bounds are set to +-10^6.
    """
    if isinstance(schema, list):
        return [grammar_friendly(v) for v in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: grammar_friendly(v) for k, v in schema.items()}
    if out.get("type") == "string" and not {"enum", "const", "pattern"} & out.keys():
        out["maxLength"] = min(out.get("maxLength", GRAMMAR_MAX_STRING), GRAMMAR_MAX_STRING)
    if out.get("type") == "integer":
        out.setdefault("minimum", -GRAMMAR_INT_BOUND)
        out.setdefault("maximum", GRAMMAR_INT_BOUND)
    return out


#: Serialises all llama.cpp work in the process. llama-cpp-python silences the C library by pointing file
#: descriptors 1 and 2 at /dev/null and back around loads and grammar builds; two threads doing that at once
#: restore each other's /dev/null and leave stdout and stderr silenced for good. Contexts are not thread-safe
#: either, and LangGraph runs ``Send`` branches (and evaluations run problems) in threads.
LLAMA_LOCK = threading.RLock()


class LocalChatModel(ChatLlamaCpp):
    """ChatLlamaCpp that is safe to share between graph branches and problems and reports token usage.

    Loading and every call hold ``LLAMA_LOCK``. Token counts move from ``llm_output`` onto the message's
    ``usage_metadata`` where every other backend puts them.
    """

    json_schema_decoding: ClassVar[bool] = True
    #: llama.cpp contexts kept warm, one per distinct system prompt (that is, per MAP module and task)
    max_contexts: int = 6
    _contexts: OrderedDict

    def __init__(self, **kwargs: Any) -> None:
        with LLAMA_LOCK:  # the validator loads the model
            super().__init__(**kwargs)

    def model_post_init(self, context: Any) -> None:
        super().model_post_init(context)
        self._contexts = OrderedDict()

    def _context_for(self, messages: list[BaseMessage]) -> Any:
        """The llama.cpp context whose KV cache already holds this prompt's prefix.

        A context re-evaluates only the tokens after the longest prefix it shares with its previous prompt. MAP
        alternates modules whose prompts differ from the first token (task description + role + examples), so
        one shared context would re-read ~700 tokens on every call; one context per system prompt re-reads only
        the new input. Contexts share the memory-mapped weights; least recently used ones are dropped.
        """
        key = hashlib.sha1(str(messages[0].content if messages else "").encode()).hexdigest()
        if key in self._contexts:
            self._contexts.move_to_end(key)
            return self._contexts[key]
        if not self._contexts:
            client = self.client
        else:
            client = type(self.client)(model_path=self.model_path, n_ctx=self.n_ctx, n_threads=self.n_threads,
                                       n_batch=self.n_batch, lora_path=self.lora_path, verbose=self.verbose,
                                       **self.model_kwargs)
        self._contexts[key] = client
        if len(self._contexts) > self.max_contexts:
            self._contexts.popitem(last=False)
        return client

    @staticmethod
    def response_format_for(schema: dict) -> dict:
        return {"type": "json_object", "schema": grammar_friendly(schema)}

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        with LLAMA_LOCK:
            default = self.client
            self.client = self._context_for(messages)
            try:
                result = super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)
            finally:
                self.client = default
        usage = (result.llm_output or {}).get("token_usage") or {}
        for gen in result.generations:
            if isinstance(gen.message, AIMessage) and usage:
                gen.message.usage_metadata = {
                    "input_tokens": usage.get("prompt_tokens", 0),
                    "output_tokens": usage.get("completion_tokens", 0),
                    "total_tokens": usage.get("total_tokens", 0),
                }
        return result
