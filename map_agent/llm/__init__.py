"""Language-model plumbing: the chat-model factory and the diskcache prompt cache (no MAP logic here)."""

from typing import TYPE_CHECKING

from map_agent.lazy import lazy_exports

if TYPE_CHECKING:
    from map_agent.llm.backends import BACKENDS, make_chat_model
    from map_agent.llm.cache import CACHE_HIT, DiskPromptCache, default_cache_dir

#: public name -> the module defining it, imported on first use (PEP 562): the prompt cache, which an oracle run
#: uses, must not import the OpenAI client and ``langchain_openai`` that the backends need
_EXPORTS = {"BACKENDS": "map_agent.llm.backends", "make_chat_model": "map_agent.llm.backends",
            "CACHE_HIT": "map_agent.llm.cache", "DiskPromptCache": "map_agent.llm.cache",
            "default_cache_dir": "map_agent.llm.cache"}

__all__ = ["BACKENDS", "CACHE_HIT", "DiskPromptCache", "default_cache_dir", "make_chat_model"]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
