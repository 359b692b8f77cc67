"""Scoring model-written value-iteration scripts: execution, accuracy, prompts, records, resuming, the CLI."""

import json

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from map_agent.cli import main
from map_agent.eval.maze_code import evaluate, extract_code, messages_for, score_script
from map_agent.tasks.maze.data import ANSWER_LEAD, answer, load_test_set, reference_script, training_problems
from map_agent.tools.maze import distances_to, greedy_path, move_error, solve_maze
from map_agent.tools.sandbox import SandboxLimits

LIMITS = SandboxLimits(wall_s=10, cpu_s=5, memory_mb=768)


@pytest.fixture(scope="module")
def problem():
    return load_test_set(3)[0]


def test_reference_script_executes_and_is_accurate(problem):
    score = score_script(reference_script(problem), problem, LIMITS)
    assert score.executed and score.identical_path and score.shortest_path and score.maze_copied
    assert score.path_length == problem.optimal_length and score.path[0] == (1, 1) and score.error == ""


def test_swapping_agent_and_goal_runs_but_is_inaccurate(problem):
    # the paper's test-set-2 failure: the goal symbol taken for the agent, so values grow towards the start
    c = problem.config
    wrong = reference_script(problem).replace(
        f"AGENT, GOAL, WALL = {c.agent!r}, {c.goal!r}", f"AGENT, GOAL, WALL = {c.goal!r}, {c.agent!r}")
    score = score_script(wrong, problem, LIMITS)
    assert score.executed and not score.identical_path and not score.shortest_path
    assert "without reaching the goal" in score.error


def test_four_way_moves_on_a_knight_maze_are_inaccurate(problem):
    wrong = reference_script(problem).replace("ACTIONS = [", "ACTIONS = [(0, 1), (1, 0), (0, -1), (-1, 0)]\n_ = [")
    score = score_script(wrong, problem, LIMITS)
    assert score.executed and not score.shortest_path and not score.identical_path


def _tied_problem():
    """A test maze whose start has two neighbours on shortest paths, and the one greedy does not take."""
    for p in load_test_set(1):
        maze, actions = p.maze, p.config.actions
        dist = distances_to(maze, actions, maze.goal)
        reference = greedy_path(solve_maze(maze, actions, p.config.reward).values, maze, actions)
        for dr, dc in actions:
            cell = (1 + dr, 1 + dc)
            if move_error(maze, (1, 1), (dr, dc), actions) is None and cell != reference[1] \
                    and dist[cell] == p.optimal_length - 1:
                return p, cell
    raise AssertionError("no test maze with a tie at the start")


def test_a_different_shortest_path_is_relaxed_accurate_but_not_the_papers_identical_path():
    problem, other = _tied_problem()
    values = solve_maze(problem.maze, problem.config.actions, problem.config.reward).values
    values[other] += 1e-6  # the script's values break the start's tie the other way
    script = f"maze = {problem.grid!r}\ndef value_iteration(m):\n    return {values.tolist()!r}\n"
    score = score_script(script, problem, LIMITS)
    assert score.executed and score.shortest_path and not score.identical_path
    assert score.path[1] == other and "not the reference's" in score.error


def test_wrong_shape_runs_but_scores_nothing_and_crashes_fail_execution(problem):
    transposed = reference_script(problem) + "\n_vi = value_iteration\nvalue_iteration = lambda m: " \
                                             "[list(r) for r in zip(*_vi(m))]\n"
    score = score_script(transposed, problem, LIMITS)
    # the paper counts execution success when the code runs without an error: a wrong shape ran
    assert score.executed and score.status == "bad_output" and "shape" in score.error
    assert not score.identical_path and not score.shortest_path
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
    # the paper's fine-tuned answer: its opening line, then the bare script
    assert extract_code(f"{ANSWER_LEAD}\nx = 1\n") == "x = 1"


