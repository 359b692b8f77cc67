"""Shared fixtures: every test gets a private prompt cache, so no test sees another's cached replies."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _private_prompt_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MAP_AGENT_CACHE_DIR", str(tmp_path / "prompt-cache"))
    monkeypatch.delenv("MAP_AGENT_CACHE_URL", raising=False)  # nor a shared cache the developer's shell names


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
    """llama-cpp-python's own server on loopback, serving the shipped GGUF with its default context; one per
    session (``tests/llama_server.py``)."""
    from llama_server import LlamaServer

    server = LlamaServer(tmp_path_factory.mktemp("llama-server") / "server.log")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def llama_server_lora(tmp_path_factory):
    """The same server with the shipped ``map-hanoi`` LoRA adapter applied."""
    from llama_server import LlamaServer

    from map_agent.learned.adapters import adapter_path

    server = LlamaServer(tmp_path_factory.mktemp("llama-server-lora") / "server.log", adapter_path("map-hanoi"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A real Redis for the shared prompt cache: CI's (``$MAP_AGENT_TEST_REDIS_URL``, started by ``.ci/run``), else
    one started for the session (``tests/redis_server.py``); skipped only where redis-server is not installed."""
    import os
    import shutil

    if os.environ.get("MAP_AGENT_TEST_REDIS_URL"):
        yield os.environ["MAP_AGENT_TEST_REDIS_URL"]
        return
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server; CI installs it)")
    from redis_server import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("redis") / "redis.log")
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """One local Ray cluster per session: 2 CPUs, no dashboard, no usage report (offline). Workers find test
    modules (``code_search_path``) and a private prompt cache directory."""
    import os

    import ray
    from ray.job_config import JobConfig

    with pytest.MonkeyPatch.context() as env:  # what the workers inherit when ray.init starts them
        env.setenv("RAY_USAGE_STATS_ENABLED", "0")
        env.setenv("MAP_AGENT_CACHE_DIR", str(tmp_path_factory.mktemp("ray-prompt-cache")))
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 job_config=JobConfig(code_search_path=[os.path.dirname(__file__)]))
    yield ray
    ray.shutdown()
