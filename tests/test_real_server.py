"""Every command path through a real OpenAI-compatible server this project did not write.

llama-cpp-python's own ``python -m llama_cpp.server`` serves the shipped SmolLM2-135M GGUF on loopback with its
defaults (a 2,048-token context), started once per session (``conftest.llama_server``). A 135M model cannot plan;
these tests check what a user meets: each command finishes in bounded time with exit status 0, the server is still
alive afterwards, and the records say what happened -- the model's raw replies, parsed or not. Each command is cut
small (one problem, one action, fewer retries, short replies) so the whole file stays within a few minutes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from map_agent.cli import main

pytestmark = [pytest.mark.real_model, pytest.mark.slow]

#: MAP cut small: one action, no tree search, one Actor round, one re-ask, short replies
SMALL = ["--max-actions", "1", "--no-search", "--monitor-retries", "0", "--parse-retries", "1", "--max-tokens", "160"]
#: seconds any one command may take on the CI machine
BOUND = 240


def openai(server, *more: str) -> list[str]:
    return ["--backend", "openai", "--base-url", server.url, "--model", "smollm2", *more]


def run(argv: list[str]) -> tuple[int, float]:
    started = time.monotonic()
    code = main(argv)
    return code, time.monotonic() - started


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


def module_calls(record: dict) -> list[dict]:
    return [*record.get("calls", []), *(c for phase in record.get("phases", []) for c in phase.get("calls", []))]


def assert_replies_recorded(record: dict) -> None:
    """Every module call the model answered keeps what it wrote, parsed or not."""
    calls = [c for c in module_calls(record) if c.get("impl", "llm") == "llm"]
    assert calls, "no module call was recorded"
    for call in calls:
        replies = call.get("replies") or []
        assert replies, f"{call['module']}: no raw reply recorded ({call.get('error')})"
        if call.get("failed"):
            assert call.get("error"), f"{call['module']}: failed without saying why"


def test_plan(llama_server, capsys):
    code, seconds = run(["plan", "hanoi", "--problem", "7", *openai(llama_server, *SMALL), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert seconds < BOUND and llama_server.alive()
    record = json.loads(out)
    assert record["problem_id"] == "7" and len(record["plan"]) <= 1
    assert_replies_recorded(record)
    assert record["usage"]["total"]["model_calls"] > 0


def test_plan_with_the_shipped_adapter(llama_server_lora, capsys):
    """The map-hanoi LoRA served by llama.cpp, asked with the short prompts it was trained on."""
    code, seconds = run(["plan", "hanoi", "--problem", "7", *openai(llama_server_lora, *SMALL), "--search",
                         "--prompts", "ft", "--no-actor-history", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert seconds < BOUND and llama_server_lora.alive()
    record = json.loads(out)
    assert_replies_recorded(record)
    ok = [c for c in module_calls(record) if not c["failed"]]
    assert ok, "the adapter's replies never parsed"


def test_eval_two_problems(llama_server, tmp_path, capsys):
    code, seconds = run(["eval", "hanoi", "--split", "test3", "--limit", "2", "--runs", "1", "--out", str(tmp_path),
                         "--run-id", "r", *openai(llama_server, *SMALL)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert seconds < BOUND and llama_server.alive()
    recs = records(tmp_path / "r" / "records.jsonl")
    assert len({r["problem_id"] for r in recs}) == len(recs) == 2
    for record in recs:
        assert record.get("error") is None, record.get("error")
        assert_replies_recorded(record)
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    moves = sum(r["execution"]["n_actions"] for r in recs)
    assert (summary["pct_invalid"]["mean"] is None) == (moves == 0)  # undefined, not 0, when no move was made


def test_eval_a_baseline(llama_server, tmp_path, capsys):
    code, seconds = run(["eval", "hanoi", "--split", "test3", "--method", "icl", "--limit", "1", "--runs", "1",
                         "--out", str(tmp_path), "--run-id", "icl", *openai(llama_server, "--parse-retries", "1",
                                                                            "--max-tokens", "256")])
    err = capsys.readouterr().err
    assert code == 0, err
    assert seconds < BOUND and llama_server.alive()
    (record,) = records(tmp_path / "icl" / "records.jsonl")
    assert record.get("error") is None, record.get("error")
    assert_replies_recorded(record)


@pytest.mark.parametrize("argv", [
    ["eval", "hanoi", "--split", "test3", "--method", "cot", "--limit", "1"],  # ~2,170 tokens of examples
    ["plan", "logistics", "--problem", "2"],  # the Actor's prompt alone is ~3,300 tokens
])
def test_a_prompt_the_window_cannot_hold_fails_before_the_run(llama_server, tmp_path, capsys, argv):
    out = ["--out", str(tmp_path)] if argv[0] == "eval" else []
    code, seconds = run([*argv, *out, *openai(llama_server)])
    (error,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 2 and seconds < 30 and llama_server.alive()
    assert "tokens + reply" in error and "> context 2,048" in error
    assert not list(tmp_path.glob("*/records.jsonl"))  # not one module call was made


def test_reproduce_smoke(llama_server, tmp_path, capsys):
    code, seconds = run(["reproduce", "smoke", "--limit", "1", "--runs", "1", "--out", str(tmp_path),
                         *openai(llama_server, *SMALL, "--no-search")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert seconds < BOUND and llama_server.alive()
    experiment = json.loads((tmp_path / "smoke" / "experiment.json").read_text())
    assert experiment["cells"] and all(c["status"] == "done" for c in experiment["cells"].values()), experiment
    for cell in experiment["cells"].values():
        for record in records(tmp_path / "smoke" / "runs" / cell["run_id"] / "records.jsonl"):
            assert_replies_recorded(record)
    assert "report:" in out


def test_eval_maze_code(llama_server, tmp_path, capsys):
    code, seconds = run(["eval", "maze-code", "--test-set", "1", "--limit", "1", "--out", str(tmp_path),
                         "--run-id", "mc", *openai(llama_server, "--max-tokens", "256")])
    err = capsys.readouterr().err
    assert code == 0, err
    assert seconds < BOUND and llama_server.alive()
    (record,) = records(tmp_path / "mc" / "records.jsonl")
    assert record["reply"] and record["status"]  # what the model wrote, and what running it gave


def test_eval_text_to_pddl(llama_server, tmp_path, capsys):
    code, seconds = run(["eval", "text-to-pddl", "--limit", "1", "--out", str(tmp_path), "--run-id", "t2p",
                         *openai(llama_server, "--max-tokens", "256")])
    err = capsys.readouterr().err
    assert code == 0, err
    assert seconds < BOUND and llama_server.alive()
    (record,) = records(tmp_path / "t2p" / "records.jsonl")
    assert record["output"] is not None and "parseable" in record
