"""The learning loop: oracle-labelled module data (``map-agent distill``) and a tiny LoRA run (``map-agent
train``) whose adapter llama.cpp loads."""

from __future__ import annotations

import json

import pytest

from map_agent.cli import main
from map_agent.learned.distill import distill, visited_states
from map_agent.modules import LLM_MODULES, ORACLES
from map_agent.modules.base import make_input
from map_agent.task import canonical, get_task

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
    assert json.loads((tmp_path / "manifest.json").read_text())["heldout_split"] == ["test4"]


def test_distill_covers_whole_worlds_once_and_never_the_held_out_size(tmp_path):
    from map_agent.learned.distill import example_states, heldout_leaks, reachable_states
    from map_agent.learned.train import distinct, read_examples

    manifest = distill(HANOI, ["world2", "all3"], tmp_path, heldout="test4", states="all", limit=2)
    assert manifest.sizes == {"train": [2, 3], "heldout": [4]} and manifest.states == "all"
    train, held = read_examples([str(tmp_path)], None), read_examples([str(tmp_path)], None, "heldout")
    assert len(distinct(train)) == len(train) and manifest.duplicates["train"] > 0  # each example once
    worlds = [s for p in (HANOI.problem("world2"), HANOI.problem(1)) for s in reachable_states(HANOI, p)]
    assert len(worlds) == 9 + 27
    moves = sum(len(HANOI.legal_actions(s, HANOI.problem(1))) for s in worlds)
    assert manifest.counts["train"]["Predictor"] == moves  # every state, every legal move
    assert manifest.counts["train"]["Monitor"] == 2 * moves  # as many illegal moves as legal ones
    assert manifest.counts["train"]["Evaluator"] == len(worlds)
    assert {len(json.loads(s)["A"] + json.loads(s)["B"] + json.loads(s)["C"]) for s in example_states(held)} == {4}
    assert example_states(held) >= {canonical(s) for s in reachable_states(HANOI, HANOI.problem(27))}
    assert not heldout_leaks(train, example_states(held))
    assert heldout_leaks(train + held[:1], example_states(held))


def test_every_shipped_adapter_that_reports_a_held_out_number_never_trained_on_a_held_out_state():
    """Its card's data are re-derived from the splits it names: every state reachable from a training problem
    (a superset of what distill wrote) against every state reachable from a held-out one."""
    from map_agent.learned.adapters import ADAPTERS, card
    from map_agent.learned.distill import Manifest, reachable_states

    checked = 0
    for name in ADAPTERS:
        info = card(name)
        if not any(k.startswith("heldout") for k in info["metrics"]):
            continue
        for raw in info["data"].get("manifests") or [info["data"]["manifest"]]:
            manifest = Manifest.model_validate(raw)
            task = get_task(manifest.task)
            states = {part: {canonical(s) for split in splits for p in task.problems(split)
                             for s in reachable_states(task, p)}
                      for part, splits in (("train", manifest.train_split), ("heldout", manifest.heldout_split))}
            assert states["train"] and states["heldout"] and not states["train"] & states["heldout"], name
            checked += 1
    assert checked


def test_train_refuses_a_held_out_number_when_the_split_leaks(tmp_path):
    import shutil

    from map_agent.learned.train import TrainConfig, load_data

    distill(HANOI, "world2", tmp_path, heldout="icl3", states="all")
    config = TrainConfig(data=[str(tmp_path)])
    _, _, info = load_data(config)
    assert info["split"]["train"]["sizes"] == [2] and info["split"]["leak_check"]["shared"] == 0
    shutil.copy(tmp_path / "train" / "Predictor.jsonl", tmp_path / "heldout" / "Predictor.jsonl")
    with pytest.raises(ValueError, match="held-out states appear in the training data"):
        load_data(config)
    assert load_data(config.model_copy(update={"heldout_per_module": 0}))[2]["split"]["leak_check"]["shared"] > 0


def test_epochs_take_each_modules_share_without_replacement():
    from map_agent.learned.train import epoch_order

    modules = {"Monitor": list(range(100)), "Predictor": list(range(100, 130)), "TaskDecomposer": [130, 131]}
    plain = epoch_order(modules, 0.0, 0, 0)
    assert sorted(plain) == list(range(132)) and plain != sorted(plain)  # every example once, shuffled
    balanced = [epoch_order(modules, 1.0, 0, e) for e in range(3)]
    share = [sum(i in modules["Monitor"] for i in order) for order in balanced]
    assert share == [44, 44, 44] and all(len(order) == 132 for order in balanced)
    draws = [[i for i in order if i < 100] for order in balanced]
    assert len(set(draws[0] + draws[1])) == 88  # no Monitor example twice before the pass over all 100 ends
    assert set(draws[0] + draws[1] + draws[2]) == set(range(100))
    assert sum(i >= 130 for i in balanced[0]) == 44  # two TaskDecomposer examples, 22 times each
    assert epoch_order(modules, 0.5, 0, 1) == epoch_order(modules, 0.5, 0, 1)  # a function of seed and epoch


def test_answer_span_finds_the_field_not_its_name_in_the_reasoning():
    from map_agent.learned.train import answer_span

    reply = '{"reasoning":"\\"next_state\\": A = [0]","next_state":{"A":[0],"B":[],"C":[1]}}'
    start, end = answer_span(reply, "next_state")
    assert json.loads(reply[start:end]) == {"A": [0], "B": [], "C": [1]}
    with pytest.raises(ValueError, match="no field 'valid'"):
        answer_span(reply, "valid")


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


