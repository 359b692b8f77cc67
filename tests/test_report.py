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


def test_results_put_the_papers_number_beside_the_run(runs, tmp_path):
    build_report(runs, tmp_path)
    rows = {r["method"]: r for r in csv.DictReader(io.StringIO((tmp_path / "results.csv").read_text()))}
    assert rows["map"]["% solved"] == "100.0 ± 0.0" and rows["map"]["runs"] == "2"
    paper = next(e for e in published() if (e.task, e.split, e.method, e.metric) == ("hanoi", "test3", "map",
                                                                                        "pct_solved"))
    assert float(rows["map"]["paper % solved"]) == paper.value == 74
    assert rows["map"]["paper % solved"] != "" and rows["map"]["paper % invalid"] == "0.0"
    assert "line 112" in paper.source


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
