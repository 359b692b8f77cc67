"""The original MAP code's protocol (toh/gpt4_map_toh.py) on one Hanoi problem, driven by a scripted chat model
through each of the original's fallback paths, and the named deviations that replace them."""

import json
import math

import pytest

from helpers import ScriptedChatModel
from map_agent import MAPAgent
from map_agent.config import DEVIATIONS, MAPConfig
from map_agent.modules import ORACLES
from map_agent.modules.base import make_input
from map_agent.tasks import hanoi

TASK = hanoi.HanoiTask()
PROBLEM = hanoi.problem(7)  # A=[0, 2], B=[1], C=[]: three disks, the Evaluator's fallback range is 1..7
COVERED = {"disk": 0, "source": "A", "target": "C"}  # illegal: 0 lies under 2
ONTO_SMALLER = {"disk": 1, "source": "B", "target": "A"}  # illegal: 1 onto 2


def oracle(module, raw):
    """The ground truth's reply in the module's JSON format."""
    return ORACLES[module](TASK, PROBLEM).compute(make_input(module, TASK, raw)).model_dump_json()


def script(actor=None, monitor=None, evaluator=None):
    def answer(module, raw):
        override = {"Actor": actor, "Monitor": monitor, "Evaluator": evaluator}.get(module)
        return override(raw) if override else oracle(module, raw)
    return answer


def run(answer, **config):
    config = MAPConfig(**{"modules": {"TaskDecomposer": "off"}, "max_actions": 1, "monitor_retries": 1,
                          "parse_retries": 1, **config})
    return MAPAgent(PROBLEM, llm=ScriptedChatModel(script=answer), config=config, cache=False).plan()


def reject(raw):
    return json.dumps({"reasoning": "it breaks a rule", "valid": False, "feedback": "rule broken"})


def illegal_pair(raw):
    return json.dumps({"actions": [COVERED, ONTO_SMALLER]})


def test_when_every_proposal_is_rejected_the_last_one_is_executed():
    result = run(script(actor=illegal_pair, monitor=reject))
    assert result.actions[0].model_dump() in (COVERED, ONTO_SMALLER)
    assert result.invalid_moves == 1 and not result.solved and result.status == "budget"
    # every round's rejections went back to the Actor
    actor_calls = [c for c in result.calls if c["module"] == "Actor"]
    assert len(actor_calls) >= 2 and any("rule broken" in f for f in actor_calls[1]["input"]["feedback"])


def test_stop_when_stuck_is_the_named_deviation():
    result = run(script(actor=illegal_pair, monitor=reject), on_all_rejected="stop")
    assert result.actions == [] and result.status == "stuck" and result.invalid_moves == 0
    assert result.config.deviations == {"on_all_rejected": "stop"}


def test_an_unparseable_evaluator_reply_is_a_seeded_random_value_in_the_originals_range():
    garbage = script(evaluator=lambda raw: "about five, I think")
    first, again = run(garbage), run(garbage)
    assert TASK.evaluator_fallback(PROBLEM) == (1, 7)  # 2**3 - 1, as the original
    leaves = [b.value for b in first.steps[0].choice.branches]
    assert all(3 <= v <= 9 and v == int(v) for v in leaves)  # depth 2 (L = 2) + a draw from 1..7
    assert leaves == [b.value for b in again.steps[0].choice.branches]  # the run's seed fixes the draw
    other_runs = {tuple(b.value for b in run(garbage, seed=s).steps[0].choice.branches) for s in range(1, 6)}
    assert len(other_runs | {tuple(leaves)}) > 1  # another run index draws other values
    unreachable = run(garbage, evaluator_fallback="unreachable")
    assert all(math.isinf(b.value) for b in unreachable.steps[0].choice.branches)


def test_ties_are_broken_at_random_by_the_runs_seed_or_first_as_the_deviation():
    flat = script(evaluator=lambda raw: json.dumps({"reasoning": "all alike", "steps_to_goal": 3}))
    chosen = {s: run(flat, seed=s).actions[0].model_dump()["target"] for s in range(8)}
    assert len(set(chosen.values())) == 2  # both equally valued branches get picked across runs
    assert run(flat, seed=3).actions[0].model_dump()["target"] == chosen[3]  # and the same run picks the same
    firsts = {run(flat, seed=s, tie_break="first").actions[0].model_dump()["target"] for s in range(4)}
    assert len(firsts) == 1


def test_one_valid_action_is_searched_in_both_branches():
    one_legal = script(actor=lambda raw: json.dumps({"actions": [COVERED, {"disk": 2, "source": "A",
                                                                            "target": "B"}]}))
    result = run(one_legal, search=False, monitor_retries=0)
    assert result.actions[0].model_dump() == {"disk": 2, "source": "A", "target": "B"}
    both = run(one_legal, monitor_retries=0)
    assert [b.action for b in both.steps[0].choice.branches] == [{"disk": 2, "source": "A", "target": "B"}] * 2


def test_defaults_are_the_originals_and_every_deviation_is_named():
    config = MAPConfig()
    assert (config.monitor_retries, config.parse_retries) == (9, 9)  # 10 rounds of 10 attempts
    assert (config.actor_temperature, config.top_p, config.retry_temperature_step) == (0.0, 0.0, 0.1)
    assert config.deviations() == {}
    for field, (original, ours, why) in DEVIATIONS.items():
        assert getattr(config, field) == original and why
        assert MAPConfig(**{field: ours}).deviations() == {field: ours}


@pytest.mark.parametrize("split, runs", [("test3", 5), ("test4", 1)])
def test_default_runs_follow_the_paper(split, runs):
    assert TASK.default_runs(split) == runs


def test_a_tasks_own_original_settings_apply_unless_the_user_sets_them():
    from map_agent.task import get_task

    sqa = get_task("strategyqa")
    problem = sqa.problems("dev100")[0]
    resolved = MAPConfig().resolve(sqa, problem)
    # strategyQA/map_strategyqa.py: 5 Actor/Monitor tries, a fresh Actor conversation per sub-question
    assert (resolved.monitor_retries, resolved.actor_history, resolved.deviations) == (4, False, {})
    chosen = MAPConfig(monitor_retries=9, actor_history=True).resolve(sqa, problem)
    assert (chosen.monitor_retries, chosen.deviations) == (9, {"actor_history": True})
    assert MAPConfig().resolve(TASK, PROBLEM).monitor_retries == 9  # Hanoi: toh/gpt4_map_toh.py's 10 rounds
