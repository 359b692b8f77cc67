"""The learning loop: oracle-labelled module data (``map-agent distill``) and a tiny LoRA run (``map-agent
train``) whose adapter llama.cpp loads."""

from __future__ import annotations

import json

import pytest

from map_agent.cli import main
from map_agent.learned.distill import distill, visited_states
from map_agent.modules import LLM_MODULES, ORACLES
from map_agent.modules.base import make_input
from map_agent.task import get_task

HANOI = get_task("hanoi")


def test_distilled_examples_are_module_calls_answered_by_the_oracles(tmp_path):
    manifest = distill(HANOI, "all3", tmp_path, heldout="test4", limit=2, noisy=2)
    assert set(manifest.counts["train"]) == set(LLM_MODULES)
    assert manifest.counts["train"]["Monitor"] > manifest.counts["train"]["Predictor"]  # legal and illegal moves
    verdicts = []
    for line in (tmp_path / "train" / "Monitor.jsonl").read_text().splitlines():
        ex = json.loads(line)
        system, user, reply = ex["messages"]
        assert system["role"] == "system" and "Monitor" in system["content"] and len(system["content"]) < 400
        assert user["role"] == "user" and "Proposed action" in user["content"]
        verdicts.append(json.loads(reply["content"])["valid"])
    assert True in verdicts and False in verdicts
    ex = json.loads((tmp_path / "train" / "Evaluator.jsonl").read_text().splitlines()[0])
    problem = HANOI.problem(ex["problem"])
    state = HANOI.State.model_validate(json.loads(json.dumps(problem.start)))
    # the label is the ground truth for the input the message shows
    shown = ex["messages"][1]["content"]
    assert HANOI.render_state(state) in shown or "State:" in shown
    held = {json.loads(line)["problem"] for line in (tmp_path / "heldout" / "Actor.jsonl").read_text().splitlines()}
    trained = {json.loads(line)["problem"] for line in (tmp_path / "train" / "Actor.jsonl").read_text().splitlines()}
    assert held and trained and not held & trained  # the stated split: 4-disk problems never trained on
    assert json.loads((tmp_path / "manifest.json").read_text())["heldout_split"] == "test4"


def test_labels_equal_the_oracles_answer():
    import random

    from map_agent.learned.distill import examples

    problem = HANOI.problem(7)
    seen = set()
    for ex in examples(HANOI, problem, noisy=1):
        module, reply = ex["module"], json.loads(ex["messages"][-1]["content"])
        seen.add(module)
        inp = make_input(module, HANOI, ex["input"])
        if module == "Monitor":  # the check spelled out before the verdict, and the verdict it leads to
            assert reply["reasoning"] == HANOI.explain(inp.state, inp.action, problem)
            assert reply["valid"] == HANOI.check(inp.state, inp.action, problem).valid
            assert ("fails" in reply["reasoning"] or "not a move" in reply["reasoning"]) != reply["valid"]
        if module == "Actor":
            assert all(HANOI.check(inp.state, HANOI.Action.model_validate(a), problem).valid
                       for a in reply["actions"])
            for note in inp.feedback:  # a rejected proposal, told as the search tells it
                assert "is invalid:" in note and ("fails" in note or "not a move" in note)
    assert seen == set(LLM_MODULES)
    feedback = [ex for ex in examples(HANOI, problem, noisy=1) if ex["module"] == "Actor" and ex["input"]["feedback"]]
    assert feedback and "Feedback on earlier proposals" in feedback[0]["messages"][1]["content"]
    states = visited_states(HANOI, HANOI.problem(7), random.Random(0), noisy=3, epsilon=1.0)
    assert len(states) > HANOI.problem(7).optimal_length + 1  # noisy rollouts leave the optimal path
    inp = make_input("Evaluator", HANOI, {"state": states[-1].model_dump(), "goal": HANOI.problem(7).goal})
    assert ORACLES["Evaluator"](HANOI, HANOI.problem(7)).compute(inp).steps_to_goal == HANOI.distance(
        states[-1], HANOI.goal(HANOI.problem(7)), HANOI.problem(7))


