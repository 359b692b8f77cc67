"""``map-agent report``: tables, figures and the HTML page from run directories (rendered here, offline)."""

from __future__ import annotations

import csv
import io

import pytest

from map_agent.cli import main
from map_agent.config import MAPConfig
from map_agent.eval.report import build_report, published
from map_agent.eval.runner import Evaluation, RunSpec
from map_agent.llm import DiskPromptCache
from map_agent.modules import OracleChatModel
from map_agent.task import get_task

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs through the LLM path with a scripted model that answers from ground truth, behind a fresh prompt
    cache (repeated module calls within a plan are hits): MAP (2 runs) and MAP without tree search."""
    out = tmp_path_factory.mktemp("runs")
    ids = [p.id for p in get_task("hanoi").problems("test3")[:2]]
    cache = DiskPromptCache(tmp_path_factory.mktemp("cache"))  # module-scoped: the per-test cache is not set yet
    dirs = []
    for run_id, config, runs in (("map", MAPConfig(), 2), ("no-search", MAPConfig(search=False), 1)):
        spec = RunSpec(task="hanoi", split="test3", runs=runs, backend="scripted", model=None, config=config,
                       problem_ids=ids)
        Evaluation(spec, out, run_id, llm=OracleChatModel(cache=cache)).run()
        dirs.append(out / run_id)
    return dirs


def test_report_writes_tables_figures_and_one_self_contained_page(runs, tmp_path):
    written = build_report(runs, tmp_path / "report", title="test report")
    for name in ("results", "cost", "cost_modules", "diagnostics"):
        assert written[f"{name}.md"].read_text().startswith("## ")
        assert list(csv.reader(io.StringIO(written[f"{name}.csv"].read_text())))[1:], name
    for figure in ("solved_hanoi", "cost", "diagnostics"):
        png = written[f"{figure}.png"].read_bytes()
        assert png.startswith(PNG) and len(png) > 10_000, figure
        assert "<svg" in written[f"{figure}.svg"].read_text()
    page = written["report.html"].read_text()
    assert page.count("<svg") == 3 and "<img" not in page and "src=" not in page  # nothing outside the page
    assert "test report" in page and "Module diagnostics" in page


def test_results_put_the_papers_number_beside_ours_by_the_same_definition(runs, tmp_path):
    """The paper's Hanoi % solved is scored on the Predictor's states, and "solved every problem at least once" is
    solved in any run: each is shown beside our number by that definition, never beside another."""
    build_report(runs, tmp_path)
    rows = {r["method"]: r for r in csv.DictReader(io.StringIO((tmp_path / "results.csv").read_text()))}
    row = rows["map"]
    assert row["% solved"] == "100.0 ± 0.0" and row["runs"] == "2"
    assert row["% solved (best run)"] == "100.0" and row["% solved in any run"] == "100.0"
    paper = next(e for e in published() if (e.task, e.split, e.method, e.variant, e.metric)
                 == ("hanoi", "test3", "map", None, "metrics.paper_solved"))
    assert paper.value == 74 and paper.runs == [75, 70.8, 75, 83.3, 66.7] and "line 112" in paper.source
    assert "README.md line 27" in paper.runs_source
    beside = row["ours beside the paper's, same definition"]
    assert "% solved, scored on the Predictor's states: 100.0 (paper 74)" in beside
    assert "% solved in any run: 100.0 (paper 100)" in beside
    assert "% invalid, on the Predictor's states: 0.0 (paper 0)" in beside
    assert not any(e.task == "hanoi" and e.method == "map" and e.metric == "pct_solved" for e in published())
    assert row["no plan"] == "0" and row["replies cut at the token limit"] == "0"


def test_best_run_and_any_run_are_different_numbers():
    from map_agent.eval.runner import summarise

    recs = [{"problem_id": p, "run": run, "solved": p == solved, "execution": {"n_actions": 1, "n_invalid": 0}}
            for run, solved in ((0, "a"), (1, "b")) for p in "ab"]
    s = summarise(recs, runs=2)
    assert s["pct_solved_best_run"] == 50 and s["pct_solved_any_run"] == 100


def test_published_file_names_the_paper_by_title_and_every_original_run_adds_up():
    from importlib.resources import files

    import yaml

    raw = yaml.safe_load(files("map_agent.eval").joinpath("published.yaml").read_text(encoding="utf-8"))
    assert "A brain-inspired agentic architecture to improve planning with LLMs" in raw["paper"]
    assert "/" not in raw["paper"] and ".txt" not in raw["paper"]
    with_runs = [e for e in published() if e.runs]
    assert {(e.split, e.method, len(e.runs)) for e in with_runs if e.task == "cogeval"} == {
        ("valuepath", "tot", 10), ("steppath2", "tot", 5), ("steppath3", "tot", 5), ("steppath4", "tot", 5),
        ("detour", "map", 10), ("detour", "tot", 10), ("reward_revaluation", "map", 5),
        ("reward_revaluation", "tot", 5)}
    for e in with_runs:
        assert e.runs_source and abs(sum(e.runs) / len(e.runs) - e.value) < 0.2, e


def test_cost_counts_cache_hits_and_estimates_the_uncached_cost(runs, tmp_path):
    build_report(runs, tmp_path)
    row = next(csv.DictReader(io.StringIO((tmp_path / "cost.csv").read_text())))
    calls, hits, sent = (float(row[k]) for k in ("model calls (no cache)", "cache hits", "model calls (cache)"))
    assert hits > 0 and sent > 0 and calls == pytest.approx(hits + sent)
    assert float(row["tokens (no cache, est.)"]) > float(row["tokens (cache)"])
    modules = {r["module"] for r in csv.DictReader(io.StringIO((tmp_path / "cost_modules.csv").read_text()))}
    assert {"Actor", "Monitor", "Predictor", "Evaluator", "Orchestrator", "TaskDecomposer"} <= modules


def test_report_command(runs, tmp_path, capsys):
    assert main(["report", *map(str, runs), "--out", str(tmp_path / "r")]) == 0
    assert "| hanoi | test3 | map |" in capsys.readouterr().out
    assert (tmp_path / "r" / "report.html").exists()


def test_a_folder_that_is_not_a_run_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        build_report([tmp_path], tmp_path / "out")
