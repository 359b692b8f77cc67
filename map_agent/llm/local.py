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

from map_agent.llm.context import TOKENS_PER_MESSAGE, TOKENS_PER_PROMPT
from map_agent.llm.schema import grammar_friendly

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

    @property
    def context_length(self) -> int:
        """The window llama.cpp allocated (``n_ctx``), which prompt plus reply must fit."""
        return self.n_ctx

    def prompt_tokens(self, messages: list[BaseMessage]) -> int:
        """The prompt's size in this model's tokens, each message counted with the chat template's overhead."""
        with LLAMA_LOCK:
            counts = [len(self.client.tokenize(str(m.content).encode(), add_bos=False, special=True))
                      for m in messages]
        return sum(n + TOKENS_PER_MESSAGE for n in counts) + TOKENS_PER_PROMPT

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
