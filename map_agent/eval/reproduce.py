"""``map-agent reproduce <experiment>``: a paper table or figure as data, run cell by cell, then reported.

An experiment file (``experiments/<name>.yaml``, shipped in the package as ``map_agent.experiments``) declares
the cells of one table or figure: task, split, method, runs, a variant name and MAP configuration overrides for
ablations and transfer settings. Grids spell out methods x splits. Every cell runs through the same evaluation
runner as ``map-agent eval`` (``runs/<id>/records.jsonl``), under a run id derived from the cell, the backend and
the model, so a rerun resumes where it stopped and a finished cell costs nothing; problems run concurrently and
every model call goes through the prompt cache. A cell this build cannot run yet (a method, split or option that
does not exist) is reported as "not available" with the reason, never silently skipped.

>>> experiment = load_experiment("hanoi_ablations")
>>> [cell.label for cell in experiment.all_cells()][:2]
['map', 'map (no-monitor)']
"""

from __future__ import annotations

import json
import re
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from map_agent.config import MAPConfig
from map_agent.eval.report import build_report
from map_agent.eval.runner import Evaluation, RunSpec
from map_agent.task import get_task


class ExperimentError(ValueError):
    """An experiment file that cannot be read; the message is one line naming the file and the field."""


class Cell(BaseModel):
    """One cell of a paper table: a method on a task split, with its settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: str
    split: str
    method: str = Field(default="map", description="map, or a baseline: zero-shot, icl, cot, mad, tot")
    variant: str | None = Field(default=None, description="name of an ablation or setting (tables, published.yaml)")
    runs: int | None = Field(default=None, ge=1, description="default: the paper's runs for the split")
    limit: int | None = Field(default=None, ge=1, description="the first K problems of the split only")
    config: dict[str, Any] = Field(default_factory=dict, description="MAPConfig fields (ablations, deviations)")

    @property
    def label(self) -> str:
        return f"{self.method} ({self.variant})" if self.variant else self.method

    @property
    def id(self) -> str:
        parts = [self.task, self.split, self.method, self.variant, f"first{self.limit}" if self.limit else None]
        return _slug("-".join(p for p in parts if p))


class Grid(BaseModel):
    """Methods x splits of one task, each with the paper's runs unless ``runs`` names the method."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: str
    splits: list[str] = Field(min_length=1)
    methods: list[str] = Field(min_length=1)
    runs: dict[str, int] = Field(default_factory=dict, description="runs per method (deterministic baselines: 1)")
    limit: int | None = Field(default=None, ge=1)

    def cells(self) -> list[Cell]:
        return [Cell(task=self.task, split=s, method=m, runs=self.runs.get(m), limit=self.limit)
                for s in self.splits for m in self.methods]


