"""Language-model plumbing: the chat-model factory and the diskcache prompt cache (no MAP logic here)."""

from map_agent.llm.backends import BACKENDS, make_chat_model
from map_agent.llm.cache import CACHE_HIT, DiskPromptCache, default_cache_dir

__all__ = ["BACKENDS", "CACHE_HIT", "DiskPromptCache", "default_cache_dir", "make_chat_model"]
