"""The diskcache prompt cache: reruns are free, keys are canonical, secrets and endpoints stay out."""

from langchain_core.language_models.fake_chat_models import FakeListChatModel

from map_agent import MAPAgent
from map_agent.llm import DiskPromptCache, make_chat_model
from map_agent.llm.cache import cache_key, canonical_llm_string
from map_agent.modules import OracleChatModel
from map_agent.tasks import hanoi


class CountingOracle(OracleChatModel):
    """Ground-truth replies, counting the requests that actually reach the model."""

    calls: int = 0

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        self.calls += 1
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)


def test_second_identical_run_makes_zero_model_calls(tmp_path):
    cache = DiskPromptCache(tmp_path / "c")
    first_llm = CountingOracle()
    first = MAPAgent(hanoi.problem(7), llm=first_llm, cache=cache).plan()
    second_llm = CountingOracle()
    second = MAPAgent(hanoi.problem(7), llm=second_llm, cache=cache).plan()
    assert first_llm.calls > 0 and second_llm.calls == 0
    assert first.usage.total.cache_hits == 0 and first.usage.total.model_calls == first_llm.calls
    # "model calls" are requests sent to a model, "cache hits" replies the cache served: a rerun sends none
    assert second.usage.total.model_calls == 0 and second.usage.total.cache_hits == first.usage.total.model_calls
    assert all(r["cache_hit"] for c in second.calls for r in c["replies"])
    assert second.usage.total.input_tokens == 0  # hits cost no tokens
    assert [a.model_dump() for a in second.actions] == [a.model_dump() for a in first.actions]


def test_cache_survives_a_new_process_directory_handle(tmp_path):
    DiskPromptCache(tmp_path).update("p", "m", [])
    assert DiskPromptCache(tmp_path).lookup("p", "m") == []


def test_key_ignores_secrets_and_endpoints_but_not_model_or_parameters():
    a = make_chat_model("openai", "gpt-4o", api_key="sk-one", base_url="http://a:1/v1", cache=False)
    b = make_chat_model("openai", "gpt-4o", api_key="sk-two", base_url="http://b:2/v1", cache=False)
    c = make_chat_model("openai", "gpt-4o-mini", api_key="sk-one", cache=False)
    la, lb, lc = (m._get_llm_string(temperature=0) for m in (a, b, c))
    assert cache_key("p", la) == cache_key("p", lb)
    assert cache_key("p", la) != cache_key("p", lc)
    assert cache_key("p", la) != cache_key("p", a._get_llm_string(temperature=0.7))
    assert "sk-one" not in canonical_llm_string(la) and "http://a" not in canonical_llm_string(la)


def test_sample_index_gets_its_own_entry(tmp_path):
    llm = FakeListChatModel(responses=["one", "two"], cache=DiskPromptCache(tmp_path))
    assert llm.invoke("hi", seed=0).content == "one"
    assert llm.invoke("hi", seed=1).content == "two"
    assert llm.invoke("hi", seed=0).content == "one"  # served from the cache


def _orchestrator(llm, problem):
    from map_agent.modules import LLM_MODULES
    from map_agent.modules.base import make_input
    from map_agent.task import get_task

    task = get_task("hanoi")
    module = LLM_MODULES["Orchestrator"](task, problem, llm, parse_retries=1)
    inp = make_input("Orchestrator", task, {"state": problem.start, "goal": problem.goal})
    return module, inp


def test_an_unparseable_reply_is_not_replayed_to_later_calls_or_runs(tmp_path):
    """Issue 9: a malformed reply used to be cached and replayed to every later problem and run."""
    cache = DiskPromptCache(tmp_path / "c")
    problem = hanoi.problem(7)
    first_llm = FakeListChatModel(responses=["no JSON here", '{"achieved": false}'], cache=cache)
    module, inp = _orchestrator(first_llm, problem)
    result = module(inp)
    assert result.ok and result.output.achieved is False and result.record.model_calls == 2
    assert len(cache) == 1  # only the reply that parsed (the re-ask) is kept

    later_llm = FakeListChatModel(responses=['{"achieved": true}'], cache=cache)  # a later run, same prompt
    module, inp = _orchestrator(later_llm, problem)
    again = module(inp)
    assert again.ok and again.output.achieved is True  # asked the model again instead of replaying the bad reply
    assert again.record.cache_hits == 0 and again.record.model_calls == 1


def test_a_call_that_raised_is_never_stored(tmp_path):
    cache = DiskPromptCache(tmp_path / "c")

    class Failing(FakeListChatModel):
        def _call(self, *args, **kwargs):
            raise ConnectionError("endpoint down")

    module, inp = _orchestrator(Failing(responses=["unused"], cache=cache), hanoi.problem(7))
    module.network_attempts = 1
    result = module(inp)
    assert not result.ok and "endpoint down" in result.record.error and len(cache) == 0


def test_an_unusable_cache_directory_is_one_clear_error(tmp_path):
    import pytest

    from map_agent.llm.cache import CacheDirError

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(CacheDirError, match="prompt cache directory .*file/sub is not usable"):
        DiskPromptCache(blocker / "sub")
