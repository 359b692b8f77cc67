"""Each MAP module as a plain typed callable, driven by scripted chat models (no graph)."""

import json

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from helpers import RecordingChatModel
from map_agent.modules import LLM_MODULES, ORACLES
from map_agent.modules.base import make_input
from map_agent.modules.schemas import ActorInput, MonitorInput
from map_agent.tasks import hanoi
from map_agent.tasks.hanoi import HanoiMove, HanoiState

TASK = hanoi.HanoiTask()
PROBLEM = hanoi.problem(7)
START = TASK.start(PROBLEM)
GOAL = TASK.goal(PROBLEM)
MOVE = {"disk": 2, "source": "A", "target": "B"}

INPUTS = {
    "TaskDecomposer": {"state": PROBLEM.start, "goal": PROBLEM.goal, "n_subgoals": 1},
    "Actor": {"state": PROBLEM.start, "goal": PROBLEM.goal, "n_actions": 2},
    "Monitor": {"state": PROBLEM.start, "action": MOVE},
    "Predictor": {"state": PROBLEM.start, "action": MOVE},
    "Evaluator": {"state": PROBLEM.start, "goal": PROBLEM.goal},
    "Orchestrator": {"state": PROBLEM.start, "goal": PROBLEM.goal},
}
REPLIES = {
    "TaskDecomposer": '{"reasoning": "0 first", "subgoals": [{"A": [], "B": [1, 2], "C": [0]}]}',
    "Actor": '{"actions": [{"disk": 2, "source": "A", "target": "B"}, {"disk": 1, "source": "B", "target": "C"}]}',
    "Monitor": '{"reasoning": "2 is on top of A and B holds only 1.", "valid": true, "feedback": ""}',
    "Predictor": '{"next_state": {"A": [0], "B": [1, 2], "C": []}}',
    "Evaluator": '{"reasoning": "2 needs 1 move, 1 and 0 need 4.", "steps_to_goal": 5}',
    "Orchestrator": '{"achieved": false}',
}


def module(name, llm, **kw):
    return LLM_MODULES[name](TASK, PROBLEM, llm, **kw)


@pytest.mark.parametrize("name", list(LLM_MODULES))
def test_a_well_formed_reply_parses_into_the_output_model(name):
    result = module(name, FakeListChatModel(responses=[REPLIES[name]]))(make_input(name, TASK, INPUTS[name]))
    assert result.ok and result.record.model_calls == 1
    assert result.output.model_dump(mode="json") == json.loads(REPLIES[name])


@pytest.mark.parametrize("name", list(LLM_MODULES))
def test_prompt_has_task_role_examples_schema_and_the_input(name):
    llm = RecordingChatModel(responses=[REPLIES[name]])
    llm.requests = []
    module(name, llm)(make_input(name, TASK, INPUTS[name]))
    messages = llm.requests[0]["messages"]
    system = messages[0].content
    assert "Rule 1" in system and name in system and '"properties"' in system
    shots = json.loads((TASK.prompt_dir(PROBLEM) / f"{LLM_MODULES[name].stem}.examples.json").read_text())
    assert len(messages) == 1 + 2 * len(shots) + 1  # system, the in-context examples, the input
    assert "A = [0, 2], B = [1], C = []" in messages[-1].content


def test_malformed_reply_is_fed_back_then_parsed():
    llm = RecordingChatModel(responses=["I would move the 2.", '{"actions": [{"disk": 9, "source": "A"}]}',
                                        REPLIES["Actor"]])
    llm.requests = []
    result = module("Actor", llm)(make_input("Actor", TASK, INPUTS["Actor"]))
    assert result.ok and result.record.model_calls == 3
    second, third = llm.requests[1]["messages"], llm.requests[2]["messages"]
    assert "no JSON object" in second[-1].content and second[-2].content == "I would move the 2."
    assert "actions.0.target" in third[-1].content  # pydantic's error names the field


def test_reply_that_never_parses_is_a_recorded_failure_not_an_exception():
    llm = FakeListChatModel(responses=["nope"] * 5)
    result = module("Monitor", llm, parse_retries=2)(make_input("Monitor", TASK, INPUTS["Monitor"]))
    assert not result.ok and result.output is None
    assert result.record.failed and result.record.model_calls == 3 and "no JSON object" in result.record.error


class Flaky(FakeListChatModel):
    failures: list = []

    def _call(self, *args, **kwargs):
        if self.failures:
            raise self.failures.pop(0)
        return super()._call(*args, **kwargs)


class APIConnectionError(Exception):
    """Named like openai's: the module runner retries it as transient."""


def test_transient_network_errors_are_retried_with_backoff(monkeypatch):
    monkeypatch.setattr("tenacity.nap.time.sleep", lambda s: None)
    llm = Flaky(responses=[REPLIES["Evaluator"]], failures=[APIConnectionError("reset"), APIConnectionError("again")])
    result = module("Evaluator", llm)(make_input("Evaluator", TASK, INPUTS["Evaluator"]))
    assert result.ok and result.output.steps_to_goal == 5