def test_default_prompt_is_the_papers(problem):
    (message,) = messages_for(problem)
    assert message.type == "human"  # the paper's <<SYS>> block is empty: no system message
    text = message.content
    c = problem.config
    assert text.startswith("This is a maze problem that I want you to solve:\n\n```maze=[[")
    assert text.endswith(f'The rewards are:\n1. "{c.goal}": {int(c.reward)}')  # the answer line opens the reply
    assert f'1. "{c.agent}": agent\n2. "{c.goal}": goal\n3. "{c.wall}": wall\n\nAction information: ' in text
    assert "empty" not in text and ANSWER_LEAD not in text
    assert "(1, 2)" in text  # the knight moves of test set #3 are listed


def test_paper_prompt_tuning_puts_the_solved_examples_in_one_message(problem):
    shots = training_problems(2)
    (message,) = messages_for(problem, shots=shots)
    text = message.content
    assert text.startswith("Here are some examples of the maze problem and their corresponding code solutions:")
    assert all(answer(shot) in text for shot in shots) and text.count(ANSWER_LEAD) == 2
    tail = text.split("Now, generate the code for this problem:\n\n")[1]
    assert tail == messages_for(problem)[0].content


def test_map_agent_prompt_is_an_option(problem):
    messages = messages_for(problem, shots=load_test_set(1)[:2], prompt="map-agent")
    assert [m.type for m in messages] == ["system", "human", "ai", "human", "ai", "human"]
    assert "value_iteration" in messages[0].content and messages[2].content.startswith("```python")
    text = messages[-1].content
    assert f'4. "{problem.config.empty}": empty' in text and text.endswith(ANSWER_LEAD)


def test_evaluate_writes_records_and_resumes(tmp_path):
    problems = load_test_set(1)[:3]
    replies = [answer(problems[0]), "import socket\nsocket.socket()",
               "maze = None\ndef value_iteration(m):\n    return [[0]]"]
    summary = evaluate(FakeListChatModel(responses=replies), problems, tmp_path, limits=LIMITS,
                       meta={"model": "fake"})
    assert summary["scored"] == 3 and summary["model"] == "fake" and summary["prompt"] == "paper"
    assert summary["code_execution_success"] == pytest.approx(2 / 3)
    assert summary["solution_accuracy"] == pytest.approx(1 / 3)
    assert summary["solution_accuracy_shortest_path"] == pytest.approx(1 / 3)
    status = summary["status"]  # the sandbox names the refused socket's status
    assert status.pop("ok") == 1 and status.pop("bad_output") == 1 and sum(status.values()) == 1
    records = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == [p.id for p in problems]
    assert {r["config_source"] for r in records} <= {"paper", "map-agent"}
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
    assert main(["eval", "maze-code", "--test-set", "4", "--backend", "openai", "--model", "m", "--limit", "2",
                 "--out", str(tmp_path), "--run-id", "run", "--prompt", "map-agent"]) == 0
    assert calls["backend"] == "openai" and calls["model"] == "m"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scored"] == 2 and summary["solution_accuracy"] == 1.0 and summary["test_set"] == 4
    assert summary["prompt"] == "map-agent" and summary["solution_accuracy_shortest_path"] == 1.0
    assert json.loads(capsys.readouterr().out)["code_execution_success"] == 1.0
    with pytest.raises(SystemExit):
        main(["eval", "maze-code", "--test-set", "5"])


def test_without_os_isolation_the_eval_refuses_before_asking_the_model(tmp_path, monkeypatch, capsys):
    from map_agent.tools import sandbox

    monkeypatch.setattr(sandbox, "isolation_problem", lambda: "user namespaces are disabled")

    def make_chat_model(*args, **kwargs):
        raise AssertionError("the model was set up although no script could be run")

    monkeypatch.setattr("map_agent.llm.make_chat_model", make_chat_model)
    assert main(["eval", "maze-code", "--test-set", "1", "--limit", "1", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "user namespaces are disabled" in err and "--unsafe-sandbox" in err and "\n" not in err
    with pytest.raises(sandbox.SandboxUnavailable):
        evaluate(FakeListChatModel(responses=["x = 1"]), load_test_set(1)[:1], tmp_path / "api")
