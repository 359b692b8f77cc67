"""Module diagnostics: each logged module call judged against the task's ground truth."""

from __future__ import annotations

import json

import pytest
from langchain_core.outputs import ChatResult

from map_agent.config import MAPConfig
from map_agent.eval.diagnostics import aggregate, diagnose_record
from map_agent.eval.runner import Evaluation, RunSpec
from map_agent.modules import OracleChatModel
from map_agent.task import get_task

HANOI = get_task("hanoi")
PROBLEM = HANOI.problem("7")  # A = [0, 2], B = [1], C = []  ->  C = [0, 1, 2]; optimal 5 moves
START = PROBLEM.start
GOAL = PROBLEM.goal


def move(disk, source, target):
    return {"disk": disk, "source": source, "target": target}


def call(module, inp, out, failed=False):
    return {"module": module, "input": inp, "output": out, "failed": failed}


def diag(*calls, config=None):
    return diagnose_record(HANOI, PROBLEM, {"calls": list(calls), **({"config": config} if config else {})})


def test_monitor_precision_recall_against_the_environment():
    valid, invalid = move(2, "A", "C"), move(0, "A", "C")  # 0 lies under 2: invalid
    d = diag(call("Monitor", {"state": START, "action": invalid}, {"valid": False}),  # tp
             call("Monitor", {"state": START, "action": invalid}, {"valid": True}),  # fn
             call("Monitor", {"state": START, "action": valid}, {"valid": False}),  # fp
             call("Monitor", {"state": START, "action": valid}, {"valid": True}),  # tn
             call("Monitor", {"state": START, "action": valid}, None, failed=True))
    m = d["Monitor"]
    assert m["counts"] == {"tp": 1, "fn": 1, "fp": 1, "tn": 1}
    assert m["metrics"]["precision"] == 0.5 and m["metrics"]["recall"] == 0.5 and m["metrics"]["accuracy"] == 0.5
    assert m["calls"] == 5 and m["failed"] == 1


def test_actor_valid_and_optimal_proposals():
    # from the start only 2 A->B is on a shortest path (4 moves left after it); 2 A->C and 1 B->C are legal detours
    d = diag(call("Actor", {"state": START, "goal": GOAL, "n_actions": 2},
                  {"actions": [move(2, "A", "B"), move(1, "B", "C")]}),
             call("Actor", {"state": START, "goal": GOAL, "n_actions": 2},
                  {"actions": [move(0, "A", "C"), move(2, "A", "C")]}))
    m = d["Actor"]["metrics"]
    assert m["proposals"] == 4
    assert m["valid"] == 0.75
    assert m["optimal"] == 0.25
    assert m["any_optimal"] == 0.5


def test_predictor_exact_state_accuracy_and_invalid_actions_unscored():
    right = {"A": [0], "B": [1], "C": [2]}
    d = diag(call("Predictor", {"state": START, "action": move(2, "A", "C")}, {"next_state": right}),
             call("Predictor", {"state": START, "action": move(2, "A", "C")}, {"next_state": START}),
             call("Predictor", {"state": START, "action": move(0, "A", "C")}, {"next_state": right}))
    m = d["Predictor"]
    assert m["metrics"]["accuracy"] == 0.5
    assert m["unscorable"] == 1


def test_evaluator_error_and_rank_correlation():
    one_left = {"A": [], "B": [2], "C": [0, 1]}  # one move (2 B->C) left
    states = [START, GOAL, one_left]
    truth = [HANOI.distance(HANOI.State.model_validate(s), HANOI.Goal.model_validate(GOAL), PROBLEM) for s in states]
    good = diag(*[call("Evaluator", {"state": s, "goal": GOAL}, {"steps_to_goal": int(t) + 1})
                  for s, t in zip(states, truth, strict=True)])["Evaluator"]["metrics"]
    assert good["mean_abs_error"] == 1.0 and good["spearman"] == pytest.approx(1.0) and good["exact"] == 0.0
    reversed_ = diag(*[call("Evaluator", {"state": s, "goal": GOAL}, {"steps_to_goal": 10 - int(t)})
                       for s, t in zip(states, truth, strict=True)])["Evaluator"]["metrics"]
    assert reversed_["spearman"] == pytest.approx(-1.0)


