"""``map-agent view``: the run page shows every problem, step, proposal, verdict, prompt and reply, offline.

The browser test opens the page from a ``file://`` URL in Debian's Chromium (``.ci/run`` installs it) with every
network feature off, and reads the DOM after the page's JavaScript ran: the problems are listed and the problem
and step the address names are open.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from map_agent.cli import main
from map_agent.view import RunPage, assign_calls, write_view


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    assert main(["eval", "hanoi", "--split", "test3", "--limit", "2", "--runs", "1", "--backend", "oracle",
                 "--out", str(out)]) == 0
    (found,) = out.iterdir()
    return found


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "records.jsonl").read_text().splitlines()]


def test_every_call_belongs_to_one_part_and_each_step_starts_with_its_actor(run_dir: Path) -> None:
    for record in _records(run_dir):
        before, per_step = assign_calls(record)
        flat = before + [i for part in per_step for i in part]
        assert flat == list(range(len(record["calls"])))
        assert [record["calls"][i]["module"] for i in before] == ["TaskDecomposer"]
        for step, part in zip(record["steps"], per_step, strict=True):
            actor = next(record["calls"][i] for i in part if record["calls"][i]["module"] == "Actor")
            assert actor["input"]["state"] == step["state"]


def test_page_shows_problems_steps_verdicts_and_search(run_dir: Path, tmp_path: Path) -> None:
    assert main(["view", str(run_dir), "--out", str(tmp_path)]) == 0
    (page,) = tmp_path.glob("*.html")
    text = page.read_text()
    assert "<script src" not in text and "<link" not in text and "http://" not in text  # nothing to fetch
    assert text.count("<tr data-solved=1") == 2
    assert "Move 2 from A to C." in text  # the task's renderer, not JSON
    assert "Actor proposals and the Monitor's verdicts" in text and "<span class=ok>valid</span>" in text
    assert "value (Evaluator: steps to go)" in text and "chosen" in text
    assert "The environment's verdict and the modules' belief" in text


def test_first_failure_shows_what_the_model_wrote_and_the_prompt(run_dir: Path, tmp_path: Path) -> None:
    record = _records(run_dir)[0]
    record["config"]["modules"]["Actor"] = "llm"
    actor = next(c for c in record["calls"] if c["module"] == "Actor")
    actor.update(impl="llm", failed=True, output=None, error="the reply is not JSON",
                 replies=[{"text": "I think disk two goes left", "chars": 26, "finish_reason": "stop"}])
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (run / "records.jsonl").write_text(json.dumps(record) + "\n")
    text = RunPage(run).html()
    assert "first failed module call: #4, Actor: the reply is not JSON" in text
    assert "I think disk two goes left" in text and "finish_reason stop" in text
    # the prompt is rendered from the call's input by the Actor's own render(): its request and the state
    assert "Actor's system prompt and examples" in text
    assert "Current state: A = [0, 1, 2], B = [], C = []" in text


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_page_in_a_headless_browser_offline(run_dir: Path, tmp_path: Path) -> None:
    if CHROMIUM is None:
        if os.environ.get("MAP_AGENT_REQUIRE_BROWSER"):  # .ci/run sets it: CI must run this test
            pytest.fail("no chromium on PATH, and MAP_AGENT_REQUIRE_BROWSER is set")
        pytest.skip("no chromium on PATH (CI installs Debian's: apt-get install chromium)")
    page = write_view(run_dir, tmp_path / "pages")
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'ud'}",
             "--virtual-time-budget=2000"]
    dom = subprocess.run([*flags, "--dump-dom", f"{page.resolve().as_uri()}#problem=2&step=3"], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    assert 'id="shown" class="muted">2 of 2 shown' in dom  # the page's script ran
    assert '<details class="problem" id="p-2-r0" data-problem="2" open="">' in dom
    assert '<details class="problem" id="p-1-r0" data-problem="1">' in dom
    assert '<details class="step" data-step="3" open="">' in dom
    shot = tmp_path / "page.png"
    subprocess.run([*flags, "--hide-scrollbars", "--window-size=1280,1000", f"--screenshot={shot}",
                    f"{page.resolve().as_uri()}#problem=2"], capture_output=True, timeout=120, check=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_report_links_each_runs_page(run_dir: Path, tmp_path: Path) -> None:
    from map_agent.eval.report import build_report

    written = build_report([run_dir], tmp_path / "report")
    page = written[f"pages/{run_dir.name}.html"]
    assert "problem 2 · run 0" in page.read_text()
    assert f"<a href='pages/{run_dir.name}.html'>{run_dir.name}</a>" in written["report.html"].read_text()


def test_what_went_wrong_first_names_the_module(run_dir: Path, tmp_path: Path) -> None:
    """No call failed, but the environment rejected a move the Monitor passed: the Monitor is named, at its step."""
    record = _records(run_dir)[0]
    record["execution"]["steps"][1].update(valid=False, reason="disk 1 is not on top")
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (run / "records.jsonl").write_text(json.dumps(record) + "\n")
    page = RunPage(run)
    short, said = page.diagnosis(record)
    assert short == "Monitor, step 2"
    assert said.endswith("(disk 1 is not on top); the Monitor had judged it valid")
    assert f"what went wrong first: {said}" in page.html()
