"""Errors injected into an oracle module at a known rate: how good must each module be for MAP to plan?

``Corrupted`` wraps a module (its oracle) and replaces the answer of a share ``rate`` of its calls by a wrong one of
a named kind (``config.ERROR_KINDS``). Whether a call is corrupted, and how, is a function of the call's input, the
run index and the seed only -- as a temperature-0 model's answer is a function of its prompt: the same question in
the same run gets the same wrong answer, in whichever problem it is asked (a resumed run replays it), another run
draws anew. The uniform number behind the decision does not depend on the rate, so a call that is wrong at rate 0.1
is wrong at 0.2 too: the points of a curve over rates differ only by the calls the higher rate adds.

Wrong answers are made from the task's declared interface only (``legal_actions``, ``apply``, ``check``,
``distance``, ``as_goal``, ``satisfies``), so every task with oracles gets each kind that makes sense for it, and a
kind the task cannot express (no move the environment rejects, no impossible goal) fails when the module is built.

>>> from map_agent.config import Corruption
>>> from map_agent.modules.predictor import OraclePredictor
>>> from map_agent.modules.schemas import PredictorInput
>>> from map_agent.task import get_task
>>> from map_agent.tasks import hanoi
>>> task, problem = get_task("hanoi"), hanoi.problem(7)
>>> copy = Corrupted(OraclePredictor(task, problem), Corruption(module="Predictor", kind="copied_state", rate=1.0))
>>> inp = PredictorInput(state=task.start(problem), action=task.legal_actions(task.start(problem), problem)[0])
>>> copy(inp).output.next_state == inp.state
True
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from functools import cached_property
from typing import Any, NamedTuple

from pydantic import BaseModel, ValidationError

from map_agent.config import Corruption
from map_agent.modules.base import Module, ModuleResult
from map_agent.modules.schemas import MAX_STEPS
from map_agent.task import Problem, Task, canonical

#: states a breadth-first search visits at most to draw a random subgoal or to prove a goal impossible
REACHABLE_LIMIT = 5000


class Kind(NamedTuple):
    """How one error kind corrupts an answer."""

    #: (wrapper, input, the true output, the call's random source) -> the wrong output, or None where this call
    #: has no wrong answer of the kind (every legal move is optimal): it is then left as it was
    corrupt: Callable[[Corrupted, Any, BaseModel, random.Random], BaseModel | None]
    #: input fields the decision ignores: the Actor's repeated wrong move is the same whatever the Monitor said
    ignores: frozenset[str] = frozenset()
    #: corrupt every call (the rate is a noise level), not a share of them
    every_call: bool = False
    #: (task, problem) -> why the kind cannot apply to this task, or None; checked when the module is built
    unsupported: Callable[[Task, Problem], str | None] = lambda task, problem: None


class Corrupted(Module):
    """``inner`` with ``spec``'s errors injected; ``run`` is the run index (``Resolved.seed``)."""

    def __init__(self, inner: Module, spec: Corruption, run: int = 0) -> None:
        self.inner, self.spec, self.run = inner, spec, run
        self.task, self.problem, self.output_model = inner.task, inner.problem, inner.output_model
        self.kind = KINDS[spec.kind]
        if reason := self.kind.unsupported(self.task, self.problem):
            raise ValueError(f"corrupt {spec.module}:{spec.kind}: {reason}")

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.inner.name

    def draw(self, inp: BaseModel) -> tuple[float, random.Random]:
        """The call's uniform number in [0, 1) and its random source, from the input, the run and the seed."""
        asked = {k: v for k, v in inp.model_dump(mode="json").items() if k not in self.kind.ignores}
        text = f"{self.spec.seed}|{self.run}|{self.name}|{json.dumps(asked, sort_keys=True, separators=(',', ':'))}"
        value = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
        return value / 2**64, random.Random(value)

    def __call__(self, inp: BaseModel) -> ModuleResult:
        result = self.inner(inp)
        if not result.ok or not self.spec.rate:
            return result
        u, rng = self.draw(inp)
        if not self.kind.every_call and u >= self.spec.rate:
            return result
        wrong = self.kind.corrupt(self, inp, result.output, rng)
        return result if wrong is None else ModuleResult(output=wrong, record=result.record)

    def changed(self, output: BaseModel, **fields: Any) -> BaseModel:
        """``output`` with ``fields`` replaced; its reasoning, where it has one, says that the answer is injected."""
        values = output.model_dump(mode="json") | fields
        if "reasoning" in values:
            values["reasoning"] = f"injected error ({self.spec.kind})"
        return type(output).model_validate(values)

    @cached_property
    def reachable(self) -> list[BaseModel]:
        """States reachable from the start (at most ``REACHABLE_LIMIT``): where random subgoals are drawn."""
        return reachable(self.task, self.problem)[0]

    @cached_property
    def impossible(self) -> BaseModel | None:
        """The problem's impossible goal (``impossible_goal``), found once."""
        return impossible_goal(self.task, self.problem, self.reachable)


