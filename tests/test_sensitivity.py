"""Errors injected into oracle modules (``map_agent.modules.corrupted``) and ``map-agent sensitivity``.

Each kind is checked on Hanoi (and on CogEval where the module runs there) for what a sensitivity curve relies on:
the same call in the same run is corrupted the same way, the share of corrupted calls is the requested rate, a
corrupted answer is wrong in the way its kind says, and rate 0 is the oracle itself.
"""

from __future__ import annotations

import itertools
import json
import math
import statistics

import pytest

from map_agent import MAPAgent
from map_agent.cli import main
from map_agent.config import ERROR_KINDS, Corruption, MAPConfig
from map_agent.eval.records import read_records
from map_agent.eval.report import Run
from map_agent.eval.sensitivity import Sweep, measured_accuracy
from map_agent.modules import ORACLES
from map_agent.modules.corrupted import KINDS, Corrupted, reachable, rejected_moves
from map_agent.modules.schemas import (
    ActorInput,
    EvaluatorInput,
    MonitorInput,
    OrchestratorInput,
    PredictorInput,
    TaskDecomposerInput,
)
from map_agent.task import canonical, get_task

HANOI = get_task("hanoi")
P7 = HANOI.problem("7")
STATES = reachable(HANOI, P7)[0]  # all 27 three-disk states
COGEVAL = get_task("cogeval")
VALUEPATH = COGEVAL.problem("valuepath-4")


def wrap(module: str, kind: str, rate: float, task=HANOI, problem=P7, run: int = 0, seed: int = 0) -> Corrupted:
    spec = Corruption(module=module, kind=kind, rate=rate, seed=seed)
    return Corrupted(ORACLES[module](task, problem), spec, run=run)


def predictor_inputs(task=HANOI, problem=P7, states=STATES) -> list[PredictorInput]:
    return [PredictorInput(state=s, action=a) for s in states for a in task.legal_actions(s, problem)]


def orchestrator_inputs() -> list[OrchestratorInput]:
    return [OrchestratorInput(state=s, goal=HANOI.as_goal(g)) for s, g in itertools.product(STATES, STATES)]


def actor_inputs(n_actions: int = 2) -> list[ActorInput]:
    goal = HANOI.goal(P7)
    return [ActorInput(state=s, goal=goal, n_actions=n_actions) for s in STATES if not HANOI.satisfies(s, goal, P7)]


def changed(module: Corrupted, inputs) -> list[bool]:
    """Which calls the wrapper answered differently from the oracle."""
    return [module(i).output != module.inner(i).output for i in inputs]


def test_every_declared_kind_is_implemented():
    assert set(KINDS) == set(ERROR_KINDS)


# -- determinism and rates --------------------------------------------------------------------------------------
def test_an_error_is_a_function_of_the_input_the_run_and_the_seed():
    inputs = orchestrator_inputs()
    first = [wrap("Orchestrator", "flipped", 0.3)(i).output for i in inputs]
    assert first == [wrap("Orchestrator", "flipped", 0.3)(i).output for i in inputs]  # the same run: the same
    assert first != [wrap("Orchestrator", "flipped", 0.3, run=1)(i).output for i in inputs]  # another run draws anew
    assert first != [wrap("Orchestrator", "flipped", 0.3, seed=5)(i).output for i in inputs]
    moves = [wrap("Predictor", "wrong_state", 1.0)(i).output for i in predictor_inputs()]
    assert moves == [wrap("Predictor", "wrong_state", 1.0)(i).output for i in predictor_inputs()]


def pairs(step: int = 1) -> list[tuple]:
    """(state, goal) pairs of distinct three-disk states, every ``step``-th."""
    return [(s, HANOI.as_goal(g)) for s, g in itertools.product(STATES, STATES) if s != g][::step]