@pytest.fixture(scope="module")
def tiny_base():
    """The embedded model's real tokenizer and a one-layer model of its vocabulary: the training loop's every
    part (weights, epochs, checkpoints, fit checks, card) in seconds; the real model is the smoke test below."""
    pytest.importorskip("torch", reason="the [train] extra is not installed")
    pytest.importorskip("peft", reason="the [train] extra is not installed")
    from transformers import AutoTokenizer, LlamaConfig

    from map_agent.llm.backends import embedded_model_path

    gguf = embedded_model_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    return LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                       num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True), tokenizer


@pytest.mark.slow
def test_the_loss_stresses_the_answer_field(tiny_base, tmp_path):
    from map_agent.learned.train import TrainConfig, encode, read_examples

    _, tokenizer = tiny_base
    distill(HANOI, "world2", tmp_path, states="all")
    example = next(ex for ex in read_examples([str(tmp_path)], ["Monitor"]) if '"valid":false' in
                   ex["messages"][-1]["content"])
    base = TrainConfig(data=[str(tmp_path)], answer_weight=4.0)
    weighted, answer, every = (encode(tokenizer, example, base.model_copy(update={"loss": loss}))
                               for loss in ("weighted", "answer", "all"))
    assert weighted.answer is False and weighted.ids == answer.ids == every.ids
    stressed = [i for i, w in zip(weighted.ids, weighted.weights, strict=True) if w == 4.0]
    assert tokenizer.decode(stressed).strip() == "false"  # the verdict, not the reasoning before it
    assert [i for i, w in zip(answer.ids, answer.weights, strict=True) if w] == stressed
    assert set(every.weights[every.prompt_tokens:]) == {1.0} and not any(every.weights[:every.prompt_tokens])
    assert sum(w == 1.0 for w in weighted.weights) == len(every.ids) - every.prompt_tokens - len(stressed)
    assert encode(tokenizer, example, base.model_copy(update={"max_tokens": 32})) is None


@pytest.mark.slow
def test_training_resumes_where_it_stopped_and_stops_when_it_fits(tiny_base, tmp_path, monkeypatch):
    import torch
    from transformers import LlamaForCausalLM

    from map_agent.learned import train as training

    config_hf, tokenizer = tiny_base
    monkeypatch.setattr(training, "load_base", lambda: (LlamaForCausalLM(config_hf), tokenizer))
    data = tmp_path / "data"
    distill(HANOI, "world2", data, heldout="icl3", states="all")
    config = training.TrainConfig(data=[str(data)], steps=2, batch_size=4, eval_every=1, eval_per_module=2,
                                  heldout_per_module=2, save_every=1, device="cpu", target=1.0)
    summary = training.train(config, tmp_path / "a", progress=False)
    assert (summary["steps"], summary["stopped"]) == (2, "steps") and summary["first_loss"] > 0
    card = json.loads((tmp_path / "a" / "card.json").read_text())
    assert card["split"]["train"] == {"splits": ["world2"], "sizes": [2]}
    assert card["split"]["heldout"] == {"splits": ["icl3"], "sizes": [3]} and card["split"]["leak_check"]["shared"] == 0
    assert set(card["metrics"]["train"]) == set(card["metrics"]["heldout"]) == set(LLM_MODULES)
    assert card["metrics"]["train"]["Predictor"]["n"] == 2 and "valid" in card["metrics"]["train"]["Actor"]
    assert card["config"] == {"prompts": "ft", "actor_history": False, "reasoning": True}
    assert card["training"]["sessions"][0]["device"].startswith("cpu")
    more = config.model_copy(update={"steps": 4})
    assert training.train(more, tmp_path / "a", progress=False)["steps"] == 4  # the same command, a larger budget
    training.train(more, tmp_path / "b", progress=False)  # the same four steps in one go
    resumed, straight = (torch.load(tmp_path / run / "checkpoint" / "trainer.pt", weights_only=False)
                         for run in ("a", "b"))
    assert resumed["losses"] == pytest.approx(straight["losses"], rel=1e-5)
    assert [(s["from_step"], s["to_step"]) for s in resumed["sessions"]] == [(0, 2), (2, 4)]
    with pytest.raises(ValueError, match="another configuration"):
        training.train(more.model_copy(update={"loss": "all"}), tmp_path / "a", progress=False)

    def fits(model, tokenizer, items, device, torch):
        return {e.module: {"n": 1, "exact": 1.0} for e in items}

    monkeypatch.setattr(training, "measure", fits)
    stops = config.model_copy(update={"steps": 50, "eval_every": 3})
    for _ in range(2):  # a fitted run asked again trains no further
        summary = training.train(stops, tmp_path / "c", progress=False)
        assert (summary["steps"], summary["stopped"]) == (3, "fit")


@pytest.mark.slow
@pytest.mark.real_model
def test_tiny_training_run_exports_an_adapter_that_llama_cpp_applies(tmp_path, capsys):
    pytest.importorskip("torch", reason="the [train] extra is not installed")
    pytest.importorskip("peft", reason="the [train] extra is not installed")
    data, run = tmp_path / "data", tmp_path / "run"
    assert main(["distill", "hanoi", "--split", "all3", "--heldout", "test4", "--limit", "1", "--noisy", "1",
                 "--out", str(data)]) == 0
    capsys.readouterr()
    args = ["train", str(data), "--out", str(run), "--steps", "2", "--batch-size", "2", "--save-every", "1",
            "--modules", "Monitor", "--eval-every", "2", "--eval-per-module", "2", "--heldout-per-module", "2"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 2 and summary["first_loss"] > 0 and (run / "adapter.gguf").stat().st_size > 10**6
    card = json.loads((run / "card.json").read_text())
    assert card["split"]["heldout"]["sizes"] == [4] and card["metrics"]["heldout"]["Monitor"]["n"] == 2
    assert "accuracy" in card["metrics"]["train"]["Monitor"]  # the real model's replies, judged by the task
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
