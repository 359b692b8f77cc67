"""The shared prompt cache on a real ``redis-server``: the disk cache's key and rules, hits shared between
processes, and a server that goes away mid-run costing a warning, never a crash or a record."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_openai import ChatOpenAI

from map_agent import cli
from map_agent.config import MAPConfig
from map_agent.eval.runner import Evaluation, RunSpec
from map_agent.llm.cache import CACHE_HIT, DiskPromptCache, forget, open_cache
from map_agent.llm.redis_cache import PREFIX, RedisPromptCache, public_url, with_local_credentials
from map_agent.modules import OracleChatModel


@pytest.fixture
def cache(redis_url):
    """The session's Redis, emptied of this project's entries (tests share the server, never entries)."""
    cache = RedisPromptCache(redis_url)
    cache.clear()
    yield cache
    cache.clear()


def stored(cache: RedisPromptCache) -> dict[str, str]:
    return {key: cache._client.get(key) for key in cache._client.scan_iter(match=PREFIX + "*")}


def test_entries_have_the_disk_caches_key_and_no_secret_or_endpoint(cache, tmp_path):
    disk = DiskPromptCache(tmp_path / "disk")
    for where in (disk, cache):
        FakeListChatModel(responses=["one"], cache=where).invoke("hi")
    assert set(stored(cache)) == {PREFIX + key for key in disk._cache.iterkeys()}
    # the same model behind another URL and key hits the same entry; neither is in a key or a value
    a = ChatOpenAI(model="m", api_key="sk-test-aaaaaaaaaaaa", base_url="http://127.0.0.1:1/v1")
    b = ChatOpenAI(model="m", api_key="sk-test-bbbbbbbbbbbb", base_url="http://10.0.0.9:2/v1")
    cache.update("prompt", a._get_llm_string(), FakeListChatModel(responses=["x"]).generate([[]]).generations[0])
    assert cache.lookup("prompt", b._get_llm_string())
    text = json.dumps(stored(cache))
    assert "sk-test" not in text and "127.0.0.1" not in text and "10.0.0.9" not in text


class Raises(BaseChatModel):
    @property
    def _llm_type(self) -> str:
        return "raises"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        raise RuntimeError("the server said no")


def test_a_hit_is_marked_and_a_failure_is_never_stored(cache):
    model = FakeListChatModel(responses=["not json", "{}"], cache=cache)
    first = model.invoke("hi")
    assert not first.response_metadata.get(CACHE_HIT)
    assert model.invoke("hi").response_metadata[CACHE_HIT]  # served from Redis, marked as a hit
    assert forget(model, first) and model.invoke("hi").content == "{}"  # an unusable reply is dropped
    with pytest.raises(RuntimeError):
        Raises(cache=cache).invoke("hi")
    assert len(stored(cache)) == 1  # the call that raised stored nothing


def evaluation(out: Path, run_id: str, url: str, ids=("1", "2"), llm: BaseChatModel | None = None) -> Evaluation:
    spec = RunSpec(task="hanoi", split="test3", runs=1, backend="scripted", model=None, config=MAPConfig(),
                   problem_ids=list(ids))
    return Evaluation(spec, out, run_id, llm=llm or OracleChatModel(), cache=url)


def test_two_processes_share_hits_and_a_rerun_makes_zero_model_calls(cache, redis_url, tmp_path):
    """Another process (another machine, for Redis) fills the cache; this one's run makes no model call."""
    code = ("import json, sys; sys.path.insert(0, sys.argv[3]); from test_redis_cache import evaluation; "
            "from pathlib import Path; "
            "s = evaluation(Path(sys.argv[1]), 'a', sys.argv[2]).run(); print(json.dumps(s['usage']))")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path), redis_url, str(Path(__file__).parent)],
                          capture_output=True, text=True, timeout=120, check=True)
    theirs = json.loads(done.stdout.strip().splitlines()[-1])
    assert theirs["model_calls"] > 0
    ours = evaluation(tmp_path, "b", redis_url).run()
    # every reply theirs asked for or were served, ours were served from Redis
    assert ours["usage"]["model_calls"] == 0
    assert ours["usage"]["cache_hits"] == theirs["model_calls"] + theirs["cache_hits"]
    assert ours["pct_solved"]["mean"] == 100.0


class StopsRedis(OracleChatModel):
    """The ground-truth model, which kills the Redis server (SIGKILL) at its first call: the server is gone."""

    redis_pid: int

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        try:
            os.kill(self.redis_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)


def test_a_redis_that_goes_away_mid_run_degrades_to_uncached_calls_with_one_warning(tmp_path):
    from redis_server import RedisServer

    try:
        server = RedisServer(tmp_path / "redis.log")  # private: this test takes it away
    except FileNotFoundError as e:
        pytest.skip(str(e))
    try:
        evaluation(tmp_path, "a", server.url, ids=("1",)).run()  # problem 1's replies are in the cache
        run = evaluation(tmp_path, "b", server.url, ids=("1", "2"), llm=StopsRedis(redis_pid=server.process.pid))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            summary = run.run()
        server.process.wait(timeout=10)
    finally:
        server.stop()
    said = [str(w.message) for w in caught if "prompt cache" in str(w.message)]
    assert len(said) == 1 and "unreachable" in said[0] and "uncached" in said[0], said
    records = {r["problem_id"]: r for r in run.records()}
    assert set(records) == {"1", "2"} and summary["errors"] == 0 and summary["pct_solved"]["mean"] == 100.0
    one, two = records["1"]["usage"]["total"], records["2"]["usage"]["total"]
    assert one["model_calls"] == 0 and one["cache_hits"] > 0  # before it went away: all hits
    assert two["cache_hits"] == 0 and two["model_calls"] == two["calls"] > 0  # after: every call uncached


def test_the_environment_selects_redis_and_an_unreachable_one_fails_once_without_its_password(
        redis_url, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("MAP_AGENT_CACHE_URL", redis_url)
    assert isinstance(open_cache(None), RedisPromptCache)
    assert isinstance(open_cache(str(tmp_path / "d")), DiskPromptCache)  # a directory named outright wins
    from llama_server import free_port

    dead = f"redis://:hunter2-pass@127.0.0.1:{free_port()}/0"
    monkeypatch.setenv("MAP_AGENT_CACHE_URL", dead)
    code = cli.main(["eval", "hanoi", "--limit", "1", "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1",
                     "--out", str(tmp_path)])
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # the error, after the "checking the endpoint" progress line
    assert code == 2 and last.startswith("error: prompt cache redis://127.0.0.1:") and "not usable" in last
    assert "hunter2" not in err


def test_urls_show_no_password_and_take_it_from_the_environment(monkeypatch):
    assert public_url("redis://:pw@cache.lan:6379/2") == "redis://cache.lan:6379/2"
    assert public_url("redis://user:pw@[::1]:6379/0") == "redis://[::1]:6379/0"
    monkeypatch.setenv("MAP_AGENT_CACHE_URL", "redis://:pw@cache.lan:6379/2")
    assert with_local_credentials("redis://cache.lan:6379/2") == "redis://:pw@cache.lan:6379/2"
    assert with_local_credentials("redis://other:6379/2") == "redis://other:6379/2"
