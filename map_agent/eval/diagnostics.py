"""Module diagnostics: every LLM module call of a run judged against the task's ground truth.

A solved/unsolved score says *that* MAP failed; these say *which module* did. Each logged call (``record["calls"]``:
``module``, ``input``, ``output``, ``failed``) is replayed against the task's oracles:

* Monitor -- its verdict against ``task.check`` (positive = "invalid"): precision, recall, accuracy;
* Actor -- each proposal's validity, and whether it lies on a shortest path to the goal the Actor was given;
* Predictor -- the predicted state against ``task.apply`` (exact match), for valid actions;
* Evaluator -- its step count against ``task.distance``: absolute error and Spearman rank correlation;
* Orchestrator -- its "achieved" against ``task.satisfies``;
* TaskDecomposer -- each subgoal on an optimal path from the start to the goal.

Counts are kept raw (a ``Tally`` per module) so they sum over calls, phases, records and runs; rates are derived
from the sums only at the end. Calls of modules the run configured as oracles are skipped: they are the ground
truth, unless errors were injected into them (``map-agent sensitivity``).

>>> from map_agent.tasks import hanoi
>>> problem = hanoi.problem(7)
>>> call = {"module": "Monitor", "input": {"state": problem.start, "action": {"disk": 2, "source": "A",
...         "target": "C"}}, "output": {"valid": False}, "failed": False}
>>> from map_agent.task import get_task
>>> diagnose_record(get_task("hanoi"), problem, {"calls": [call]})["Monitor"]["counts"]
{'fp': 1}
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from map_agent.task import MODULES, Problem, Task, canonical, shortest_path

#: the headline rate of each module, the one ``weakest`` compares: what "this module works" means
SCORES = {"Monitor": "accuracy", "Actor": "valid", "Predictor": "accuracy", "Evaluator": "exact",
          "Orchestrator": "accuracy", "TaskDecomposer": "on_optimal_path"}


class Tally(BaseModel):
    """Raw counts for one module: they add up across calls, records and runs; rates come from ``metrics``."""

    calls: int = 0
    failed: int = 0  # calls with no output (unparseable reply, network error)
    unscorable: int = 0  # items the ground truth cannot judge (a state the task cannot read, an unreachable goal)
    counts: dict[str, int] = Field(default_factory=dict)
    pairs: list[tuple[float, float]] = Field(default_factory=list)  # Evaluator: (predicted, true) distances

    def bump(self, key: str, by: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + by

    def merge(self, other: Tally) -> Tally:
        counts = dict(self.counts)
        for k, v in other.counts.items():
            counts[k] = counts.get(k, 0) + v
        return Tally(calls=self.calls + other.calls, failed=self.failed + other.failed,
                     unscorable=self.unscorable + other.unscorable, counts=counts, pairs=self.pairs + other.pairs)


def _rate(num: int, den: int) -> float | None:
    return num / den if den else None


def metrics(module: str, tally: Tally) -> dict[str, float | int | None]:
    """The module's rates from its counts (``None`` where nothing was there to measure)."""
    c = tally.counts.get
    out: dict[str, float | int | None] = {"calls": tally.calls, "failed": tally.failed,
                                          "failure_rate": _rate(tally.failed, tally.calls),
                                          "unscorable": tally.unscorable}
    if module == "Monitor":
        tp, fp, fn, tn = c("tp", 0), c("fp", 0), c("fn", 0), c("tn", 0)
        out |= {"verdicts": tp + fp + fn + tn, "precision": _rate(tp, tp + fp), "recall": _rate(tp, tp + fn),
                "accuracy": _rate(tp + tn, tp + fp + fn + tn)}
    elif module == "Actor":
        n = c("proposals", 0)
        out |= {"proposals": n, "valid": _rate(c("valid", 0), n),
                "optimal": _rate(c("optimal", 0), c("optimality_scored", 0)),
                "any_optimal": _rate(c("any_optimal", 0), c("calls_optimality_scored", 0))}
    elif module in ("Predictor", "Orchestrator"):
        out |= {"judged": c("judged", 0), "accuracy": _rate(c("correct", 0), c("judged", 0))}
    elif module == "Evaluator":
        pairs = tally.pairs
        errors = [abs(p - t) for p, t in pairs]
        out |= {"judged": len(pairs), "mean_abs_error": sum(errors) / len(errors) if errors else None,
                "exact": _rate(sum(e == 0 for e in errors), len(errors)), "spearman": _spearman(pairs)}
    elif module == "TaskDecomposer":
        out |= {"subgoals": c("subgoals", 0), "on_optimal_path": _rate(c("on_path", 0), c("subgoals", 0))}
    return out


