"""The prompt cache: a LangChain ``BaseCache`` on diskcache, so every chat model gets it the same way.

Reruns of an experiment are free and an interrupted run resumes without paying again. The key is canonical and
complete -- model, parameters, messages and sample index (the Actor's resamples carry ``seed=<index>``, so they
do not collapse onto one entry) -- and never contains a secret or an endpoint: the same model behind another URL
or key hits the same entry. A hit is marked in the returned message's ``response_metadata`` so callers can count
hits and charge them no tokens.

Only replies worth replaying stay: a call that raised is never stored (LangChain stores after success only), and a
reply its caller could not use -- one that failed to parse -- is dropped again with ``forget`` (every message this
cache stores or serves carries its entry's key), so it is not replayed to later problems and later runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import diskcache
from langchain_core.caches import BaseCache
from langchain_core.globals import get_llm_cache
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, message_to_dict, messages_from_dict
from langchain_core.outputs import ChatGeneration, Generation
from platformdirs import user_cache_dir

#: response_metadata key set on messages served from the cache
CACHE_HIT = "map_agent_cache_hit"
#: response_metadata key naming the cache entry a message was stored in or served from (see ``forget``)
CACHE_KEY = "map_agent_cache_key"

# Keys that identify where or as whom a model is reached, not what it computes.
_NOT_IN_KEY = re.compile(r"(api_key|api_base|base_url|organization|headers|proxy|http_client|timeout|"
                         r"max_retries|model_path)$", re.IGNORECASE)


def default_cache_dir() -> Path:
    """``$MAP_AGENT_CACHE_DIR``, else ``<user cache dir>/map-agent/prompts`` (``~/.cache`` on Linux)."""
    return Path(os.environ.get("MAP_AGENT_CACHE_DIR") or Path(user_cache_dir("map-agent")) / "prompts")


def _scrub(value: Any) -> Any:
    if isinstance(value, dict):
        if value.get("type") == "secret":
            return "<secret>"
        return {k: _scrub(v) for k, v in value.items() if not _NOT_IN_KEY.search(str(k))}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def canonical_llm_string(llm_string: str) -> str:
    """Drop secrets and endpoints from LangChain's ``llm_string``.

    Serialisable models give ``<json>---<sorted params>``; others give ``str(sorted(params.items()))``. For the
    latter the file name of a local model stays in the key but not the directory it was installed in.
    """
    head, sep, params = llm_string.partition("---")
    try:
        head = json.dumps(_scrub(json.loads(head)), sort_keys=True)
    except json.JSONDecodeError:
        head = re.sub(r"('model_path', ')[^']*/([^'/]+')", r"\1\2", head)
        head = re.sub(r"\('(api_key|base_url|openai_api_base|openai_api_key)', [^)]*\), ", "", head)
    return head + sep + params


def cache_key(prompt: str, llm_string: str) -> str:
    digest = hashlib.sha256()
    digest.update(canonical_llm_string(llm_string).encode())
    digest.update(b"\0")
    digest.update(prompt.encode())
    return digest.hexdigest()


class KeyedPromptCache(BaseCache):
    """What every prompt cache shares, whatever stores it: the key (``cache_key``), the stored form of a reply, the
    hit and key marks on the messages it serves, and ``evict`` for ``forget``. A store only gets and sets text by
    key (``_get``, ``_set``, ``_delete``), so a disk cache and a shared Redis cache answer the same prompt with the
    same entry under the same rules."""

    def _get(self, key: str) -> str | None:
        raise NotImplementedError

    def _set(self, key: str, value: str) -> None:
        raise NotImplementedError

    def _delete(self, key: str) -> bool:
        raise NotImplementedError

    def lookup(self, prompt: str, llm_string: str) -> Sequence[Generation] | None:
        key = cache_key(prompt, llm_string)
        raw = self._get(key)
        if raw is None:
            return None
        generations: list[Generation] = []
        for item in json.loads(raw):
            if "message" in item:
                (message,) = messages_from_dict([item["message"]])
                message.response_metadata = {**message.response_metadata, CACHE_HIT: True, CACHE_KEY: key}
                generations.append(ChatGeneration(message=message, generation_info=item.get("info")))
            else:
                generations.append(Generation(text=item["text"], generation_info=item.get("info")))
        return generations

    def update(self, prompt: str, llm_string: str, return_val: Sequence[Generation]) -> None:
        key = cache_key(prompt, llm_string)
        items = [
            {"message": message_to_dict(g.message), "info": g.generation_info} if isinstance(g, ChatGeneration)
            else {"text": g.text, "info": g.generation_info}
            for g in return_val
        ]
        self._set(key, json.dumps(items))
        for g in return_val:  # the caller gets these very messages back: let it ``forget`` a reply it cannot use
            if isinstance(g, ChatGeneration):
                g.message.response_metadata = {**g.message.response_metadata, CACHE_KEY: key}

    def evict(self, key: str) -> bool:
        """Drop one entry (by the key ``CACHE_KEY`` carries); whether it was there."""
        return self._delete(key)


class DiskPromptCache(KeyedPromptCache):
    """A persistent, process-safe prompt cache (diskcache uses SQLite, so parallel runs on one host can share it).

    >>> from langchain_core.language_models.fake_chat_models import FakeListChatModel
    >>> import tempfile
    >>> cache = DiskPromptCache(tempfile.mkdtemp())
    >>> model = FakeListChatModel(responses=["first", "second"], cache=cache)
    >>> model.invoke("hi").content, model.invoke("hi").content
    ('first', 'first')
    """

    def __init__(self, directory: str | Path | None = None, size_limit: int = 2**32) -> None:
        self.directory = Path(directory) if directory else default_cache_dir()
        try:
            self._cache = diskcache.Cache(str(self.directory), size_limit=size_limit)
        except (OSError, sqlite3.Error) as e:  # checked once, up front, not as a failure of every model call
            raise CacheDirError(f"prompt cache directory {self.directory} is not usable: {e} "
                                "(choose another with --cache-dir, or --no-cache)") from None

    def _get(self, key: str) -> str | None:
        return self._cache.get(key)

    def _set(self, key: str, value: str) -> None:
        self._cache.set(key, value)

    def _delete(self, key: str) -> bool:
        return bool(self._cache.delete(key))

    def clear(self, **kwargs: Any) -> None:
        self._cache.clear()

    def __len__(self) -> int:
        return len(self._cache)

    def close(self) -> None:
        self._cache.close()


class CacheDirError(ValueError):
    """The prompt cache cannot be used: a directory that cannot be created, opened or written, or a shared cache's
    server that does not answer when the run starts."""


#: environment variable naming a shared prompt cache (``redis://host:port/db``) when no option names a cache
CACHE_URL_ENV = "MAP_AGENT_CACHE_URL"
#: URL schemes of the shared (Redis) prompt cache; anything else names a directory
SHARED_SCHEMES = ("redis://", "rediss://", "unix://")


def is_cache_url(value: object) -> bool:
    """Whether a cache option names a shared cache server rather than a directory."""
    return isinstance(value, str) and value.startswith(SHARED_SCHEMES)


def open_cache(cache: BaseCache | str | Path | bool | None) -> BaseCache | bool:
    """The prompt cache a cache option names: ``False`` none; a ``BaseCache`` itself; a ``redis://`` URL the shared
    Redis cache (extra ``[redis]``); a directory the disk cache; ``None`` or ``True`` ``$MAP_AGENT_CACHE_URL`` when
    set, else the default directory. One place decides, so every command selects a cache the same way.

    >>> import tempfile
    >>> type(open_cache(tempfile.mkdtemp())).__name__, open_cache(False)
    ('DiskPromptCache', False)
    """
    if cache is False or isinstance(cache, BaseCache):
        return cache
    if cache is None or cache is True:
        cache = os.environ.get(CACHE_URL_ENV) or None
    if is_cache_url(cache):
        from map_agent.llm.redis_cache import RedisPromptCache  # redis-py is an optional extra

        return RedisPromptCache(str(cache))
    return DiskPromptCache(cache)


def forget(llm: BaseChatModel, reply: BaseMessage) -> bool:
    """Evict the cache entry ``reply`` was stored in or served from, so an unusable reply is not replayed.

    Works with the model's own cache or LangChain's global one, when it is one of this project's (disk or Redis);
    whether an entry was dropped.

    >>> from langchain_core.language_models.fake_chat_models import FakeListChatModel
    >>> import tempfile
    >>> model = FakeListChatModel(responses=["not json", "{}"], cache=DiskPromptCache(tempfile.mkdtemp()))
    >>> forget(model, model.invoke("hi")), model.invoke("hi").content
    (True, '{}')
    """
    cache = llm.cache if isinstance(llm.cache, BaseCache) else (None if llm.cache is False else get_llm_cache())
    key = (reply.response_metadata or {}).get(CACHE_KEY)
    return bool(key) and isinstance(cache, KeyedPromptCache) and cache.evict(key)
