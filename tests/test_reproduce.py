"""Experiments as data: every shipped file validates, and ``map-agent reproduce`` runs one end to end."""

from __future__ import annotations

import json

import pytest

from map_agent.cli import main
from map_agent.eval.reproduce import (
    ExperimentError,
    Reproduction,
    experiment_names,
    load_experiment,
    unavailable_reason,
)

SMALL = """
title: "small"
source: "a slice of Table 1"
grids:
  - {task: hanoi, splits: [test3], methods: [map], runs: {map: 2}, limit: 2}
cells:
  - {task: hanoi, split: test3, method: map, variant: no-search, runs: 1, limit: 2, config: {search: false}}
  - {task: hanoi, split: no_such_split, method: map}
"""


def test_every_shipped_experiment_validates_and_says_what_it_cannot_run():
    names = experiment_names()
    assert {"hanoi_gpt4", "hanoi_ablations", "hanoi_4disk_icl", "cogeval_gpt4", "planbench_gpt4", "planbench_tot",
            "strategyqa", "transfer", "smoke"} <= set(names)
    for name in names:
        for cell in load_experiment(name).all_cells():
            reason = unavailable_reason(cell)
            assert reason is None or isinstance(reason, str) and reason
    ablations = {c.variant: c for c in load_experiment("hanoi_ablations").all_cells()}
    assert ablations["no-monitor"].config == {"modules": {"Monitor": "off"}}
    assert all(unavailable_reason(c) is None for c in ablations.values())


@pytest.mark.parametrize("text, message", [
    ("title: t\nsource: s\ncells: [{task: hanoi, split: test3, colour: red}]", "cells.0.colour: Extra inputs"),
    ("title: t\nsource: s\n", "no cells"),
    ("title: t\nsource: s\ncells: [{task: hanoi, split: test3}, {task: hanoi, split: test3}]", "appear twice"),
    ("title: [t\n", "not YAML at line"),
])
def test_a_bad_experiment_file_is_one_line_naming_file_and_field(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ExperimentError, match=message) as info:
        load_experiment(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_unavailable_cells_are_named_with_the_reason():
    from map_agent.eval.reproduce import Cell

    assert "no split 'nope'" in unavailable_reason(Cell(task="hanoi", split="nope"))
    assert "unknown task" in unavailable_reason(Cell(task="nope", split="x"))
    assert "config" in unavailable_reason(Cell(task="hanoi", split="test3", config={"branches": 99}))
    assert "no method" in unavailable_reason(Cell(task="hanoi", split="test3", method="nope"))


def test_reproduce_runs_an_experiment_end_to_end_and_resumes(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text(SMALL)
    reproduction = Reproduction(path, tmp_path / "out", backend="oracle")
    result = reproduction.run()
    cells = result["cells"]
    assert cells["hanoi-test3-map-first2"]["status"] == "done" and cells["hanoi-test3-map-first2"]["pct_solved"] == 100
    assert cells["hanoi-no_such_split-map"] == {"status": "not available",
                                                "reason": "hanoi has no split 'no_such_split'"}
    folder = tmp_path / "out" / "small"
    table = (folder / "results.md").read_text()
    assert "| hanoi | test3 | map (no-search) | oracle | 1 | 2 | 100.0 |" in table
    assert "not available: hanoi has no split 'no_such_split'" in table
    assert (folder / "solved_hanoi.png").read_bytes().startswith(b"\x89PNG")
    assert (folder / "report.html").exists()
    records = folder / "runs" / "hanoi-test3-map-first2-oracle" / "records.jsonl"
    assert len(records.read_text().splitlines()) == 4  # 2 problems x 2 runs
    assert json.loads((records.parent / "cell.json").read_text())["label"] == "map"
    Reproduction(path, tmp_path / "out", backend="oracle").run()  # resumed: nothing to redo
    assert len(records.read_text().splitlines()) == 4


def test_reproduce_command(tmp_path, capsys):
    path = tmp_path / "small.yaml"
    path.write_text(SMALL)
    assert main(["reproduce", str(path), "--backend", "oracle", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| hanoi | test3 | map | oracle | 2 | 2 | 100.0 ± 0.0 |" in out
    assert main(["reproduce", str(tmp_path / "missing.yaml"), "--backend", "oracle"]) == 2
