"""No ground truth in any prompt: every module prompt of every problem of every split of every task.

Two checks, each able to fail (the last tests prove it):
* perturbation -- a model is built from ``Problem.public()``; prompts rendered for a problem whose hidden part,
  optimal length and N were changed must be identical to the original's;
* probes -- ``Task.leak_probes`` (hidden values as text, and the phrasings in which a short value would leak,
  like a goal line naming CogEval's target room) must match nowhere in a prompt.
"""

from __future__ import annotations

import json
import re
from functools import cache

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from map_agent.config import MAPConfig
from map_agent.modules import LLM_MODULES
from map_agent.modules.base import LLMModule, make_input
from map_agent.task import MODULES, TASKS, Problem, Task, get_task

LLM = FakeListChatModel(responses=["{}"])


def perturbed(problem: Problem, n: bool = True) -> Problem:
    """The same visible problem with other ground truth (and, with ``n``, another N: no MAP module prompt
    states N, as the original's do not; the original's baselines do, so theirs are checked with N kept)."""
    def other(value):
        if isinstance(value, bool):
            return not value
        if isinstance(value, (int, float)):
            return value + 1000
        if isinstance(value, str):
            return value[::-1] + "-other"
        if isinstance(value, list):
            return [other(v) for v in reversed(value)] + ["other"]
        if isinstance(value, dict):
            return {k: other(v) for k, v in value.items()} | {"other": 1}
        return value
    return problem.model_copy(update={"hidden": other(problem.hidden),
                                      "max_actions": problem.max_actions + (37 if n else 0),
                                      "optimal_length": (problem.optimal_length or 0) + 1000})


def inputs(task: Task, problem: Problem) -> dict[str, list[dict]]:
    """Typical inputs of every module for a problem: its start and goal, a legal action, a one-step history. The
    action is one a model could know of (legal in the public problem): where only ground truth enumerates actions
    (StrategyQA's answers) there is none, lest the test itself put an answer into the prompt."""
    start, goal = problem.start, problem.goal
    actions = task.legal_actions(task.start(problem), problem.public())[:1] or []
    moves = [a.model_dump(mode="json") for a in actions]
    history = tuple(f"{task.render_action(a)} -> {task.render_state(task.apply(task.start(problem), a, problem))}"
                    for a in actions)
    return {
        "TaskDecomposer": [{"state": start, "goal": goal, "n_subgoals": 1}, {"state": start, "goal": goal}],
        "Actor": [{"state": start, "goal": goal, "n_actions": 2, "history": history,
                   "feedback": ["an earlier proposal was invalid"]}],
        "Monitor": [{"state": start, "action": m} for m in moves],
        "Predictor": [{"state": start, "action": m} for m in moves],
        "Evaluator": [{"state": start, "goal": goal}],
        "Orchestrator": [{"state": start, "goal": goal}],
    }


def module_prompts(task: Task, problem: Problem) -> list[str]:
    """Every message of every module prompt for ``problem`` (all six modules, whether the task runs them)."""
    texts = []
    resolved = MAPConfig().resolve(task, problem)
    for name in MODULES:
        variants = [None, "k2"] if name == "TaskDecomposer" else [None]
        for variant in variants:
            module: LLMModule = LLM_MODULES[name](task, problem, LLM, variant=variant,
                                                  reasoning=resolved.reasoning)
            for raw in inputs(task, problem)[name]:
                texts += [str(m.content) for m in module.messages(make_input(name, task, raw))]
    return texts


def baseline_prompts(task: Task, problem: Problem) -> list[str]:
    try:
        from map_agent.baselines import render_prompts
    except ImportError:  # no baselines yet
        return []
    return render_prompts(task, problem.public())


def prompts(task: Task, problem: Problem, modules: bool = True, baselines: bool = True) -> list[str]:
    texts = []
    for k, phase in enumerate(task.phases(problem)):
        if k:  # a later phase carries the previous phase's transcript, as the agent builds it
            phase = phase.model_copy(update={"info": {**phase.info, "history": "Move 1: (an earlier move)"}})
        texts += (module_prompts(task, phase) if modules else []) + (baseline_prompts(task, phase) if baselines
                                                                      else [])
    return texts


def leaks(task: Task, problem: Problem, texts: list[str]) -> list[str]:
    """The probes of ``problem`` that match a prompt, with the text around the match."""
    found = []
    for probe in task.leak_probes(problem):
        for text in texts:
            if m := re.search(probe, text):
                found.append(f"{probe!r} matches ...{text[max(0, m.start() - 60):m.end() + 60]}...")
                break
    return found


@cache
def cases() -> list[tuple[str, str]]:
    return [(name, split) for name in sorted(TASKS) for split in get_task(name).splits()]


@pytest.mark.slow
@pytest.mark.parametrize("name, split", cases())
def test_no_prompt_shows_ground_truth(name, split):
    task = get_task(name)
    problems = task.problems(split)
    assert problems
    for problem in problems:
        texts = prompts(task, problem)
        assert not leaks(task, problem, texts), f"{name}/{split}/{problem.id}: {leaks(task, problem, texts)}"
        where = f"{name}/{split}/{problem.id}"
        assert prompts(task, perturbed(problem), baselines=False) == prompts(task, problem, baselines=False), \
            f"{where}: module prompts read hidden data or N"
        assert prompts(task, perturbed(problem, n=False), modules=False) == prompts(task, problem, modules=False), \
            f"{where}: baseline prompts read hidden data"


def test_every_task_hides_its_ground_truth():
    """Every task keeps some ground truth hidden, and has probes for it."""
    for name in TASKS:
        task = get_task(name)
        problem = task.problems(next(iter(task.splits())))[0]
        assert problem.hidden, f"{name}: no hidden ground truth"
        assert task.leak_probes(problem), f"{name}: no leak probes"


def test_the_perturbation_check_fails_when_a_module_sees_the_full_problem(monkeypatch):
    task = get_task("hanoi")
    problem = task.problems("test3")[0]
    monkeypatch.setattr(Problem, "public", lambda self: self)
    monkeypatch.setattr(type(task), "describe", lambda self, p: f"{p.hidden}")
    assert prompts(task, perturbed(problem)) != prompts(task, problem)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_the_probes_catch_a_prompt_that_states_the_ground_truth(name):
    task = get_task(name)
    problem = task.problems(next(iter(task.splits())))[0]
    clean = prompts(task, problem)
    assert not leaks(task, problem, clean)
    stated = "\n".join(f"Goal: {k} = {v}" for k, v in problem.hidden.items())
    stated += "\n" + json.dumps(problem.hidden)
    assert leaks(task, problem, [*clean, stated]), f"{name}: the probes miss a prompt stating {problem.hidden}"