def test_exhausted_or_permanent_errors_become_failed_records(monkeypatch):
    monkeypatch.setattr("tenacity.nap.time.sleep", lambda s: None)
    llm = Flaky(responses=[REPLIES["Evaluator"]], failures=[APIConnectionError("down")] * 4)
    result = module("Evaluator", llm)(make_input("Evaluator", TASK, INPUTS["Evaluator"]))
    assert result.record.failed and "APIConnectionError" in result.record.error
    permanent = Flaky(responses=[REPLIES["Evaluator"]], failures=[PermissionError("401")])
    result = module("Evaluator", permanent)(make_input("Evaluator", TASK, INPUTS["Evaluator"]))
    assert result.record.failed and "PermissionError" in result.record.error


def test_actor_seeds_each_round_and_warms_up_by_a_tenth_per_parse_retry():
    llm = RecordingChatModel(responses=[REPLIES["Actor"], "no move", "still none", REPLIES["Actor"]])
    llm.requests = []
    actor = module("Actor", llm)
    actor(ActorInput(state=START, goal=GOAL, n_actions=2, sample=0))
    actor(ActorInput(state=START, goal=GOAL, n_actions=2, sample=3, feedback=("x is invalid",),
                     history=("Move 2 from A to B. -> A = [0], B = [1, 2], C = []",)))
    assert [r["kwargs"]["seed"] for r in llm.requests] == [0, 3, 3, 3]
    assert [r["kwargs"]["temperature"] for r in llm.requests] == pytest.approx([0.0, 0.0, 0.1, 0.2])
    # the original's retries sample: top-p 0 on a first attempt, the server's default on a retry
    assert [r["kwargs"].get("top_p") for r in llm.requests] == [0.0, 0.0, None, None]
    prompt = llm.requests[1]["messages"][-1].content
    assert "Feedback on earlier proposals: x is invalid" in prompt
    assert "1. Move 2 from A to B. -> A = [0], B = [1, 2], C = []" in prompt


def test_other_modules_run_greedy_with_the_run_index_in_the_cache_key():
    llm = RecordingChatModel(responses=[REPLIES["Monitor"]] * 2)
    llm.requests = []
    module("Monitor", llm)(MonitorInput(state=START, action=HanoiMove(**MOVE)))
    module("Monitor", llm, seed=4)(MonitorInput(state=START, action=HanoiMove(**MOVE)))
    assert [r["kwargs"] for r in llm.requests] == [{"temperature": 0.0, "top_p": 0.0, "seed": 0},
                                                   {"temperature": 0.0, "top_p": 0.0, "seed": 4}]


def test_verdict_only_outputs_drop_the_reasoning():
    llm = RecordingChatModel(responses=['{"valid": false, "feedback": "Rule 2"}'])
    llm.requests = []
    result = module("Monitor", llm, reasoning=False)(MonitorInput(state=START, action=HanoiMove(**MOVE)))
    assert result.ok and "reasoning" not in result.output.model_dump()
    assert '"reasoning"' not in llm.requests[0]["messages"][0].content
    with_reasoning = module("Monitor", FakeListChatModel(responses=["{}"]))
    schema = with_reasoning.output_model.model_json_schema()["properties"]
    assert list(schema)[:2] == ["reasoning", "valid"]  # it reasons before it answers


def test_oracles_give_the_ground_truth():
    o = {name: cls(TASK, PROBLEM) for name, cls in ORACLES.items()}
    inp = {name: make_input(name, TASK, raw) for name, raw in INPUTS.items()}
    covered = HanoiMove(disk=0, source="A", target="C")
    assert o["Monitor"](MonitorInput(state=START, action=covered)).output.valid is False
    assert o["Predictor"](inp["Predictor"]).output.next_state == HanoiState(A=[0], B=[1, 2], C=[])
    assert o["Evaluator"](inp["Evaluator"]).output.steps_to_goal == 5
    assert o["Orchestrator"](inp["Orchestrator"]).output.achieved is False
    actions = o["Actor"](inp["Actor"]).output.actions
    assert len(actions) == 2 and all(TASK.check(START, a, PROBLEM).valid for a in actions)
    assert TASK.distance(TASK.apply(START, actions[0], PROBLEM), GOAL, PROBLEM) == 4  # the optimal first move
    assert o["TaskDecomposer"](inp["TaskDecomposer"]).output.subgoals == [HanoiState(A=[], B=[1, 2], C=[0])]
    assert o["Actor"](inp["Actor"]).record.model_calls == 0


def test_bad_in_context_example_file_is_named(tmp_path, monkeypatch):
    folder = tmp_path / "hanoi"
    folder.mkdir()
    (folder / "monitor.md").write_text("role")
    (folder / "monitor.examples.json").write_text(json.dumps([{"input": {"state": PROBLEM.start}, "output": {}}]))
    monkeypatch.setattr(hanoi.HanoiTask, "prompt_dir", lambda self, problem=None: folder)
    with pytest.raises(ValueError, match=r"monitor.examples.json: example 0: .*action"):
        module("Monitor", FakeListChatModel(responses=["{}"]))
