"""One command line: every subcommand takes its shared options from one registry (``map_agent.options``), and each
option reaches the agent, runner or model it configures -- walked over every subcommand x backend."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from map_agent import cli, options
from map_agent.agent import MAPAgent
from map_agent.config import MAPConfig

#: the shared chat-model options, set to values no default has, per backend
CHAT_ARGS = {
    "openai": ["--model", "m1", "--base-url", "http://127.0.0.1:9/v1", "--api-key-env", "MY_TEST_KEY",
               "--timeout", "33", "--json-schema", "json_object", "--context-length", "4096", "--max-tokens", "77"],
    "local": ["--model", "some.gguf", "--threads", "1", "--lora", "adapter.gguf", "--context-length", "4096",
              "--max-tokens", "77"],
    "oracle": [],
}
#: what ``make_chat_model`` must receive for those arguments
EXPECTED_CHAT = {
    "openai": {"model": "m1", "base_url": "http://127.0.0.1:9/v1", "api_key_env": "MY_TEST_KEY", "timeout": 33.0,
               "json_schema": "json_object", "context_length": 4096, "max_tokens": 77},
    "local": {"model": "some.gguf", "threads": 1, "lora_path": "adapter.gguf", "n_ctx": 4096, "max_tokens": 77},
}
MAP_ARGS = ["-B", "3", "-L", "1", "-N", "7", "--no-search", "--subgoals", "2", "--no-monitor",
            "--module", "Evaluator=oracle", "--prompts", "ft", "--monitor-retries", "2", "--parse-retries", "3",
            "--tie-break", "first", "--no-actor-history", "--actor-temperature", "0.5", "--speculative-predict"]
EXPECTED_MAP = {"branches": 3, "layers": 1, "max_actions": 7, "search": False, "n_subgoals": 2,
                "monitor_retries": 2, "parse_retries": 3, "prompts": "ft", "tie_break": "first",
                "actor_history": False, "actor_temperature": 0.5, "speculative_predict": True}


class Reached(Exception):
    """Raised by a spy once it has seen what reached it: the command goes no further."""


@pytest.fixture
def spies(monkeypatch, tmp_path):
    """Spies on every place the options end up: the chat-model factory (wherever it was imported), the MAP agent,
    the evaluation runner and the reproduction."""
    seen: dict[str, Any] = {}
    monkeypatch.setenv("MY_TEST_KEY", "sk-test-not-a-real-key-123456")
    from map_agent.eval import maze_code, reproduce, runner, text_to_pddl  # noqa: F401 (imported before the spy)
    from map_agent.llm import backends

    original = backends.make_chat_model

    def make_chat_model(backend, model=None, **kwargs):
        seen["chat"] = {"backend": backend, "model": model, **kwargs}
        raise Reached

    for module in list(sys.modules.values()):
        if module and module.__name__.startswith("map_agent") and getattr(module, "make_chat_model", None) is original:
            monkeypatch.setattr(module, "make_chat_model", make_chat_model)

    evaluation_init = runner.Evaluation.__init__

    def evaluation(self, spec, out, run_id, **kwargs):
        seen.setdefault("evaluations", []).append({"spec": spec, "out": str(out), "run_id": run_id, **kwargs})
        evaluation_init(self, spec, out, run_id, **kwargs)

    monkeypatch.setattr(runner.Evaluation, "__init__", evaluation)
    reproduction_init = reproduce.Reproduction.__init__

    def reproduction(self, experiment, out, **kwargs):
        seen["reproduction"] = {"experiment": experiment, "out": str(out), **kwargs}
        reproduction_init(self, experiment, out, **kwargs)

    monkeypatch.setattr(reproduce.Reproduction, "__init__", reproduction)
    agent_init = MAPAgent.__init__

    def agent(self, problem, **kwargs):
        seen["agent"] = kwargs
        agent_init(self, problem, **kwargs)

    monkeypatch.setattr(MAPAgent, "__init__", agent)
    return seen


def _check_chat(seen: dict[str, Any], backend: str, cache_dir: str) -> None:
    if backend == "oracle":
        assert "chat" not in seen, "the oracle backend built a chat model"
        return
    chat = seen["chat"]
    assert chat["backend"] == backend
    for key, value in EXPECTED_CHAT[backend].items():
        assert chat.get(key) == value, f"{key}: {chat.get(key)!r} != {value!r}"
    cache = chat["cache"]
    assert str(getattr(cache, "directory", cache)) == cache_dir


def _check_map(config: MAPConfig) -> None:
    for key, value in EXPECTED_MAP.items():
        assert getattr(config, key) == value, key
    assert config.modules["Monitor"] == "off" and config.modules["Evaluator"] == "oracle"


@pytest.mark.parametrize("backend", ["openai", "local", "oracle"])
def test_plan_passes_every_option_to_the_agent_and_model(backend, spies, tmp_path):
    cache = str(tmp_path / "cache")
    cli.main(["plan", "hanoi", "--problem", "7", "--backend", backend, *CHAT_ARGS[backend], "--cache-dir", cache,
              *MAP_ARGS])
    agent = spies["agent"]
    assert agent["backend"] == backend and agent["model"] == (None if backend == "oracle" else
                                                               EXPECTED_CHAT[backend]["model"])
    _check_map(agent["config"])
    _check_chat(spies, backend, cache)


@pytest.mark.parametrize("backend", ["openai", "local", "oracle"])
def test_eval_passes_every_option_to_the_runner_and_model(backend, spies, tmp_path):
    cache = str(tmp_path / "cache")
    cli.main(["eval", "hanoi", "--split", "test3", "--backend", backend, *CHAT_ARGS[backend], "--cache-dir", cache,
              "--runs", "2", "--limit", "1", "--concurrency", "3", "--out", str(tmp_path / "runs"),
              "--run-id", "r1", *MAP_ARGS])
    (evaluation,) = spies["evaluations"]
    spec = evaluation["spec"]
    assert spec.runs == 2 and len(spec.problem_ids) == 1 and spec.backend == backend
    assert evaluation["concurrency"] == 3 and evaluation["run_id"] == "r1"
    assert evaluation["out"] == str(tmp_path / "runs")
    _check_map(spec.config)
    _check_chat(spies, backend, cache)


@pytest.mark.parametrize("backend", ["openai", "local", "oracle"])
def test_reproduce_passes_every_option_to_each_cell(backend, spies, tmp_path):
    cache = str(tmp_path / "cache")
    cli.main(["reproduce", "smoke", "--backend", backend, *CHAT_ARGS[backend], "--cache-dir", cache,
              "--runs", "1", "--limit", "1", "--concurrency", "2", "--out", str(tmp_path / "exp"), *MAP_ARGS])
    reproduction = spies["reproduction"]
    assert (reproduction["backend"], reproduction["runs"], reproduction["limit"]) == (backend, 1, 1)
    assert reproduction["concurrency"] == 2 and reproduction["out"] == str(tmp_path / "exp")
    evaluation = spies["evaluations"][0]
    assert evaluation["spec"].runs == 1 and evaluation["concurrency"] == 2
    _check_map(evaluation["spec"].config)  # the command line's MAP options override every cell's own
    _check_chat(spies, backend, cache)


@pytest.mark.parametrize("command", ["maze-code", "text-to-pddl"])
@pytest.mark.parametrize("backend", ["openai", "local"])
def test_model_evaluations_pass_every_chat_option_to_the_model(command, backend, spies, tmp_path, monkeypatch):
    cache = str(tmp_path / "cache")
    extra = ["--test-set", "1", "--unsafe-sandbox"] if command == "maze-code" else []
    cli.main(["eval", command, *extra, "--backend", backend, *CHAT_ARGS[backend], "--cache-dir", cache,
              "--limit", "1", "--out", str(tmp_path)])
    _check_chat(spies, backend, cache)


@pytest.mark.parametrize("command", ["maze-code", "text-to-pddl"])
def test_model_evaluations_have_no_oracle_backend(command, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["eval", command, "--backend", "oracle"])
    assert stop.value.code == 2
    assert "invalid choice: 'oracle'" in capsys.readouterr().err


@pytest.mark.parametrize("argv, flag", [
    (["plan", "hanoi", "--problem", "7", "--backend", "openai", "--lora", "a.gguf"], "--lora"),
    (["plan", "hanoi", "--problem", "7", "--backend", "local", "--base-url", "http://127.0.0.1:1/v1"], "--base-url"),
    (["eval", "hanoi", "--backend", "oracle", "--model", "gpt-4o"], "--model"),
    (["reproduce", "smoke", "--backend", "local", "--timeout", "5"], "--timeout"),
])
def test_an_option_of_another_backend_is_a_one_line_usage_error(argv, flag, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and flag in err and "\n" not in err and "applies to the" in err


def test_every_command_has_one_meaning_per_shared_flag():
    """No subcommand defines a shared flag itself: each comes from the registry, with its help text."""
    shared = {flag: option for option in {**options.OPTIONS, **options.deviation_options()}.values()
              for flag in option.flags}
    for name in cli.COMMANDS:
        parser = cli.subcommand_parser(name)
        for action in parser._actions:
            for flag in action.option_strings:
                if flag in shared:
                    assert action.help == shared[flag].settings.get("help"), f"{name} {flag}"


def test_train_and_distill_take_the_shared_seed_out_and_threads(monkeypatch, tmp_path):
    seen = {}
    from map_agent.learned import distill, train

    def fake_train(config, out):
        seen["train"] = (config, out)
        return {}

    monkeypatch.setattr(train, "train", fake_train)
    assert cli.main(["train", str(tmp_path), "--out", str(tmp_path / "m"), "--seed", "5", "--threads", "2",
                     "--max-example-tokens", "128", "--no-export"]) == 0
    config, out = seen["train"]
    assert (config.seed, config.threads, config.max_tokens, str(out)) == (5, 2, 128, str(tmp_path / "m"))

    def fake_distill(task, split, out, **kwargs):
        seen["distill"] = (split, str(out), kwargs)
        raise Reached

    monkeypatch.setattr(distill, "distill", fake_distill)
    cli.main(["distill", "hanoi", "--split", "test3", "--out", str(tmp_path / "d"), "--limit", "2", "--seed", "4"])
    split, out, kwargs = seen["distill"]
    assert (split, out, kwargs["limit"], kwargs["seed"]) == (["test3"], str(tmp_path / "d"), 2, 4)


def test_repeating_an_eval_command_resumes_its_run(tmp_path, capsys):
    argv = ["eval", "hanoi", "--split", "test3", "--backend", "oracle", "--limit", "1", "--runs", "1",
            "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    assert cli.main(argv) == 0
    (run,) = list(tmp_path.iterdir())
    assert len((run / "records.jsonl").read_text().splitlines()) == 1


def test_reproduce_overrides_keep_each_cells_own_ablation():
    from map_agent.eval.reproduce import Reproduction, load_experiment

    overrides = MAPConfig(max_actions=1, modules={"Evaluator": "oracle"})
    reproduction = Reproduction("hanoi_ablations", "unused", backend="oracle", overrides=overrides)
    ablation = next(c for c in load_experiment("hanoi_ablations").all_cells() if c.variant == "no-monitor")
    config = reproduction.config(ablation)
    assert config.max_actions == 1 and config.modules == {"Monitor": "off", "Evaluator": "oracle"}
    assert reproduction.run_id(ablation) != Reproduction("hanoi_ablations", "unused", backend="oracle").run_id(ablation)


#: the scaling-out options, set to values no default has (``map_agent.eval.executors``, the shared Redis cache)
SCALE_ARGS = ["--executor", "ray", "--ray-address", "auto", "--max-in-flight", "3", "--cache", "redis://127.0.0.1:9/1"]


@pytest.mark.parametrize("argv", [["eval", "hanoi", "--split", "test3"], ["reproduce", "smoke"]],
                         ids=["eval", "reproduce"])
@pytest.mark.parametrize("backend", ["openai", "local", "oracle"])
def test_scaling_options_reach_every_evaluation(argv, backend, monkeypatch, tmp_path):
    """Where the jobs run and which cache they share reach each ``Evaluation`` (no cluster or server is needed to
    see that: the spy stops the command there)."""
    from map_agent.eval import runner

    seen: list[dict[str, Any]] = []

    def evaluation(self, spec, out, run_id, **kwargs):
        seen.append(kwargs)
        raise Reached

    monkeypatch.setattr(runner.Evaluation, "__init__", evaluation)
    try:
        cli.main([*argv, "--backend", backend, *CHAT_ARGS[backend], *SCALE_ARGS, "--out", str(tmp_path)])
    except Reached:
        pass
    assert seen
    for kwargs in seen:
        assert (kwargs["executor"], kwargs["ray_address"], kwargs["max_in_flight"]) == ("ray", "auto", 3)
        assert kwargs["cache"] == "redis://127.0.0.1:9/1"


@pytest.mark.parametrize("more, message", [
    (["--max-in-flight", "2"], "--max-in-flight applies to --executor ray"),
    (["--ray-address", "auto"], "--ray-address applies to --executor ray"),
    (["--cache", "redis://127.0.0.1:9/0", "--cache-dir", "d"], "--cache and --cache-dir name two prompt caches"),
    (["--cache", "some/dir"], "expected redis://host:port/db"),
])
def test_a_misused_scaling_option_is_a_one_line_error(more, message, tmp_path, capsys):
    assert cli.main(["eval", "hanoi", "--backend", "oracle", "--out", str(tmp_path), *more]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


@pytest.mark.parametrize("argv", [["plan", "hanoi", "--problem", "7"], ["eval", "hanoi", "--split", "test3", "--out"],
                                  ["reproduce", "smoke", "--out"]], ids=["plan", "eval", "reproduce"])
def test_module_routing_reaches_the_model_and_the_run(argv, spies, tmp_path):
    """``--module-models FILE`` then ``--module-model NAME=MODEL`` (which wins) reach ``make_chat_model``; an
    evaluation pins them in its ``RunSpec`` (they change what the run is)."""
    routes = tmp_path / "routes.yaml"
    routes.write_text("Monitor: from-file\nActor: overridden\n")
    out = [str(tmp_path / "out")] if argv[-1] == "--out" else []
    cli.main([*argv, *out, "--backend", "openai", *CHAT_ARGS["openai"], "--module-models", str(routes),
              "--module-model", "Actor=map-hanoi-actor"])
    expected = {"Monitor": "from-file", "Actor": "map-hanoi-actor"}
    assert spies["chat"]["module_models"] == expected
    for evaluation in spies.get("evaluations", []):
        assert evaluation["spec"].module_models == expected


@pytest.mark.parametrize("more, message", [
    (["--backend", "local", "--module-model", "Actor=a"], "--module-model applies to the openai backend"),
    (["--backend", "openai", "--module-model", "Actress=a"], "no module Actress"),
    (["--backend", "openai", "--module-model", "Actor"], "expected NAME=MODEL"),
    (["--backend", "openai", "--module-models", "/nonexistent/routes.yaml"], "--module-models /nonexistent"),
])
def test_a_misused_routing_option_is_a_one_line_error(more, message, tmp_path, capsys):
    try:
        code = cli.main(["eval", "hanoi", "--out", str(tmp_path), *more])
    except SystemExit as stop:  # a usage error argparse reports (an option of another backend)
        code = stop.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


@pytest.mark.parametrize("content, said", [("Actor: ''\n", "Actor: String should have at least 1 character"),
                                           ("- Actor\n", "the whole file: Input should be an object"),
                                           ("Actor: [a, b]\n", "Actor: Input should be a valid string")])
def test_a_broken_routes_file_is_one_line_naming_the_file_and_the_entry(content, said, tmp_path, capsys):
    routes = tmp_path / "routes.yaml"
    routes.write_text(content)
    code = cli.main(["eval", "hanoi", "--out", str(tmp_path), "--backend", "openai", "--module-models", str(routes)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith(f"error: {routes}:") and said in err and "\n" not in err, err


@pytest.mark.parametrize("command", [["eval", "maze-code", "--test-set", "1", "--unsafe-sandbox"],
                                     ["eval", "text-to-pddl"]])
def test_model_evaluations_check_the_endpoint_before_the_first_problem(command, tmp_path, capsys):
    from llama_server import free_port

    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    code = cli.main([*command, "--backend", "openai", "--base-url", url, "--limit", "1", "--out", str(tmp_path)])
    (error,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 2 and "cannot connect" in error
    assert not list(tmp_path.rglob("records.jsonl"))  # no problem was started
