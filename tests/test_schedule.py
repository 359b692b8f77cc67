"""The schedule of module calls: which supersteps the calls land in may change, the calls and the plans may not.

The default asks exactly the original's calls (recorded below from the code before the schedule changed); the two
named options ask some calls ahead of the verdict they hang on -- the same plans, and every call asked for nothing
is counted as unused.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from map_agent import MAPAgent, MAPConfig, cli
from map_agent.modules import OracleChatModel
from map_agent.tasks.hanoi import HanoiTask

HANOI = HanoiTask()

#: per test3 problem, all-oracle MAP with the original's protocol, as the code before this schedule planned it (one
#: controller pass per superstep, the final-goal check alone in its superstep): a digest of the plan and of the
#: sorted (module, input) of every call, and the number of calls
RECORDED = {
    "1": ("e01c504363d4", 85), "2": ("6718548e3078", 84), "4": ("e087181e72b1", 84), "5": ("b15cf4ba0922", 46),
    "6": ("bc42f892b625", 46), "7": ("695174bb8fc1", 59), "8": ("5a368c4abc03", 59), "9": ("d4ef37458e5a", 75),
    "10": ("76b5c244f384", 11), "11": ("93426f3b756e", 35), "12": ("42d19d4c28ee", 84), "13": ("d29d17a66f86", 75),
    "14": ("4631645a1314", 36), "15": ("2533214e40be", 75), "16": ("a53cacdeb457", 11), "17": ("091a792ae78d", 35),
    "18": ("9c3b830d34d4", 84), "19": ("39267d0d36ac", 75), "20": ("82647404b8e9", 36), "21": ("0ae34843dae9", 60),
    "23": ("8d333b8d1730", 84), "24": ("2480a9788b40", 22), "25": ("49fcfa8f8756", 84), "26": ("26fe41bd5e2e", 22),
}


def fingerprint(result) -> tuple[str, int]:
    calls = sorted(json.dumps([c["module"], c["input"]], sort_keys=True) for c in result.calls)
    plan = [a.model_dump(mode="json") for a in result.actions]
    return hashlib.sha256(json.dumps({"plan": plan, "calls": calls}, sort_keys=True).encode()).hexdigest()[:12], \
        len(calls)


def supersteps(agent: MAPAgent, **kwargs) -> list[list[dict]]:
    """The jobs of every module superstep, as the controller sent them out."""
    return [update["pending"] for node, update in agent.stream(**kwargs) if node == "MAP" and update.get("pending")]


def test_the_default_asks_the_original_calls_and_plans_the_original_plans():
    fingerprints = {p.id: fingerprint(MAPAgent(p, backend="oracle").plan()) for p in HANOI.problems("test3")}
    assert fingerprints == RECORDED


def test_the_start_s_final_goal_check_shares_the_task_decomposer_s_superstep():
    """It is asked first whatever the subgoals are (without any, it is the pursued goal's check): no superstep of
    its own. The subgoal's check, which waits for both answers, comes in the next."""
    problem = HANOI.problem(7)
    first, second, *_ = supersteps(MAPAgent(problem, backend="oracle"))
    final = problem.goal
    assert sorted(j["module"] for j in first) == ["Orchestrator", "TaskDecomposer"]
    assert next(j for j in first if j["module"] == "Orchestrator")["input"]["goal"] == final
    assert [j["module"] for j in second] == ["Orchestrator"] and second[0]["input"]["goal"] != final


def test_one_call_at_a_time_asks_the_same_calls():
    problem = HANOI.problem(7)
    fanned, one_by_one = (MAPAgent(problem, llm=OracleChatModel(), cache=False).plan(max_concurrency=n)
                          for n in (None, 1))
    assert fingerprint(fanned) == fingerprint(one_by_one) == RECORDED["7"]


class IllegalFirst(OracleChatModel):
    """The ground truth, except that the first round of every Actor call leads with a move the Monitor rejects
    (the top number moved onto its own list): each rejection is one Predictor call asked for nothing under
    ``speculative_predict``."""

    @property
    def _llm_type(self) -> str:
        return "illegal-first-oracle-chat"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        result = super()._generate(messages, stop, run_manager, **kwargs)
        meta = run_manager.metadata
        if meta["map_agent_module"] == "Actor" and meta["map_agent_input"]["sample"] == 0:
            message = result.generations[0].message
            reply = json.loads(message.content)
            legal = reply["actions"][0]
            reply["actions"] = [{**legal, "target": legal["source"]}, legal]
            message.content = json.dumps(reply)
        return result


@pytest.mark.parametrize("llm", [OracleChatModel, IllegalFirst])
def test_speculative_predict_plans_the_same_and_counts_its_unused_predictions(llm):
    problem = HANOI.problem(7)
    default = MAPAgent(problem, llm=llm(), cache=False)
    ahead = MAPAgent(problem, llm=llm(), cache=False, config=MAPConfig(speculative_predict=True))
    steps_default, steps_ahead = len(supersteps(default, thread_id="t")), len(supersteps(ahead, thread_id="t"))
    plain, speculative = default.result("t"), ahead.result("t")
    assert speculative.actions == plain.actions and speculative.solved
    assert steps_ahead < steps_default  # the Predictor no longer waits a superstep for the Monitor
    rejected = {json.dumps(c["input"], sort_keys=True) for c in plain.calls
                if c["module"] == "Monitor" and not c["output"]["valid"]}
    predicted = {json.dumps(c["input"], sort_keys=True) for c in speculative.calls if c["module"] == "Predictor"}
    extra = speculative.usage.modules["Predictor"].calls - plain.usage.modules["Predictor"].calls
    assert extra == len(rejected) == speculative.usage.total.unused == speculative.usage.modules["Predictor"].unused
    assert rejected <= predicted and plain.usage.total.unused == 0
    assert (extra > 0) == (llm is IllegalFirst)
    assert speculative.config.deviations == {"speculative_predict": True}


def test_an_evaluation_summary_counts_the_unused_calls(tmp_path):
    from map_agent.eval.records import read_records
    from map_agent.eval.runner import Evaluation, RunSpec

    spec = RunSpec(task="hanoi", split="test3", runs=1, backend="scripted", model=None,
                   config=MAPConfig(speculative_predict=True), problem_ids=["7"])
    summary = Evaluation(spec, tmp_path, "run", llm=IllegalFirst(), cache=False).run()
    (record,) = read_records(tmp_path / "run" / "records.jsonl")
    unused = summary["usage"]["unused_calls"]
    assert unused == record["usage"]["total"]["unused"] == summary["usage"]["modules"]["Predictor"]["unused"] > 0
    assert summary["deviations"] == {"speculative_predict": True}


@pytest.mark.parametrize("concurrency", [1, 3])
def test_problems_in_threads_hand_the_gil_on_within_a_millisecond_and_leave_the_setting_as_it_was(tmp_path,
                                                                                                  concurrency):
    import sys

    from map_agent.eval.runner import SWITCH_INTERVAL, Evaluation, RunSpec

    seen = []

    class Watching(OracleChatModel):
        def _generate(self, *args, **kwargs):
            seen.append(sys.getswitchinterval())
            return super()._generate(*args, **kwargs)

    spec = RunSpec(task="hanoi", split="test3", runs=1, backend="scripted", model=None, config=MAPConfig(),
                   problem_ids=["1", "2", "7"])
    before = sys.getswitchinterval()
    summary = Evaluation(spec, tmp_path, "run", llm=Watching(), cache=False, concurrency=concurrency).run()
    assert summary["records"] == 3 and seen and sys.getswitchinterval() == before
    assert set(seen) == ({SWITCH_INTERVAL} if concurrency > 1 else {before})


def test_speculative_orchestrator_asks_the_checks_after_a_not_yet_beside_it():
    problem = HANOI.problem(7)
    default = MAPAgent(problem, backend="oracle")
    ahead = MAPAgent(problem, backend="oracle", config=MAPConfig(speculative_orchestrator=True))
    steps_default, steps_ahead = supersteps(default, thread_id="t"), supersteps(ahead, thread_id="t")
    assert fingerprint(ahead.result("t")) == RECORDED["7"] and ahead.result("t").usage.total.unused == 0
    assert len(steps_ahead) < len(steps_default)
    final = problem.goal
    assert any({j["input"]["goal"] == final for j in step if j["module"] == "Orchestrator"} == {True, False}
               for step in steps_ahead)


def test_checks_asked_ahead_of_a_declared_goal_are_counted_unused():
    """An Orchestrator that declares the final goal reached at the first state after the start: the original stops
    there; asked ahead, the checks of the subgoal's children beside it were asked for nothing."""
    problem = HANOI.problem(7)
    start = problem.start

    class EarlyGoal(OracleChatModel):
        @property
        def _llm_type(self) -> str:
            return "early-goal-oracle-chat"

        def _generate(self, messages, stop=None, run_manager=None, **kwargs):
            result = super()._generate(messages, stop, run_manager, **kwargs)
            meta = run_manager.metadata
            asked = meta["map_agent_input"]
            if meta["map_agent_module"] == "Orchestrator" and asked["goal"] == problem.goal:
                result.generations[0].message.content = json.dumps({"achieved": asked["state"] != start})
            return result

    plain = MAPAgent(problem, llm=EarlyGoal(), cache=False).plan()
    ahead = MAPAgent(problem, llm=EarlyGoal(), cache=False, config=MAPConfig(speculative_orchestrator=True)).plan()
    assert ahead.actions == plain.actions and ahead.status == plain.status == "goal" and len(plain.actions) == 1
    extra = ahead.usage.total.calls - plain.usage.total.calls
    assert extra > 0 and ahead.usage.modules["Orchestrator"].unused == ahead.usage.total.unused == extra
    assert plain.usage.total.unused == 0


def test_the_options_go_through_the_command_line(capsys):
    assert cli.main(["plan", "hanoi", "--problem", "7", "--backend", "oracle", "--speculative-predict",
                     "--speculative-orchestrator", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["config"]["deviations"] == {"speculative_predict": True, "speculative_orchestrator": True}
    assert record["solved"] and record["usage"]["total"]["unused"] == 0
    assert "--speculative-predict" in cli.subcommand_parser("eval").format_help()
