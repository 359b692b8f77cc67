"""The embedded model's first call per module: the prompt prefix read once per machine (saved llama.cpp state) or
copied from another module's live context, never changing an answer; saved states keyed by everything that
decides them; every context running the model alike."""

from __future__ import annotations

import os
import shutil

import llama_cpp
import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from map_agent.llm import default_cache_dir, make_chat_model
from map_agent.llm.local import _prune
from map_agent.modules import LLM_MODULES
from map_agent.modules.base import make_input
from map_agent.task import get_task

TASK_WORDS = "You plan moves of numbered disks between three lists A, B and C, one disk at a time. " * 6


def messages(role: str, ask: str = "Say hello.") -> list:
    """A module-shaped prompt: a shared task description, a role, one example, then the question."""
    return [SystemMessage(f"{TASK_WORDS}\n\nYou are the {role}."), HumanMessage("Say yes."), AIMessage("yes"),
            HumanMessage(ask)]


def local(max_tokens=8, threads=1, **kwargs):
    return make_chat_model("local", threads=threads, cache=False, n_ctx=1024, max_tokens=max_tokens, **kwargs)


def reply(llm, msgs) -> str:
    return llm.invoke(msgs, temperature=0).content


def evaluated(llm) -> int:
    """Prompt tokens llama.cpp evaluated in the context the last call used."""
    return llama_cpp.llama_perf_context(next(reversed(llm._contexts.values())).ctx).n_p_eval


@pytest.mark.real_model
def test_saved_and_shared_prefixes_change_no_module_answer_and_later_processes_skip_the_prefix(tmp_path):
    task = get_task("hanoi")
    problem = task.problems("test3")[0]
    state = task.start(problem).model_dump()
    action = task.legal_actions(task.start(problem), problem)[0].model_dump()
    inputs = {"Orchestrator": {"state": state, "goal": task.goal(problem).model_dump()},
              "Predictor": {"state": state, "action": action}}

    def answers(llm):
        out = {}
        for name, raw in inputs.items():
            result = LLM_MODULES[name](task, problem, llm)(make_input(name, task, raw))
            out[name] = (result.record.replies[0].text, result.record.input_tokens, evaluated(llm))
        return out

    states = tmp_path / "states"
    base = answers(local(160, state_dir=False, share_prefixes=False))
    first = answers(local(160, state_dir=states))  # the Predictor copies the task description
    later = answers(local(160, state_dir=states))
    assert {m: a[0] for m, a in first.items()} == {m: a[0] for m, a in base.items()}
    assert {m: a[0] for m, a in later.items()} == {m: a[0] for m, a in base.items()}
    assert len(list(states.glob("*.llama-state"))) == 2
    assert all(base[m][2] == base[m][1] for m in inputs)  # the baseline reads every prompt token
    assert first["Predictor"][2] < base["Predictor"][2] - 100  # the shared task description is not read again
    assert all(later[m][2] < 100 for m in inputs)  # the prefix came from disk: only the last message is read


@pytest.mark.real_model
def test_every_context_runs_the_model_as_its_gguf_says_whichever_module_comes_first(tmp_path):
    one, two = messages("Monitor"), messages("Predictor")
    ab = local(state_dir=False, share_prefixes=False)
    ba = local(state_dir=False, share_prefixes=False)
    first_ab = [reply(ab, one), reply(ab, two)]
    first_ba = [reply(ba, two), reply(ba, one)]
    assert first_ab == first_ba[::-1]
    assert {c.context_params.rope_freq_base for c in ab._contexts.values()} == {0.0}  # 0: the GGUF's own


@pytest.mark.real_model
def test_a_state_file_is_keyed_by_the_prefix_the_model_file_and_the_runtime(tmp_path, monkeypatch):
    from map_agent.llm.backends import embedded_model_path

    model = tmp_path / "model.gguf"
    shutil.copyfile(embedded_model_path(), model)
    llm = local(model=str(model), state_dir=tmp_path / "s")
    path = llm.state_path([1, 2, 3])
    assert path.parent == tmp_path / "s"
    assert local(model=str(model), state_dir=tmp_path / "s").state_path([1, 2, 3]) == path  # another process
    assert llm.state_path([1, 2, 4]) != path
    # how fast llama.cpp computes is no part of the key, only what it computes
    assert local(threads=2, model=str(model), state_dir=tmp_path / "s").state_path([1, 2, 3]) == path
    os.utime(model, ns=(1, 1))  # a replaced model file
    assert local(model=str(model), state_dir=tmp_path / "s").state_path([1, 2, 3]) != path
    monkeypatch.setattr(llama_cpp, "__version__", "0.0.0")  # another llama.cpp
    assert local(model=str(model), state_dir=tmp_path / "s").state_path([1, 2, 3]) != path


@pytest.mark.real_model
def test_a_state_file_that_does_not_hold_the_prefix_is_read_over_and_replaced(tmp_path):
    msgs = messages("Monitor")
    expected = reply(local(state_dir=False, share_prefixes=False), msgs)
    llm = local(state_dir=tmp_path / "s")
    path = llm.state_path(llm.prefix_tokens(msgs))
    path.parent.mkdir()
    path.write_bytes(b"not a llama.cpp state")
    assert reply(llm, msgs) == expected
    assert path.stat().st_size > 100_000  # saved again, whole
    assert reply(local(state_dir=tmp_path / "s"), msgs) == expected


@pytest.mark.real_model
def test_a_state_directory_that_cannot_be_written_warns_once_and_the_call_goes_on(tmp_path):
    (tmp_path / "file").write_text("")
    msgs = messages("Monitor")
    expected = reply(local(state_dir=False, share_prefixes=False), msgs)
    llm = local(state_dir=tmp_path / "file" / "states")
    with pytest.warns(RuntimeWarning, match="prompt prefixes are not kept"):
        assert reply(llm, msgs) == expected
    assert llm.state_dir is None


@pytest.mark.real_model
def test_states_are_kept_beside_the_prompt_cache_by_default_and_can_be_turned_off(tmp_path):
    assert local().state_dir == default_cache_dir() / "llama-states"
    assert local(state_dir=False).state_dir is None


def test_the_state_directory_keeps_the_most_recently_used_files_within_its_limit(tmp_path):
    for age, name in enumerate(["new", "mid", "old"]):
        f = tmp_path / f"{name}.llama-state"
        f.write_bytes(b"x" * 100)
        os.utime(f, (1_000_000 - age, 1_000_000 - age))
    (tmp_path / "other.txt").write_bytes(b"x" * 1000)  # not a state: left alone
    _prune(tmp_path, 250)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["mid.llama-state", "new.llama-state", "other.txt"]