#: many distinct inputs per module: the share of them a kind corrupts is measured on these
INPUTS = {
    "Predictor": predictor_inputs,
    "Monitor": lambda: [MonitorInput(state=s, action=a) for s in STATES
                        for a in [*HANOI.legal_actions(s, P7), *rejected_moves(HANOI, P7, s)[:4]]],
    "Orchestrator": orchestrator_inputs,
    "Actor": lambda: [ActorInput(state=s, goal=g, n_actions=2) for s, g in pairs(3)],
    "Evaluator": lambda: [EvaluatorInput(state=s, goal=g) for s, g in pairs()],
    "TaskDecomposer": lambda: [TaskDecomposerInput(state=s, goal=g, n_subgoals=1) for s, g in pairs(3)],
}


@pytest.mark.parametrize("kind", sorted(set(ERROR_KINDS) - {"noisy_value"}))  # noise perturbs every call
@pytest.mark.parametrize("rate", [0.1, 0.4])
def test_the_share_of_corrupted_calls_is_the_rate(kind, rate):
    for module in ERROR_KINDS[kind][0]:
        calls = INPUTS[module]()
        share = sum(changed(wrap(module, kind, rate), calls)) / len(calls)
        assert abs(share - rate) <= 3 * math.sqrt(rate * (1 - rate) / len(calls)) + 0.01, (module, share)


def test_a_call_wrong_at_a_low_rate_is_wrong_at_a_higher_one():
    calls = orchestrator_inputs()
    low, high = changed(wrap("Orchestrator", "flipped", 0.1), calls), changed(wrap("Orchestrator", "flipped", 0.3),
                                                                               calls)
    assert sum(low) < sum(high) and all(h for lo, h in zip(low, high, strict=True) if lo)


def test_rate_zero_is_the_oracle():
    for module, kind in [("Predictor", "wrong_state"), ("Evaluator", "noisy_value"), ("Monitor", "flipped")]:
        corrupted = wrap(module, kind, 0.0)
        inp = {"Predictor": predictor_inputs()[0], "Evaluator": EvaluatorInput(state=STATES[3], goal=HANOI.goal(P7)),
               "Monitor": MonitorInput(state=STATES[0], action=HANOI.legal_actions(STATES[0], P7)[0])}[module]
        assert corrupted(inp).output == corrupted.inner(inp).output
    plain = MAPAgent(P7, backend="oracle").plan().record()
    zero = MAPAgent(P7, backend="oracle", config=MAPConfig(corrupt=[
        Corruption(module="Predictor", kind="wrong_state", rate=0.0)])).plan().record()
    for field in ("plan", "solved", "status", "calls", "execution"):
        assert zero[field] == plain[field], field


# -- what each kind does ------------------------------------------------------------------------------------------
def test_wrong_state_is_near_but_not_the_successor_and_copied_state_is_the_input():
    for inp in predictor_inputs():
        truth = HANOI.apply(inp.state, inp.action, P7)
        wrong = wrap("Predictor", "wrong_state", 1.0)(inp).output
        assert wrong.next_state not in (truth, inp.state)
        assert HANOI.distance(inp.state, HANOI.as_goal(wrong.next_state), P7) <= 2
        assert wrap("Predictor", "copied_state", 1.0)(inp).output.next_state == inp.state


def test_flipped_inverts_the_monitor_and_the_orchestrator():
    state = STATES[0]
    for action in [*HANOI.legal_actions(state, P7), *rejected_moves(HANOI, P7, state)]:
        inp = MonitorInput(state=state, action=action)
        verdict = wrap("Monitor", "flipped", 1.0)(inp).output
        assert verdict.valid != HANOI.check(state, action, P7).valid
        assert verdict.reasoning == "injected error (flipped)"  # not the oracle's reasoning for the other verdict
    for inp in orchestrator_inputs()[:60]:
        truth = HANOI.satisfies(inp.state, inp.goal, P7)
        assert wrap("Orchestrator", "flipped", 1.0)(inp).output.achieved is not truth