class Experiment(BaseModel):
    """One paper table or figure: where the paper shows it, and its cells."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str
    source: str = Field(description="the paper's table or figure this reproduces")
    grids: list[Grid] = Field(default_factory=list)
    cells: list[Cell] = Field(default_factory=list)

    @model_validator(mode="after")
    def _distinct_cells(self) -> Experiment:
        ids = [c.id for c in self.all_cells()]
        if not ids:
            raise ValueError("no cells: give grids or cells")
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"cells appear twice: {', '.join(dupes)} (give one a variant)")
        return self

    def all_cells(self) -> list[Cell]:
        return [c for g in self.grids for c in g.cells()] + list(self.cells)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def experiment_names() -> list[str]:
    """The experiments shipped with the package (``experiments/*.yaml``)."""
    return sorted(p.name[:-5] for p in files("map_agent.experiments").iterdir() if p.name.endswith(".yaml"))


def experiment_path(name: str | Path) -> Path:
    """A path to a YAML file, or the name of a shipped experiment."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    shipped = Path(str(files("map_agent.experiments").joinpath(f"{name}.yaml")))
    if not shipped.exists():
        raise ExperimentError(f"unknown experiment {name!r}; shipped: {', '.join(experiment_names())}")
    return shipped


def load_experiment(name: str | Path) -> Experiment:
    """Read and validate an experiment file; every error is one line naming the file and the field."""
    path = experiment_path(name)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExperimentError(f"{path}: no such file") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ExperimentError(f"{path}: not YAML{where}: {getattr(e, 'problem', e)}") from None
    try:
        return Experiment.model_validate(raw)
    except ValidationError as e:
        errors = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'file'}: {err['msg']}" for err in e.errors()[:3])
        raise ExperimentError(f"{path}: {errors}") from None


def unavailable_reason(cell: Cell) -> str | None:
    """Why this build cannot run ``cell`` (unknown task, split, method or option), or None if it can."""
    try:
        task = get_task(cell.task)
    except KeyError as e:
        return str(e.args[0])
    if cell.split not in task.splits():
        return f"{cell.task} has no split {cell.split!r}"
    try:
        MAPConfig.model_validate(cell.config)
    except ValidationError as e:
        return "config: " + "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()[:2])
    if cell.method != "map":
        from map_agent.baselines import check_method

        try:
            check_method(task.name, cell.method)
        except ValueError as e:
            return str(e)
    return None


class Reproduction:
    """An experiment run with one backend and model, into ``out/<experiment>/``."""

    def __init__(self, experiment: str | Path, out: Path, *, backend: str, model: str | None = None,
                 runs: int | None = None, limit: int | None = None, concurrency: int = 1,
                 **agent_options: Any) -> None:
        self.name = _slug(Path(experiment).stem if str(experiment).endswith((".yaml", ".yml")) else str(experiment))
        self.experiment = load_experiment(experiment)
        self.dir = Path(out) / self.name
        self.backend, self.model = backend, model
        self.runs, self.limit = runs, limit
        self.concurrency = concurrency
        self.agent_options = agent_options

    def run_id(self, cell: Cell) -> str:
        """Derived from the cell, backend, model and any override: the same command resumes the same runs."""
        parts = [cell.id, self.backend, self.model and Path(self.model).name,
                 f"runs{self.runs}" if self.runs else None, f"limit{self.limit}" if self.limit else None]
        return _slug("-".join(p for p in parts if p))

    def spec(self, cell: Cell) -> RunSpec:
        task = get_task(cell.task)
        limits = [k for k in (cell.limit, self.limit) if k]
        problems = task.problems(cell.split)[: min(limits) if limits else None]
        return RunSpec(task=task.name, split=cell.split, runs=self.runs or cell.runs or task.default_runs(cell.split),
                       backend=self.backend, model=self.model, config=MAPConfig.model_validate(cell.config),
                       problem_ids=[p.id for p in problems], method=cell.method)

    def run(self, on_cell: Any = None) -> dict[str, Any]:
        """Run (or resume) every available cell, then write the report; returns what happened to each cell."""
        runs_dir = self.dir / "runs"
        done: list[Path] = []
        skipped: list[dict[str, str]] = []
        cells: dict[str, dict[str, Any]] = {}
        for cell in self.experiment.all_cells():
            reason = unavailable_reason(cell)
            run_id = self.run_id(cell)
            if reason is None:
                try:
                    summary = Evaluation(self.spec(cell), runs_dir, run_id, concurrency=self.concurrency,
                                         **self.agent_options).run()
                except Exception as e:  # one cell's failure is reported beside the others, never the whole table's
                    reason = f"failed: {type(e).__name__}: {e}"
                else:
                    (runs_dir / run_id / "cell.json").write_text(json.dumps(
                        {"experiment": self.name, "label": cell.label, **cell.model_dump()}, indent=2))
                    done.append(runs_dir / run_id)
                    cells[cell.id] = {"status": "done", "run_id": run_id,
                                      "pct_solved": summary["pct_solved"]["mean"]}
            if reason is not None:
                skipped.append({"task": cell.task, "split": cell.split, "label": cell.label, "reason": reason})
                cells[cell.id] = {"status": "not available", "reason": reason}
            if on_cell:
                on_cell(cell, cells[cell.id])
        written = build_report(done, self.dir, title=f"{self.experiment.title} ({self.experiment.source})",
                               unavailable=skipped)
        (self.dir / "experiment.json").write_text(json.dumps(
            {"experiment": self.name, "title": self.experiment.title, "source": self.experiment.source,
             "backend": self.backend, "model": self.model, "cells": cells}, indent=2))
        return {"dir": str(self.dir), "cells": cells, "files": {k: str(v) for k, v in written.items()}}


def cli_main(argv: list[str]) -> int:
    """``map-agent reproduce EXPERIMENT --backend B [--model M] [--runs R] [--limit K] [--concurrency C]``."""
    import argparse

    from map_agent.cli import _agent_options
    from map_agent.llm import BACKENDS

    p = argparse.ArgumentParser(prog="map-agent reproduce",
                                description="run every cell of a paper table or figure, then write its report")
    p.add_argument("experiment", nargs="?", help=f"a YAML file or a shipped name: {', '.join(experiment_names())}")
    p.add_argument("--list", action="store_true", help="list the shipped experiments and their cells")
    p.add_argument("--backend", choices=sorted(BACKENDS), default="local")
    p.add_argument("--model", help="model name (openai) or GGUF path (local)")
    p.add_argument("--base-url", help="OpenAI-compatible endpoint (else MAP_AGENT_BASE_URL / OPENAI_BASE_URL)")
    p.add_argument("--json-schema", action="store_true", help="send the output JSON schema (openai backend)")
    p.add_argument("--threads", type=int, help="llama.cpp threads (local backend)")
    p.add_argument("--lora", help="LoRA adapter for the local model")
    p.add_argument("--cache-dir", help="prompt cache directory (default: user cache dir)")
    p.add_argument("--no-cache", action="store_true", help="bypass the prompt cache")
    p.add_argument("--runs", type=int, help="override every cell's runs (a cheaper pass)")
    p.add_argument("--limit", type=int, help="first K problems of every cell (a smoke pass)")
    p.add_argument("--concurrency", type=int, default=1, help="problems planned at once within a cell")
    p.add_argument("--out", type=Path, default=Path("experiments-out"), help="parent folder of the results")
    args = p.parse_args(argv)
    if args.list or not args.experiment:
        for name in experiment_names():
            exp = load_experiment(name)
            print(f"{name}: {exp.title} ({exp.source})")
            for cell in exp.all_cells():
                reason = unavailable_reason(cell)
                print(f"  {cell.id:<55} {'ok' if reason is None else 'not available: ' + reason}")
        return 0
    try:
        reproduction = Reproduction(args.experiment, args.out, backend=args.backend, model=args.model,
                                    runs=args.runs, limit=args.limit, concurrency=args.concurrency,
                                    **_agent_options(args))
    except ExperimentError as e:
        print(f"error: {e}")
        return 2
    result = reproduction.run(on_cell=lambda cell, status: print(f"{cell.id}: {status}", flush=True))
    print((reproduction.dir / "results.md").read_text())
    print(f"report: {result['files']['report.html']}")
    return 0