def _spearman(pairs: list[tuple[float, float]]) -> float | None:
    """Rank correlation of predicted and true distances; undefined (None) when either side is constant."""
    if len(pairs) < 2 or len({p for p, _ in pairs}) < 2 or len({t for _, t in pairs}) < 2:
        return None
    from scipy.stats import spearmanr

    rho = spearmanr([p for p, _ in pairs], [t for _, t in pairs]).statistic
    return None if math.isnan(rho) else float(rho)


class _Judge:
    """The ground truth for one problem, with distances memoised (the same states recur across calls)."""

    def __init__(self, task: Task, problem: Problem) -> None:
        self.task = task
        self.problem = problem
        self._dist: dict[tuple[str, str], float] = {}

    def state(self, raw: Any) -> BaseModel:
        return self.task.State.model_validate(raw)

    def distance(self, state: BaseModel, goal: BaseModel) -> float:
        key = (canonical(state), canonical(goal))
        if key not in self._dist:
            self._dist[key] = float(self.task.distance(state, goal, self.problem))
        return self._dist[key]

    # -- one function per module: (input, output) -> counts into the tally -------------------------------------
    def Monitor(self, inp: dict, out: dict, t: Tally) -> None:
        state, action = self.state(inp["state"]), self.task.Action.model_validate(inp["action"])
        truly_invalid = not self.task.check(state, action, self.problem).valid
        said_invalid = not out["valid"]
        t.bump({(True, True): "tp", (True, False): "fp", (False, True): "fn", (False, False): "tn"}[
            (said_invalid, truly_invalid)])

    def Actor(self, inp: dict, out: dict, t: Tally) -> None:
        state, goal = self.state(inp["state"]), self.task.Goal.model_validate(inp["goal"])
        here = self.distance(state, goal)
        scored = 0 < here < math.inf  # at the goal, or nowhere near it, no move is "optimal"
        any_optimal = False
        for raw in out["actions"]:
            t.bump("proposals")
            try:
                action = self.task.Action.model_validate(raw)
            except ValidationError:
                continue
            valid = self.task.check(state, action, self.problem).valid
            t.bump("valid", valid)
            if scored:
                t.bump("optimality_scored")
                optimal = valid and self.distance(self.task.apply(state, action, self.problem), goal) == here - 1
                t.bump("optimal", optimal)
                any_optimal |= optimal
        if scored:
            t.bump("calls_optimality_scored")
            t.bump("any_optimal", any_optimal)

    def Predictor(self, inp: dict, out: dict, t: Tally) -> None:
        state, action = self.state(inp["state"]), self.task.Action.model_validate(inp["action"])
        if not self.task.check(state, action, self.problem).valid:
            t.unscorable += 1  # an invalid action has no successor to predict
            return
        truth = canonical(self.task.apply(state, action, self.problem))
        try:
            correct = canonical(self.state(out["next_state"])) == truth
        except ValidationError:
            correct = False
        t.bump("judged")
        t.bump("correct", correct)

    def Evaluator(self, inp: dict, out: dict, t: Tally) -> None:
        truth = self.distance(self.state(inp["state"]), self.task.Goal.model_validate(inp["goal"]))
        if math.isinf(truth):
            t.unscorable += 1
            return
        t.pairs.append((float(out["steps_to_goal"]), truth))

    def Orchestrator(self, inp: dict, out: dict, t: Tally) -> None:
        truth = self.task.satisfies(self.state(inp["state"]), self.task.Goal.model_validate(inp["goal"]),
                                    self.problem)
        t.bump("judged")
        t.bump("correct", bool(out["achieved"]) == truth)

    def TaskDecomposer(self, inp: dict, out: dict, t: Tally) -> None:
        """A subgoal is on an optimal path when reaching it first costs nothing: d(s, g) + d(g, goal) = d(s, goal),
        with g's state the subgoal itself where goals are states, else the nearest state achieving it."""
        start, goal = self.state(inp["state"]), self.task.Goal.model_validate(inp["goal"])
        total = self.distance(start, goal)
        if not 1 < total < math.inf:  # a one-step (or impossible) goal has no intermediate states
            t.unscorable += len(out["subgoals"])
            return
        for raw in out["subgoals"]:
            t.bump("subgoals")
            try:
                sub = self.task.Goal.model_validate(raw)
            except ValidationError:
                continue
            via = self._reach(start, sub)
            if via is None:
                continue
            steps, state = via
            t.bump("on_path", steps + self.distance(state, goal) == total)

    def _reach(self, start: BaseModel, sub: BaseModel) -> tuple[float, BaseModel] | None:
        if self.task.Goal is self.task.State:
            state = self.state(sub.model_dump())
            steps = self.distance(start, sub)
            return None if math.isinf(steps) else (steps, state)
        path = shortest_path(self.task, start, sub, self.problem)
        if math.isinf(path.distance):
            return None
        return path.distance, self.state(path.states[-1])