def test_a_repeated_wrong_move_survives_the_monitors_feedback_and_a_fresh_one_does_not():
    repeated, fresh = wrap("Actor", "repeated_wrong_move", 0.5), wrap("Actor", "fresh_wrong_move", 0.5)
    same_rounds = varied = 0
    for inp in actor_inputs():
        rounds = [inp.model_copy(update={"feedback": ("'x' is invalid",) * k, "sample": k}) for k in range(10)]
        answers = [repeated(r).output for r in rounds]
        same_rounds += all(a == answers[0] for a in answers)
        varied += len({json.dumps(fresh(r).output.model_dump(mode="json")) for r in rounds}) > 1
        for answer, truth in zip(answers, [repeated.inner(r).output for r in rounds], strict=True):
            if answer != truth:  # every proposal of a corrupted answer is a move the environment rejects
                assert not any(HANOI.check(inp.state, a, P7).valid for a in answer.actions)
    assert same_rounds == len(actor_inputs())  # the Actor repeats itself whatever the Monitor said
    assert varied > len(actor_inputs()) / 2  # a fresh error is redrawn with each round


def test_a_legal_detour_is_legal_and_off_every_shortest_path():
    goal = HANOI.goal(P7)
    detour = wrap("Actor", "legal_detour", 1.0)
    for inp in actor_inputs():
        here = HANOI.distance(inp.state, goal, P7)
        for action in detour(inp).output.actions:
            assert HANOI.check(inp.state, action, P7).valid
            assert HANOI.distance(HANOI.apply(inp.state, action, P7), goal, P7) >= here


def test_noisy_value_has_the_requested_sigma_and_random_value_is_wrong_and_in_range():
    goal = HANOI.goal(P7)
    inputs = [EvaluatorInput(state=s, goal=HANOI.as_goal(g)) for s, g in itertools.product(STATES, STATES)]
    truth = [wrap("Evaluator", "noisy_value", 0.0)(i).output.steps_to_goal for i in inputs]
    noisy = [wrap("Evaluator", "noisy_value", 2.0)(i).output.steps_to_goal for i in inputs]
    away = [n - t for n, t in zip(noisy, truth, strict=True) if t >= 6]  # three sigma from the clip at 0
    assert 1.6 < statistics.pstdev(away) < 2.4 and abs(statistics.fmean(away)) < 0.4
    low, high = HANOI.evaluator_fallback(P7)
    for inp in [EvaluatorInput(state=s, goal=goal) for s in STATES]:
        value = wrap("Evaluator", "random_value", 1.0)(inp).output.steps_to_goal
        assert low <= value <= high and value != HANOI.distance(inp.state, goal, P7)


def test_an_impossible_subgoal_is_satisfied_by_no_state_and_a_random_one_is_reachable():
    inp = TaskDecomposerInput(state=HANOI.start(P7), goal=HANOI.goal(P7), n_subgoals=1)
    (impossible,) = wrap("TaskDecomposer", "impossible_subgoal", 1.0)(inp).output.subgoals
    assert not any(HANOI.satisfies(s, impossible, P7) for s in STATES)
    oracle = wrap("TaskDecomposer", "random_subgoal", 0.0)(inp).output.subgoals
    (drawn,) = wrap("TaskDecomposer", "random_subgoal", 1.0)(inp).output.subgoals
    assert drawn not in oracle and canonical(drawn) in {canonical(HANOI.as_goal(s)) for s in STATES}
    result = MAPAgent(P7, backend="oracle", config=MAPConfig(corrupt=[
        Corruption(module="TaskDecomposer", kind="impossible_subgoal", rate=1.0)])).plan()
    assert not result.solved  # the plan chases a goal no state satisfies