# -- the task's neighbourhood, from its declared interface ---------------------------------------------------------
def near(task: Task, problem: Problem, state: BaseModel, radius: int) -> list[BaseModel]:
    """The states within ``radius`` legal moves of ``state``, itself first, in breadth-first order."""
    seen = {canonical(state): state}
    frontier = [state]
    for _ in range(radius):
        following = []
        for s in frontier:
            for action in task.legal_actions(s, problem):
                t = task.apply(s, action, problem)
                if (k := canonical(t)) not in seen:
                    seen[k] = t
                    following.append(t)
        frontier = following
    return list(seen.values())


def reachable(task: Task, problem: Problem, limit: int = REACHABLE_LIMIT) -> tuple[list[BaseModel], bool]:
    """The states reachable from the problem's start, breadth first, and whether the search exhausted them."""
    start = task.start(problem)
    seen = {canonical(start): start}
    frontier = [start]
    while frontier:
        s = frontier.pop(0)
        for action in task.legal_actions(s, problem):
            t = task.apply(s, action, problem)
            if (k := canonical(t)) not in seen:
                if len(seen) >= limit:
                    return list(seen.values()), False
                seen[k] = t
                frontier.append(t)
    return list(seen.values()), True


def rejected_moves(task: Task, problem: Problem, state: BaseModel) -> list[BaseModel]:
    """Moves the environment rejects in ``state``: the legal moves of states up to two moves away that are illegal
    here (taking a piece that is not on top, going through a missing door), in a fixed order."""
    moves = {canonical(a): a for s in near(task, problem, state, 2) for a in task.legal_actions(s, problem)}
    return [a for k, a in sorted(moves.items()) if not task.check(state, a, problem).valid]


def detours(task: Task, problem: Problem, state: BaseModel, goal: BaseModel) -> list[BaseModel]:
    """Legal moves in ``state`` that are not on a shortest path to ``goal``."""
    moves = task.legal_actions(state, problem)
    after = [task.distance(task.apply(state, a, problem), goal, problem) for a in moves]
    best = min(after, default=0)
    return [a for a, d in zip(moves, after, strict=True) if d > best]


def impossible_goal(task: Task, problem: Problem, states: list[BaseModel]) -> BaseModel | None:
    """A goal that no state in ``states`` (all the reachable ones) satisfies: the fields of two reachable goals
    mixed (Hanoi: list A of one state, list B of another, list C of the first: a disk twice, another missing)."""
    goals = [task.as_goal(s).model_dump(mode="json") for s in states]
    fields = list(goals[0]) if goals else []
    if len(fields) < 2:
        return None
    for first in goals:
        for second in goals:
            mixed = {f: (first if i % 2 == 0 else second)[f] for i, f in enumerate(fields)}
            try:
                goal = task.Goal.model_validate(mixed)
            except ValidationError:
                continue
            if not any(task.satisfies(s, goal, problem) for s in states):
                return goal
    return None


# -- the kinds ------------------------------------------------------------------------------------------------------
def _wrong_state(w: Corrupted, inp: Any, out: BaseModel, rng: random.Random) -> BaseModel | None:
    truth = canonical(out.next_state)  # type: ignore[attr-defined]
    wrong = [s for s in near(w.task, w.problem, inp.state, 2)[1:] if canonical(s) != truth]
    return w.changed(out, next_state=rng.choice(wrong).model_dump(mode="json")) if wrong else None


def _copied_state(w: Corrupted, inp: Any, out: BaseModel, rng: random.Random) -> BaseModel | None:
    return w.changed(out, next_state=inp.state.model_dump(mode="json"))