def diagnose_calls(task: Task, problem: Problem, calls: Iterable[dict[str, Any]],
                   skip: Iterable[str] = ()) -> dict[str, Tally]:
    """Tallies per module for the calls of one plan (one phase) of ``problem``; modules in ``skip`` are left out."""
    judge = _Judge(task, problem)
    tallies: dict[str, Tally] = {}
    skip = set(skip)
    for call in calls:
        module = call.get("module")
        if module not in MODULES or module in skip:
            continue
        t = tallies.setdefault(module, Tally())
        t.calls += 1
        if call.get("failed") or call.get("output") is None:
            t.failed += 1
            continue
        try:
            getattr(judge, module)(call["input"], call["output"], t)
        except (ValidationError, KeyError, TypeError, ValueError):
            t.unscorable += 1  # e.g. a hallucinated state the environment cannot even represent
    return tallies


def _merge(into: dict[str, Tally], more: dict[str, Tally]) -> None:
    for module, t in more.items():
        into[module] = into[module].merge(t) if module in into else t


def diagnose_record(task: Task, problem: Problem, record: dict[str, Any]) -> dict[str, Any]:
    """Per-module diagnostics of one record (all its phases), as stored in ``record["diagnostics"]``.

    Each module maps to ``{"counts": Tally, "metrics": rates}``; calls of modules the record's configuration ran
    as oracles are skipped, unless errors were injected into them (``config.corrupt``): those are judged too.
    """
    configured = (record.get("config") or {}).get("modules") or {}
    corrupted = {c["module"] for c in (record.get("config") or {}).get("corrupt") or []}
    skip = [m for m, impl in configured.items() if impl == "oracle" and m not in corrupted]
    phases = task.phases(problem)
    earlier = record.get("phases") or []
    tallies: dict[str, Tally] = {}
    for k, phase_record in enumerate(earlier):
        _merge(tallies, diagnose_calls(task, phases[min(k, len(phases) - 1)], phase_record.get("calls") or [], skip))
    _merge(tallies, diagnose_calls(task, phases[-1], record.get("calls") or [], skip))
    return {m: {**t.model_dump(exclude_defaults=True, exclude={"calls", "failed", "unscorable"}),
                "calls": t.calls, "failed": t.failed, "unscorable": t.unscorable,
                "metrics": metrics(m, t)} for m, t in _ordered(tallies).items()}


def _ordered(tallies: dict[str, Tally]) -> dict[str, Tally]:
    return {m: tallies[m] for m in MODULES if m in tallies}


def health(module: str, rates: dict[str, Any]) -> float:
    """How well a module works, 0 to 1: the lower of its headline rate (``SCORES``) and the share of its calls
    that returned an output. A module whose every call failed has no headline rate, but it is as broken as a
    module can be: 0."""
    done = 1 - (rates.get("failure_rate") or 0)
    score = rates.get(SCORES[module])
    return done if score is None else min(score, done)


def all_failed(rates: dict[str, Any]) -> bool:
    return bool(rates.get("calls")) and rates.get("failed") == rates.get("calls")


def aggregate(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Sum the per-record diagnostics of a run into per-module rates, rank the modules and name the weakest.

    ``ranking`` orders the modules weakest first by ``health`` (a module whose every call failed before any other
    at 0); ``weakest`` is its first, where a user should look first, or None when every module is always right
    and no call failed. ``scores`` holds the headline rates that are defined.
    """
    tallies: dict[str, Tally] = {}
    for r in records:
        for module, d in (r.get("diagnostics") or {}).items():
            _merge(tallies, {module: Tally.model_validate({k: v for k, v in d.items() if k != "metrics"})})
    modules = {m: metrics(m, t) for m, t in _ordered(tallies).items()}
    scored = {m: v[SCORES[m]] for m, v in modules.items() if v.get(SCORES[m]) is not None}
    ranking = sorted(modules, key=lambda m: (health(m, modules[m]), not all_failed(modules[m])))
    weakest = ranking[0] if ranking and health(ranking[0], modules[ranking[0]]) < 1 else None
    return {"modules": modules, "scores": scored, "ranking": ranking, "weakest": weakest}