def test_cogeval_kinds_judge_moves_on_the_castle():
    start, goal = COGEVAL.start(VALUEPATH), COGEVAL.goal(VALUEPATH)
    inp = ActorInput(state=start, goal=goal, n_actions=2)
    for action in wrap("Actor", "repeated_wrong_move", 1.0, COGEVAL, VALUEPATH)(inp).output.actions:
        assert not COGEVAL.check(start, action, VALUEPATH).valid  # through a missing door, or nowhere
    here = COGEVAL.distance(start, goal, VALUEPATH)
    for action in wrap("Actor", "legal_detour", 1.0, COGEVAL, VALUEPATH)(inp).output.actions:
        assert COGEVAL.check(start, action, VALUEPATH).valid
        assert COGEVAL.distance(COGEVAL.apply(start, action, VALUEPATH), goal, VALUEPATH) >= here
    for action in COGEVAL.legal_actions(start, VALUEPATH):
        verdict = wrap("Monitor", "flipped", 1.0, COGEVAL, VALUEPATH)(MonitorInput(state=start, action=action))
        assert verdict.output.valid is False and verdict.output.feedback
    orchestrated = wrap("Orchestrator", "flipped", 1.0, COGEVAL, VALUEPATH)(OrchestratorInput(state=start, goal=goal))
    assert orchestrated.output.achieved is True


def test_kinds_that_do_not_apply_are_one_line_errors():
    with pytest.raises(ValueError, match="Monitor errors are flipped, not 'wrong_state'"):
        Corruption.parse("Monitor:wrong_state:0.1")
    with pytest.raises(ValueError, match="a share of calls"):
        Corruption.parse("Actor:fresh_wrong_move:2")
    with pytest.raises(ValueError, match="one error kind per module"):
        MAPConfig(corrupt=[Corruption(module="Actor", kind="legal_detour", rate=0.1),
                           Corruption(module="Actor", kind="fresh_wrong_move", rate=0.1)])
    with pytest.raises(ValueError, match="the Predictor is off on cogeval"):
        MAPAgent(VALUEPATH, backend="oracle", config=MAPConfig(corrupt=[
            Corruption(module="Predictor", kind="wrong_state", rate=0.1)]))
    with pytest.raises(ValueError, match="oracle modules only"):
        MAPConfig(corrupt=[Corruption(module="Actor", kind="legal_detour", rate=0.1)]).resolve(HANOI, P7)
    with pytest.raises(ValueError, match="cogeval has no goal that no reachable state satisfies"):
        wrap("TaskDecomposer", "impossible_subgoal", 0.5, COGEVAL, VALUEPATH)  # a goal is a room: every one is
    with pytest.raises(ValueError, match="expected MODULE:KIND:R1,R2"):
        Sweep.parse("Actor:legal_detour:0.1;0.2")


def test_measured_accuracy_counts_the_calls_answered_as_the_oracle_would(tmp_path):
    args = ["eval", "hanoi", "--split", "test3", "--backend", "oracle", "--limit", "3", "--runs", "2",
            "--out", str(tmp_path)]
    assert main([*args, "--run-id", "all", "--corrupt", "Orchestrator:flipped:1"]) == 0  # an ordinary eval run
    assert main([*args, "--run-id", "some", "--corrupt", "Monitor:flipped:0.3"]) == 0
    problems = {p.id: p for p in HANOI.problems("test3")}
    every = measured_accuracy(HANOI, problems, read_records(tmp_path / "all" / "records.jsonl"), "Orchestrator")
    assert every["calls"] and every["accuracy"] == 0
    summary = json.loads((tmp_path / "all" / "summary.json").read_text())
    assert summary["pct_solved"]["mean"] == 0
    # an oracle with injected errors is no ground truth: the diagnostics judge it, and name it
    assert summary["diagnostics"]["modules"]["Orchestrator"]["accuracy"] == 0
    assert summary["diagnostics"]["weakest"] == "Orchestrator"
    assert Run.load(tmp_path / "all").label == "map (Orchestrator:flipped:1)"  # as the report names the run
    some = measured_accuracy(HANOI, problems, read_records(tmp_path / "some" / "records.jsonl"), "Monitor")
    assert 0.5 < some["accuracy"] < 0.9
    assert measured_accuracy(HANOI, problems, read_records(tmp_path / "some" / "records.jsonl"),
                             "Predictor")["accuracy"] == 1


