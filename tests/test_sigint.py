"""Issue 9: Ctrl-C stops ``map-agent eval`` and ``map-agent plan`` at once -- a real SIGINT to a real process.

The model is ``fake_openai.FakeOpenAI`` on 127.0.0.1, answering slowly so that problems are in flight when the
signal arrives.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fake_openai import FakeOpenAI, completion

QUICK = ["--parse-retries", "0", "--monitor-retries", "0", "--no-cache"]


def command() -> list[str]:
    script = shutil.which("map-agent", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "map_agent.cli"]


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([*command(), *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_until(condition, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def record_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def resume_command(stderr: str) -> list[str]:
    (line,) = [line for line in stderr.splitlines() if "resume with: " in line]
    words = shlex.split(line.split("resume with: ", 1)[1])
    assert words[0] == "map-agent"
    return [*command(), *words[1:]]


@pytest.mark.slow
def test_first_ctrl_c_stops_the_eval_summarises_what_finished_and_says_how_to_resume(tmp_path):
    with FakeOpenAI(delay=0.4) as server:
        args = ["eval", "hanoi", "--split", "test3", "--limit", "8", "--runs", "1", "--concurrency", "2",
                "--backend", "openai", "--base-url", server.url, "--out", str(tmp_path), "--run-id", "r",
                "--grace", "5", *QUICK]
        proc = start(args, tmp_path)
        records = tmp_path / "r" / "records.jsonl"
        wait_until(lambda: len(record_lines(records)) >= 1 or proc.poll() is not None)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        stopped_after = time.monotonic() - signalled
        assert proc.returncode == 130, err
        assert stopped_after < 5 + 5  # the grace period, plus room for a loaded machine
        assert "Traceback" not in err and "KeyboardInterrupt" not in err
        finished = record_lines(records)
        assert 1 <= len(finished) < 8 and not any(r.get("error") for r in finished)  # cancelled is not failed
        summary = json.loads((tmp_path / "r" / "summary.json").read_text())
        assert summary["records"] == len(finished)
        requests_at_stop = len(server.requests)
        time.sleep(1.0)
        assert len(server.requests) == requests_at_stop  # nothing more was started

        server.delay = 0.0  # resume with the command it printed: only the unfinished problems run
        resumed = subprocess.run(resume_command(err), cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert resumed.returncode == 0, resumed.stderr
    done = record_lines(records)
    assert len(done) == 8 and len({r["problem_id"] for r in done}) == 8
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["wall_seconds"] >= summary["wall_seconds"]


@pytest.mark.slow
def test_problems_still_in_flight_after_the_grace_period_are_abandoned(tmp_path):
    with FakeOpenAI(hang_after=1) as server:  # the probe is answered, every later request hangs
        proc = start(["eval", "hanoi", "--split", "test3", "--limit", "4", "--runs", "1", "--concurrency", "2",
                      "--backend", "openai", "--base-url", server.url, "--out", str(tmp_path), "--run-id", "r",
                      "--grace", "1", *QUICK], tmp_path)
        wait_until(lambda: len(server.requests) >= 3 or proc.poll() is not None)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130 and time.monotonic() - signalled < 1 + 5, err
    assert "0 problem(s) finished" in err and "--run-id r" in err and "Traceback" not in err
    assert record_lines(tmp_path / "r" / "records.jsonl") == []
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["records"] == 0


@pytest.mark.slow
def test_a_second_ctrl_c_exits_immediately(tmp_path):
    with FakeOpenAI(hang_after=1) as server:
        proc = start(["eval", "hanoi", "--split", "test3", "--limit", "4", "--runs", "1", "--backend", "openai",
                      "--base-url", server.url, "--out", str(tmp_path), "--grace", "300", *QUICK], tmp_path)
        wait_until(lambda: len(server.requests) >= 2 or proc.poll() is not None)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130 and time.monotonic() - signalled < 5, err
    assert "interrupted again" in err and "Traceback" not in err


@pytest.mark.slow
def test_ctrl_c_stops_a_plan_and_a_checkpointed_plan_resumes(tmp_path):
    goal = {"reached": False}

    def orchestrator(n, request):  # the goal is never reached until the test says so
        if "OrchestratorOutput" in request["body"]["messages"][0]["content"]:
            return 200, "application/json", completion(json.dumps({"achieved": goal["reached"]}))
        return None

    with FakeOpenAI(delay=0.3, respond=orchestrator) as server:
        proc = start(["plan", "hanoi", "--problem", "7", "--backend", "openai", "--base-url", server.url,
                      "--checkpoint", str(tmp_path / "plans.db"), *QUICK], tmp_path)
        wait_until(lambda: len(module_calls(server)) >= 4 or proc.poll() is not None)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err
        assert "Traceback" not in err and "--thread-id" in err
        asked = len(module_calls(server))

        goal["reached"] = True
        server.delay = 0.0
        resumed = subprocess.run(resume_command(err), cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert "plan (" in resumed.stderr
    # the finished module calls came from the checkpoint: the resumed run asked for the rest only
    assert len(module_calls(server)) - asked < asked + 3


def module_calls(server: FakeOpenAI) -> list[dict]:
    """The module requests the server saw (a module's prompt opens with its system message), not the endpoint
    check's probes that every start sends."""
    return [r for r in server.requests if (r["body"] or {}).get("messages", [{}])[0].get("role") == "system"]


@pytest.mark.slow
def test_thread_id_without_checkpoint_is_refused(tmp_path):
    out = subprocess.run([*command(), "plan", "hanoi", "--problem", "7", "--backend", "oracle", "--thread-id", "t"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "COLUMNS": "200"})
    assert out.returncode == 2 and "--thread-id resumes a plan saved with --checkpoint PATH" in out.stderr