def _flipped(w: Corrupted, inp: Any, out: BaseModel, rng: random.Random) -> BaseModel | None:
    if w.name == "Orchestrator":
        return w.changed(out, achieved=not out.achieved)  # type: ignore[attr-defined]
    valid = not out.valid  # type: ignore[attr-defined]
    return w.changed(out, valid=valid, feedback="" if valid else "the action breaks a rule")


def _wrong_moves(w: Corrupted, inp: Any, out: BaseModel, rng: random.Random) -> BaseModel | None:
    wrong = rejected_moves(w.task, w.problem, inp.state)
    if not wrong:
        return None
    picked = rng.sample(wrong, min(len(out.actions), len(wrong)))  # type: ignore[attr-defined]
    return w.changed(out, actions=[a.model_dump(mode="json") for a in picked])


def _legal_detour(w: Corrupted, inp: Any, out: BaseModel, rng: random.Random) -> BaseModel | None:
    wrong = detours(w.task, w.problem, inp.state, inp.goal)
    if not wrong:
        return None
    picked = rng.sample(wrong, min(len(out.actions), len(wrong)))  # type: ignore[attr-defined]
    return w.changed(out, actions=[a.model_dump(mode="json") for a in picked])


def _noisy_value(w: Corrupted, inp: Any, out: BaseModel, rng: random.Random) -> BaseModel | None:
    steps = out.steps_to_goal + round(rng.gauss(0, w.spec.rate))  # type: ignore[attr-defined]
    return w.changed(out, steps_to_goal=min(max(steps, 0), MAX_STEPS))


def _random_value(w: Corrupted, inp: Any, out: BaseModel, rng: random.Random) -> BaseModel | None:
    low, high = w.task.evaluator_fallback(w.problem)
    wrong = [v for v in range(low, high + 1) if v != out.steps_to_goal]  # type: ignore[attr-defined]
    return w.changed(out, steps_to_goal=rng.choice(wrong)) if wrong else None


def _impossible_subgoal(w: Corrupted, inp: Any, out: BaseModel, rng: random.Random) -> BaseModel | None:
    return w.changed(out, subgoals=[w.impossible.model_dump(mode="json")]) if w.impossible is not None else None


def _random_subgoal(w: Corrupted, inp: Any, out: BaseModel, rng: random.Random) -> BaseModel | None:
    true = {json.dumps(g.model_dump(mode="json"), sort_keys=True) for g in out.subgoals}  # type: ignore[attr-defined]
    goals = [w.task.as_goal(s).model_dump(mode="json") for s in w.reachable]
    wrong = [g for g in goals if json.dumps(g, sort_keys=True) not in true]
    return w.changed(out, subgoals=rng.sample(wrong, min(len(true), len(wrong)))) if wrong else None


def _no_rejected_move(task: Task, problem: Problem) -> str | None:
    if not rejected_moves(task, problem, task.start(problem)):
        return f"{task.name} has no move the environment rejects near the start of problem {problem.id}"
    return None


def _no_detour(task: Task, problem: Problem) -> str | None:
    goal = task.goal(problem)
    if not any(detours(task, problem, s, goal) for s in near(task, problem, task.start(problem), 2)):
        return f"every legal move near the start of {task.name} problem {problem.id} is on a shortest path"
    return None


def _no_impossible_goal(task: Task, problem: Problem) -> str | None:
    states, complete = reachable(task, problem)
    if not complete:
        return f"{task.name} problem {problem.id} has over {REACHABLE_LIMIT} states: no goal is provably impossible"
    if impossible_goal(task, problem, states) is None:
        return f"{task.name} has no goal that no reachable state satisfies (problem {problem.id})"
    return None


#: how each kind of ``config.ERROR_KINDS`` is made
KINDS: dict[str, Kind] = {
    "wrong_state": Kind(_wrong_state),
    "copied_state": Kind(_copied_state),
    "flipped": Kind(_flipped),
    "repeated_wrong_move": Kind(_wrong_moves, ignores=frozenset({"feedback", "sample", "critique"}),
                                unsupported=_no_rejected_move),
    "fresh_wrong_move": Kind(_wrong_moves, unsupported=_no_rejected_move),
    "legal_detour": Kind(_legal_detour, unsupported=_no_detour),
    "noisy_value": Kind(_noisy_value, every_call=True),
    "random_value": Kind(_random_value),
    "impossible_subgoal": Kind(_impossible_subgoal, unsupported=_no_impossible_goal),
    "random_subgoal": Kind(_random_subgoal),
}
