"""A prompt cache that several machines share: the same entries as the disk cache, stored in Redis.

diskcache is SQLite on one host's disk; workers of a Ray cluster (or several people running the same experiments)
need one cache they all reach. This one stores what ``DiskPromptCache`` stores under the very same key
(``map_agent.llm.cache.cache_key``: model, parameters, messages and run index, never a key or an endpoint), with
the same rules, because both are a ``KeyedPromptCache``: a hit is marked and counted, a call that raised is never
stored, and ``forget`` drops a reply that failed to parse.

The cache only saves money; it must never cost a result. An unreachable server when the cache is opened is a
setup error, said once (``CacheDirError``); a server that goes away mid-run turns every call into an uncached one,
with one warning, and is tried again every ``retry_after`` seconds, so a run neither crashes nor loses a record and
picks the cache up again when it is back. Credentials never appear in messages: the URL is shown without its
password, and a URL without one takes it from ``$MAP_AGENT_CACHE_URL`` when that names the same server (so a
password travels through each machine's environment, not through a command line, a job config or Ray).
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from map_agent.llm.cache import CACHE_URL_ENV, CacheDirError, KeyedPromptCache

#: every entry's Redis key is this prefix plus ``cache_key``: the cache can share a server with other data
PREFIX = "map-agent:prompts:"


def public_url(url: str) -> str:
    """``url`` without its password (and user name): what may be printed, logged or shipped to workers."""
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def with_local_credentials(url: str) -> str:
    """``url`` with the credentials ``$MAP_AGENT_CACHE_URL`` holds for the same server, when ``url`` has none."""
    local = os.environ.get(CACHE_URL_ENV) or ""
    if local and public_url(url) == public_url(local) != local and url == public_url(url):
        return local
    return url


class RedisPromptCache(KeyedPromptCache):
    """The prompt cache on a Redis server (``redis://host:port/db``, ``rediss://`` for TLS, ``unix://`` a socket).

    Thread-safe (redis-py's connection pool) and process-safe (Redis is the one store), so problems in threads,
    processes and machines share hits.
    """

    def __init__(self, url: str, *, timeout: float = 2.0, retry_after: float = 30.0) -> None:
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError:
            raise CacheDirError(f"prompt cache {public_url(url)}: the Redis cache needs redis-py: "
                                "pip install 'map-agent[redis]'") from None
        self.url = public_url(url)
        self.retry_after = retry_after
        self._errors = (redis.RedisError, OSError)
        self._down_until = 0.0
        self._warned = False
        self._lock = threading.Lock()
        try:
            # one immediate retry: a pooled connection the server closed (a restart) is reopened, no backoff wait
            self._client = redis.Redis.from_url(with_local_credentials(url), socket_timeout=timeout,
                                                socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 1),
                                                decode_responses=True)
            self._client.ping()
        except (*self._errors, ValueError) as e:  # checked once, up front, like an unusable --cache-dir
            raise CacheDirError(f"prompt cache {self.url} is not usable: {type(e).__name__}: "
                                f"{str(e).replace(url, self.url)} (start the server, or choose another cache with "
                                "--cache or --cache-dir, or --no-cache)") from None

    def _call(self, command: str, *args: Any, default: Any = None) -> Any:
        """One Redis command; while the server is unreachable, ``default`` (a miss, nothing stored)."""
        if time.monotonic() < self._down_until:
            return default
        try:
            return getattr(self._client, command)(*args)
        except self._errors as e:
            with self._lock:
                self._down_until = time.monotonic() + self.retry_after
                warn, self._warned = not self._warned, True
            if warn:
                warnings.warn(f"prompt cache {self.url} is unreachable ({type(e).__name__}): model calls go "
                              f"uncached until it answers again (tried every {self.retry_after:g} s)",
                              RuntimeWarning, stacklevel=2)
            return default

    def _get(self, key: str) -> str | None:
        return self._call("get", PREFIX + key)

    def _set(self, key: str, value: str) -> None:
        self._call("set", PREFIX + key, value)

    def _delete(self, key: str) -> bool:
        return bool(self._call("delete", PREFIX + key, default=0))

    def clear(self, **kwargs: Any) -> None:
        """Drop this cache's entries (only those under ``PREFIX``: the server may hold other data)."""
        for key in self._client.scan_iter(match=PREFIX + "*", count=1000):
            self._client.delete(key)