# -- the command -------------------------------------------------------------------------------------------------
def test_sensitivity_command_on_hanoi_writes_table_figure_and_resumes(tmp_path, capsys):
    argv = ["sensitivity", "hanoi", "--split", "test3", "--runs", "2", "--limit", "2", "--out", str(tmp_path),
            "--sweep", "Predictor:wrong_state:0,0.5", "--sweep", "Orchestrator:flipped:1"]
    assert main(argv) == 0
    shown = capsys.readouterr().out
    assert "| Orchestrator flipped | 1 |" in shown and "sensitivity.png" in shown
    folder = tmp_path / "hanoi-test3-runs2-first2"
    data = json.loads((folder / "sensitivity.json").read_text())
    predictor, orchestrator = data["sweeps"]
    zero, half = predictor["points"]
    assert (zero["accuracy"], zero["pct_solved"]["mean"], zero["runs"], zero["problems"]) == (1, 100, 2, 2)
    assert 0 < half["accuracy"] < 1
    assert orchestrator["points"][0]["run_id"] == zero["run_id"]  # rate 0 is one run, shared by every sweep
    assert (orchestrator["points"][1]["accuracy"], orchestrator["points"][1]["pct_solved"]["mean"]) == (0, 0)
    for name in ("sensitivity.md", "sensitivity.png", "sensitivity.svg", "report.html", f"{folder.name}.yaml"):
        assert (folder / name).exists(), name
    records = {p.name: len(read_records(p / "records.jsonl")) for p in (folder / "runs").iterdir()}
    assert sorted(records.values()) == [4, 4, 4]
    assert main(argv) == 0  # finished cells are resumed, not rerun
    assert records == {p.name: len(read_records(p / "records.jsonl")) for p in (folder / "runs").iterdir()}
    plain = tmp_path / "plain"
    assert main(["eval", "hanoi", "--split", "test3", "--runs", "2", "--limit", "2", "--backend", "oracle",
                 "--out", str(tmp_path), "--run-id", "plain"]) == 0
    baseline = folder / "runs" / zero["run_id"]
    key = lambda r: (r["problem_id"], r["run"])  # noqa: E731
    for ours, oracle in zip(sorted(read_records(baseline / "records.jsonl"), key=key),
                            sorted(read_records(plain / "records.jsonl"), key=key), strict=True):
        assert (ours["plan"], ours["calls"]) == (oracle["plan"], oracle["calls"])  # rate 0: the oracle's run


def test_sensitivity_command_on_cogeval_with_an_error_profile(tmp_path, capsys):
    argv = ["sensitivity", "cogeval", "--split", "valuepath", "--runs", "1", "--limit", "3", "--out", str(tmp_path),
            "--run-id", "castle", "--sweep", "Actor:repeated_wrong_move:1", "--corrupt", "Monitor:flipped:0.2"]
    assert main(argv) == 0
    data = json.loads((tmp_path / "castle" / "sensitivity.json").read_text())
    (actor,) = data["sweeps"]
    zero, every = actor["points"]
    assert every["accuracy"] == 0 and every["pct_solved"]["mean"] < zero["pct_solved"]["mean"]
    assert 0 < zero["profile"]["Monitor"]["accuracy"] < 1  # the profile runs under every point
    assert "profile modules' measured accuracy" in (tmp_path / "castle" / "sensitivity.md").read_text()


@pytest.mark.parametrize("argv, message", [
    (["--sweep", "Predictor:wrong_state:0.1"], "the Predictor is off on cogeval"),
    (["--sweep", "Evaluator:flipped:0.1"], "Evaluator errors are noisy_value, random_value, not 'flipped'"),
    ([], "nothing to measure"),
])
def test_sensitivity_usage_errors_are_one_line(argv, message, tmp_path, capsys):
    assert main(["sensitivity", "cogeval", "--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not any(tmp_path.iterdir())  # nothing ran