def test_distill_cli_refuses_training_on_the_held_out_split(tmp_path, capsys):
    assert main(["distill", "hanoi", "--split", "all3", "--heldout", "all3", "--out", str(tmp_path)]) == 2
    assert "--heldout must differ" in capsys.readouterr().err
    assert main(["distill", "hanoi", "--split", "nosuch", "--out", str(tmp_path)]) == 2


@pytest.mark.slow
@pytest.mark.real_model
def test_tiny_training_run_exports_an_adapter_that_llama_cpp_applies(tmp_path, capsys):
    pytest.importorskip("torch", reason="the [train] extra is not installed")
    pytest.importorskip("peft", reason="the [train] extra is not installed")
    data, run = tmp_path / "data", tmp_path / "run"
    assert main(["distill", "hanoi", "--split", "all3", "--limit", "1", "--noisy", "1", "--out", str(data)]) == 0
    capsys.readouterr()
    args = ["train", str(data), "--out", str(run), "--steps", "2", "--batch-size", "2", "--save-every", "1",
            "--modules", "Monitor"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 2 and summary["first_loss"] > 0 and (run / "adapter.gguf").stat().st_size > 10**6
    assert main(args) == 0  # resuming a finished run trains no further
    assert json.loads(capsys.readouterr().out)["steps"] == 2
    from map_agent.config import MAPConfig
    from map_agent.llm import make_chat_model
    from map_agent.modules import build_modules
    from map_agent.modules.schemas import MonitorInput

    llm = make_chat_model("local", lora_path=str(run / "adapter.gguf"), threads=1, cache=False, max_tokens=48)
    problem = HANOI.problem(7)
    resolved = MAPConfig(prompts="ft").resolve(HANOI, problem)
    monitor = build_modules(HANOI, problem, resolved, llm)["Monitor"]
    result = monitor(MonitorInput(state=HANOI.start(problem), action=HANOI.legal_actions(HANOI.start(problem),
                                                                                             problem)[0]))
    assert result.ok and isinstance(result.output.valid, bool)  # the adapted model answers in the module format


def test_the_shipped_adapter_runs_under_the_settings_it_was_trained_with():
    from map_agent.config import MAPConfig
    from map_agent.learned.adapters import adapter_config, adapter_path, card

    assert adapter_path("map-hanoi").stat().st_size > 10**6
    info = card("map-hanoi")
    assert info["data"]["manifest"]["heldout_split"] == "test4" and info["training"]["result"]["steps"] > 0
    assert set(info["metrics"]["heldout_4disk"]) == set(LLM_MODULES)
    config = adapter_config("map-hanoi", MAPConfig())
    assert (config.prompts, config.actor_history, config.reasoning) == ("ft", False, True)
    assert adapter_config("map-hanoi", MAPConfig(actor_history=True)).actor_history is True  # the user's choice
    with pytest.raises(KeyError, match="known: map-hanoi"):
        adapter_path("nosuch")


@pytest.mark.real_model
def test_the_shipped_adapter_loads_offline_by_name_and_answers_in_format():
    from map_agent import MAPAgent
    from map_agent.config import MAPConfig

    problem = HANOI.problem(7)
    agent = MAPAgent(problem, backend="local", model="map-hanoi", threads=1, cache=False,
                     config=MAPConfig(max_actions=1, monitor_retries=0, parse_retries=1, search=False,
                                      modules={"TaskDecomposer": "off"}))
    assert agent.config.prompts == "ft" and agent.llm.lora_path.endswith("map-hanoi.gguf")
    result = agent.plan()
    assert len(result.actions) <= 1 and result.usage.total.model_calls > 0
    assert all(c["failed"] or c["output"] is not None for c in result.calls)