def test_orchestrator_and_task_decomposer():
    on_path = {"A": [0], "B": [1, 2], "C": []}  # after the optimal first move
    off_path = {"A": [0], "B": [1], "C": [2]}  # one legal move away, but not on a shortest path
    d = diag(call("Orchestrator", {"state": GOAL, "goal": GOAL}, {"achieved": True}),
             call("Orchestrator", {"state": START, "goal": GOAL}, {"achieved": True}),
             call("TaskDecomposer", {"state": START, "goal": GOAL, "n_subgoals": 2},
                  {"reasoning": "", "subgoals": [on_path, off_path]}))
    assert d["Orchestrator"]["metrics"]["accuracy"] == 0.5
    assert d["TaskDecomposer"]["metrics"]["on_optimal_path"] == 0.5


def test_oracle_modules_are_skipped_and_aggregation_names_the_weakest():
    bad_monitor = call("Monitor", {"state": START, "action": move(2, "A", "C")}, {"valid": False})
    good_orch = call("Orchestrator", {"state": GOAL, "goal": GOAL}, {"achieved": True})
    assert diag(bad_monitor, config={"modules": {"Monitor": "oracle"}}) == {}
    records = [{"diagnostics": diag(bad_monitor, good_orch)}, {"diagnostics": diag(good_orch)}]
    summary = aggregate(records)
    assert summary["modules"]["Orchestrator"]["calls"] == 2
    assert summary["scores"] == {"Monitor": 0.0, "Orchestrator": 1.0}
    assert summary["weakest"] == "Monitor"
    assert aggregate([{"diagnostics": diag(good_orch)}])["weakest"] is None


class InvertedMonitor(OracleChatModel):
    """Answers every module perfectly except the Monitor, whose verdict it flips."""

    @property
    def _llm_type(self) -> str:  # its own prompt-cache entries: never the perfect model's answers
        return "inverted-monitor-oracle-chat"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        result = super()._generate(messages, stop, run_manager, **kwargs)
        if run_manager.metadata["map_agent_module"] == "Monitor":
            message = result.generations[0].message
            reply = json.loads(message.content)
            reply["valid"] = not reply["valid"]
            message.content = json.dumps(reply)
        return result


def evaluate(tmp_path, llm, config: MAPConfig | None = None):
    ids = [p.id for p in HANOI.problems("test3")[:2]]
    spec = RunSpec(task="hanoi", split="test3", runs=1, backend="scripted", model=None, config=config or MAPConfig(),
                   problem_ids=ids)
    return Evaluation(spec, tmp_path, "run", llm=llm, cache=False).run()


def test_a_perfect_scripted_model_has_perfect_diagnostics(tmp_path):
    summary = evaluate(tmp_path, OracleChatModel())
    d = summary["diagnostics"]
    assert set(d["scores"]) == {"TaskDecomposer", "Actor", "Monitor", "Predictor", "Evaluator", "Orchestrator"}
    assert all(v == 1.0 for v in d["scores"].values()), d["scores"]
    assert d["modules"]["Evaluator"]["spearman"] == pytest.approx(1.0)
    assert d["modules"]["Actor"]["any_optimal"] == 1.0
    assert d["weakest"] is None
    record = json.loads((tmp_path / "run" / "records.jsonl").read_text().splitlines()[0])
    assert record["diagnostics"]["Monitor"]["metrics"]["accuracy"] == 1.0


def test_a_bad_monitor_shows_as_the_failing_module(tmp_path):
    config = MAPConfig(monitor_retries=1, search=False)
    summary = evaluate(tmp_path, InvertedMonitor(), config)
    d = summary["diagnostics"]
    assert d["weakest"] == "Monitor"
    assert d["modules"]["Monitor"]["accuracy"] == 0.0
    assert d["scores"]["Predictor"] == 1.0 and d["scores"]["Actor"] == 1.0
