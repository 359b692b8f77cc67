"""MAP end to end on CogEval: all-oracle modules solve every split; the LLM path runs on scripted models."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from map_agent import MAPAgent
from map_agent.config import MAPConfig
from map_agent.modules.oracle import OracleChatModel
from map_agent.tasks.cogeval import CogEvalTask

TASK = CogEvalTask()
MAP_SPLITS = (
    "steppath2",
    "steppath3",
    "steppath4",
    "valuepath",
    "detour",
    "reward_revaluation",
    "icl_steppath",
    "icl_valuepath",
    "transfer_n7tree:valuepath",
)
TEMPLATE_SPLITS = tuple(s for s in TASK.splits() if ":" in s and not s.startswith("transfer_"))


def _solve_all(split: str, **kwargs: Any) -> None:
    for problem in TASK.problems(split):
        result = MAPAgent(problem, **kwargs).plan()
        assert result.solved, (problem.id, [a.room for a in result.actions], result.status)
        assert result.invalid_moves == 0
        assert len(result.actions) == problem.optimal_length
        assert result.metrics == {"optimal": True, "pct_invalid_per_problem": 0.0}
        assert len(result.phases) == len(TASK.phases(problem)) - 1


@pytest.mark.parametrize("split", MAP_SPLITS)
def test_all_oracle_map_solves_every_paper_split(split):
    _solve_all(split, backend="oracle")


@pytest.mark.slow
@pytest.mark.parametrize("split", TEMPLATE_SPLITS)
def test_all_oracle_map_solves_every_template_split(split):
    _solve_all(split, backend="oracle")


def test_steppath_runs_without_search_and_valuepath_with_it():
    steppath = MAPAgent(TASK.problem("steppath4-9-1"), backend="oracle")
    valuepath = MAPAgent(TASK.problem("valuepath-4"), backend="oracle")
    assert not steppath.config.search and steppath.config.branches == 1
    assert valuepath.config.search and valuepath.config.branches == 2
    for agent in (steppath, valuepath):
        assert agent.config.modules["Predictor"] == "off" and agent.config.modules["TaskDecomposer"] == "off"


@pytest.mark.parametrize(
    "problem_id", ["steppath3-9-13", "valuepath-4", "detour-4", "reward_revaluation-2", "n7tree>valuepath-8-15-4"]
)
def test_llm_path_with_the_oracle_chat_model(problem_id):
    """Every module prompt renders, is sent, and its reply parses: the full LLM path without a real model."""
    result = MAPAgent(TASK.problem(problem_id), llm=OracleChatModel(), cache=False).plan()
    assert result.solved and result.invalid_moves == 0 and not result.failures
    assert result.usage.modules["Actor"].model_calls >= 1


def test_detour_second_phase_sees_the_first_attempt_and_replans_from_the_start():
    problem = TASK.problem("detour-1")
    result = MAPAgent(problem, backend="oracle").plan()
    (first,) = result.phases
    walked = [a["room"] for a in first["plan"]]
    assert walked[0] == 11 and walked[-1] == 8 and len(walked) == 3  # the first phase uses the door 1-11
    replanned = [a.room for a in result.actions]
    assert replanned[:2] == [13, 11] and replanned[-1] == 8 and len(replanned) == 4  # then round it, from room 1
    assert result.solved and result.metrics["optimal"]


class RecordingOracle(OracleChatModel):
    """The oracle for every module, keeping every prompt it was sent."""

    sent: list[str] = []

    def _generate(
        self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager=None, **kwargs: Any
    ) -> ChatResult:
        self.sent.append("\n".join(str(m.content) for m in messages))
        return super()._generate(messages, stop, run_manager, **kwargs)


@pytest.mark.parametrize("problem_id", ["detour-4", "reward_revaluation-4"])
def test_second_phase_prompts_carry_the_first_attempt_then_the_change(problem_id):
    problem = TASK.problem(problem_id)
    llm = RecordingOracle(sent=[])
    result = MAPAgent(problem, llm=llm, cache=False).plan()
    assert result.solved and len(result.phases) == 1
    first_moves = [a["room"] for a in result.phases[0]["plan"]]
    change = problem.info["change"]
    before = [t for t in llm.sent if change not in t]
    after = [t for t in llm.sent if change in t]
    assert before and after  # the first phase never hears of the change
    history = f"Move 1: Go to room {first_moves[0]}. -> room {first_moves[0]}"
    assert all(history in t and t.index(history) < t.index(change) for t in after)
    assert not any("Goal: room" in t for t in llm.sent)  # the best chest is never named as the goal


class ScriptedActor(OracleChatModel):
    """The oracle for every module, except that the Actor's first replies come from a script."""

    script: list[str] = []

    def _generate(
        self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager=None, **kwargs: Any
    ) -> ChatResult:
        meta = run_manager.metadata if run_manager else {}
        if meta.get("map_agent_module") == "Actor" and self.script:
            return ChatResult(generations=[ChatGeneration(message=AIMessage(self.script.pop(0)))])
        return super()._generate(messages, stop, run_manager, **kwargs)


def test_monitor_rejects_a_missing_door_and_the_actor_recovers():
    problem = TASK.problem("steppath2-4-9")  # 4 -> 15 -> 9; no door 4-9
    llm = ScriptedActor(script=['{"actions": [{"room": 9}]}'])
    result = MAPAgent(problem, llm=llm, cache=False).plan()
    assert [a.room for a in result.actions] == [15, 9]
    assert result.solved and result.invalid_moves == 0
    assert result.usage.modules["Actor"].model_calls >= 3  # the scripted proposal, its retry, the second step
    assert not llm.script


def test_without_monitor_the_invalid_move_is_counted():
    problem = TASK.problem("steppath2-4-9")
    llm = ScriptedActor(script=['{"actions": [{"room": 9}]}'])
    result = MAPAgent(problem, llm=llm, cache=False, config=MAPConfig(modules={"Monitor": "off"})).plan()
    assert result.invalid_moves == 1 and not result.solved
    assert "missing edge 4-9" in result.execution.steps[0].reason


def test_steppath_prompt_uses_the_steppath_examples():
    from map_agent.modules.actor import Actor

    actor = Actor(TASK, TASK.problem("steppath2-4-9").public(), OracleChatModel())
    # the original's three example sequences, 2 + 3 + 4 steps
    assert len([m for m in actor._prefix if m.type == "ai"]) == 9


@pytest.mark.real_model
def test_embedded_model_runs_a_steppath_problem():
    result = MAPAgent(TASK.problem("steppath2-4-9"), backend="local", cache=False).plan()
    assert result.execution.n_actions <= 6
    assert result.usage.total.model_calls > 0
