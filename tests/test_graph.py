"""The compiled LangGraph state machine: wiring, scripted-model runs, failure handling, checkpoints."""

import gc
import itertools
import weakref

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from map_agent import MAPAgent, MAPConfig
from map_agent.agent import COMPILED_KEPT
from map_agent.graph.build import build_graph
from map_agent.modules import OracleChatModel
from map_agent.tasks import hanoi

MERMAID_EDGES = sorted([
    "Actor --> MAP;", "Evaluator --> MAP;", "MAP -.-> Actor;", "MAP -.-> Evaluator;", "MAP -.-> Monitor;",
    "MAP -.-> Orchestrator;", "MAP -.-> Predictor;", "MAP -.-> TaskDecomposer;", "MAP -.-> __end__;",
    "Monitor --> MAP;", "Orchestrator --> MAP;", "Predictor --> MAP;", "TaskDecomposer --> MAP;",
    "__start__ --> MAP;",
])


def test_drawn_graph_is_pinned():
    """A wiring change shows up here in review: one node per module around the MAP controller."""
    mermaid = build_graph(lambda *a: {}).get_graph().draw_mermaid()
    edges = sorted(line.strip() for line in mermaid.splitlines() if "-->" in line or "-.->" in line)
    assert edges == MERMAID_EDGES


def test_llm_path_with_a_ground_truth_chat_model_solves_and_counts_calls():
    agent = MAPAgent(hanoi.problem(7), llm=OracleChatModel(), cache=False)
    result = agent.plan()
    assert result.solved and result.invalid_moves == 0 and len(result.actions) == 5
    u = result.usage
    assert set(u.modules) == {"TaskDecomposer", "Actor", "Monitor", "Predictor", "Evaluator", "Orchestrator"}
    assert u.modules["TaskDecomposer"].calls == 1
    assert u.total.model_calls == u.total.calls and u.total.failures == 0 and u.total.input_tokens > 0
    # B = 2 branches: every Actor call is followed by at most two Monitor calls (verdicts are memoised per
    # state and action)
    assert 0 < u.modules["Monitor"].calls <= 2 * u.modules["Actor"].calls
    assert len(result.calls) == u.total.calls and {c["impl"] for c in result.calls} == {"llm"}


def test_four_disk_problem_runs_within_the_derived_recursion_limit():
    problem = hanoi.problem(27)  # 15 optimal moves, N = 20
    result = MAPAgent(problem, llm=OracleChatModel(), cache=False).plan()
    assert result.solved and len(result.actions) == 15


def test_garbage_replies_never_kill_the_run():
    llm = FakeListChatModel(responses=["not json at all"])
    result = MAPAgent(hanoi.problem(7), llm=llm, cache=False, config=MAPConfig(monitor_retries=1)).plan()
    assert not result.solved and result.status == "stuck" and result.actions == []
    assert result.failures and all(f.error and "no JSON" in f.error for f in result.failures)
    assert result.usage.modules["TaskDecomposer"].failures == 1


def test_scripted_run_records_an_invalid_move_the_monitor_let_through():
    replies = [
        '{"reasoning": "r", "subgoals": [{"A": [0, 2], "B": [1], "C": []}]}',  # subgoal = start: achieved at once
        '{"achieved": false}',  # the final goal is checked first: not yet
        '{"achieved": true}',  # subgoal reached
        '{"actions": [{"disk": 0, "source": "A", "target": "C"}]}',  # illegal: 0 is under 2
        '{"reasoning": "looks fine", "valid": true, "feedback": ""}',  # the Monitor is wrong
        '{"next_state": {"A": [2], "B": [1], "C": [0]}}',
        '{"achieved": false}',
    ]
    llm = FakeListChatModel(responses=replies + ['{"achieved": true}'] * 3)
    config = MAPConfig(search=False, max_actions=1)
    result = MAPAgent(hanoi.problem(7), llm=llm, cache=False, config=config).plan()
    assert len(result.actions) == 1 and result.invalid_moves == 1 and not result.solved
    assert "not at the right end" in result.execution.steps[0].reason


def test_interrupted_run_resumes_by_thread_id_without_redoing_work():
    agent = MAPAgent(hanoi.problem(7), backend="oracle")
    list(itertools.islice(agent.stream("t-1"), 12))  # stop part-way, as a crash would
    partial = agent.graph.get_state({"configurable": {"thread_id": "t-1"}})
    assert partial.tasks and partial.values["progress"]["status"] == "running"  # work is left
    done_before = len(partial.values["usage"])
    result = agent.plan("t-1")
    assert result.solved
    full = MAPAgent(hanoi.problem(7), backend="oracle").plan()
    assert result.usage.total.calls == full.usage.total.calls and done_before > 0


def test_agents_of_one_model_share_its_compiled_graph_but_never_their_runs():
    model, other = OracleChatModel(), OracleChatModel()
    first, second = (MAPAgent(hanoi.problem(7), llm=model, cache=False) for _ in range(2))
    assert first.graph.nodes["MAP"] is second.graph.nodes["MAP"]  # compiled once for the model
    assert MAPAgent(hanoi.problem(7), llm=other, cache=False).graph.nodes["MAP"] is not first.graph.nodes["MAP"]
    assert first.graph.checkpointer is not second.graph.checkpointer
    list(itertools.islice(first.stream("same-id"), 12))  # one agent's thread stops part-way
    assert not second.graph.get_state({"configurable": {"thread_id": "same-id"}}).values
    assert second.plan("same-id").solved and first.plan("same-id").solved


def test_a_model_no_agent_uses_is_let_go_once_newer_ones_have_graphs():
    model = OracleChatModel()
    MAPAgent(hanoi.problem(7), llm=model, cache=False).plan()
    gone = weakref.ref(model)
    del model
    for _ in range(COMPILED_KEPT):
        MAPAgent(hanoi.problem(7), llm=OracleChatModel(), cache=False)
    gc.collect()
    assert gone() is None


def test_ablation_flags_change_which_modules_run():
    p = hanoi.problem(7)
    base = MAPAgent(p, backend="oracle").plan()
    no_monitor = MAPAgent(p, backend="oracle", config=MAPConfig(modules={"Monitor": "off"})).plan()
    no_decomposer = MAPAgent(p, backend="oracle", config=MAPConfig(modules={"TaskDecomposer": "off"})).plan()
    no_search = MAPAgent(p, backend="oracle", config=MAPConfig(search=False)).plan()
    two = MAPAgent(p, backend="oracle", config=MAPConfig(n_subgoals=2)).plan()
    assert "Monitor" in base.usage.modules and "Monitor" not in no_monitor.usage.modules
    assert "TaskDecomposer" not in no_decomposer.usage.modules and no_decomposer.subgoals == []
    assert "Evaluator" not in no_search.usage.modules and no_search.config.branches == 1
    assert len(two.subgoals) == 2 and len(base.subgoals) == 1
    assert all(r.solved for r in (base, no_monitor, no_decomposer, no_search, two))


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="modules: unknown module"):
        MAPConfig(modules={"Critic": "llm"})
    with pytest.raises(ValueError, match="modules.Evaluator"):
        MAPConfig(modules={"Evaluator": "off"}).resolve(hanoi.HanoiTask(), hanoi.problem(7))


def test_recursion_limit_grows_with_n_b_and_l():
    task, p = hanoi.HanoiTask(), hanoi.problem(7)
    small = MAPConfig(max_actions=10).resolve(task, p).recursion_limit()
    assert MAPConfig(max_actions=20).resolve(task, p).recursion_limit() > small
    assert MAPConfig(max_actions=10, layers=3).resolve(task, p).recursion_limit() > small
