"""Scoring model-written value-iteration scripts: execution, accuracy, records, resuming, the CLI entry."""

import json

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from map_agent.eval.maze_code import cli_main, evaluate, extract_code, messages_for, score_script
from map_agent.tasks.maze.data import load_test_set, reference_script
from map_agent.tools.sandbox import SandboxLimits

LIMITS = SandboxLimits(wall_s=10, cpu_s=5, memory_mb=768)


@pytest.fixture(scope="module")
def problem():
    return load_test_set(3)[0]


def test_reference_script_executes_and_is_accurate(problem):
    score = score_script(reference_script(problem), problem, LIMITS)
    assert score.executed and score.accurate and score.paper_match and score.maze_copied
    assert score.path_length == problem.optimal_length and score.path[0] == (1, 1)


def test_swapping_agent_and_goal_runs_but_is_inaccurate(problem):
    # the paper's test-set-2 failure: the goal symbol taken for the agent, so values grow towards the start
    c = problem.config
    wrong = reference_script(problem).replace(
        f"AGENT, GOAL, WALL = {c.agent!r}, {c.goal!r}", f"AGENT, GOAL, WALL = {c.goal!r}, {c.agent!r}")
    score = score_script(wrong, problem, LIMITS)
    assert score.executed and not score.accurate and not score.paper_match
    assert "without reaching the goal" in score.error


def test_four_way_moves_on_a_knight_maze_are_inaccurate(problem):
    wrong = reference_script(problem).replace("ACTIONS = [", "ACTIONS = [(0, 1), (1, 0), (0, -1), (-1, 0)]\n_ = [")
    score = score_script(wrong, problem, LIMITS)
    assert score.executed and not score.accurate


def test_wrong_shape_and_crashes_count_as_failed_execution(problem):
    transposed = reference_script(problem) + "\n_vi = value_iteration\nvalue_iteration = lambda m: " \
                                             "[list(r) for r in zip(*_vi(m))]\n"
    score = score_script(transposed, problem, LIMITS)
    assert not score.executed and score.status == "bad_output" and "shape" in score.error
    crash = score_script("maze = []\ndef value_iteration(m):\n    return m[0][0]\n", problem, LIMITS)
    assert not crash.executed and "IndexError" in crash.error


def test_a_looping_script_is_scored_as_a_failure(problem):
    score = score_script("maze = 0\ndef value_iteration(m):\n    while True:\n        pass\n", problem,
                         SandboxLimits(wall_s=5, cpu_s=1))
    assert not score.executed and score.status == "timeout"


def test_extract_code_prefers_the_block_defining_value_iteration():
    reply = "Here:\n```\nmaze=[[1]]\n```\nand\n```python\ndef value_iteration(m):\n    return m\n```\nDone."
    assert extract_code(reply) == "def value_iteration(m):\n    return m"
    assert extract_code("x = 1\n") == "x = 1"


def test_prompt_follows_the_paper(problem):
    messages = messages_for(problem, shots=load_test_set(1)[:2])
    assert [m.type for m in messages] == ["system", "human", "ai", "human", "ai", "human"]
    text = messages[-1].content
    assert text.startswith("This is a maze problem that I want you to solve:")
    assert f'1. "{problem.config.agent}": agent' in text and "Give me the solution of the problem:" in text
    assert "(1, 2)" in text  # the knight moves of test set #3 are listed


def test_evaluate_writes_records_and_resumes(tmp_path):
    problems = load_test_set(1)[:3]
    replies = [f"```python\n{reference_script(problems[0])}```", "import socket\nsocket.socket()",
               "maze = None\ndef value_iteration(m):\n    return [[0]]"]
    summary = evaluate(FakeListChatModel(responses=replies), problems, tmp_path, limits=LIMITS,
                       meta={"model": "fake"})
    assert summary["scored"] == 3 and summary["model"] == "fake"
    assert summary["code_execution_success"] == pytest.approx(1 / 3)
    assert summary["solution_accuracy"] == pytest.approx(1 / 3)
    assert summary["status"] == {"ok": 1, "network": 1, "bad_output": 1}
    records = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == [p.id for p in problems]
    assert json.loads((tmp_path / "summary.json").read_text())["scored"] == 3

    class Exploding(FakeListChatModel):
        def invoke(self, *args, **kwargs):
            raise AssertionError("a finished problem was asked again")

    again = evaluate(Exploding(responses=["unused"]), problems, tmp_path, limits=LIMITS)
    assert again["scored"] == 3 and len((tmp_path / "records.jsonl").read_text().splitlines()) == 3


def test_model_failures_leave_no_record_so_a_rerun_retries(tmp_path):
    class Down(FakeListChatModel):
        def invoke(self, *args, **kwargs):
            raise ConnectionError("server unreachable")

    summary = evaluate(Down(responses=["x"]), load_test_set(2)[:1], tmp_path, limits=LIMITS)
    assert summary["scored"] == 0 and "ConnectionError" in summary["model_failures"]["test2-000"]


def test_cli_main_runs_a_limited_test_set(tmp_path, monkeypatch, capsys):
    problems = load_test_set(4)[:2]
    fake = FakeListChatModel(responses=[reference_script(p) for p in problems])
    calls = {}

    def make_chat_model(backend, model=None, **kwargs):
        calls.update(backend=backend, model=model, **kwargs)
        return fake

    monkeypatch.setattr("map_agent.llm.make_chat_model", make_chat_model)
    out = tmp_path / "run"
    assert cli_main(["--test-set", "4", "--backend", "openai", "--model", "m", "--limit", "2", "--out", str(out)]) == 0
    assert calls["backend"] == "openai" and calls["model"] == "m"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scored"] == 2 and summary["solution_accuracy"] == 1.0 and summary["test_set"] == 4
    assert json.loads(capsys.readouterr().out)["code_execution_success"] == 1.0
    with pytest.raises(SystemExit):
        cli_main(["--test-set", "5"])
