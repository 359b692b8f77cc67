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

import hashlib
import json
import re
from importlib.resources import files
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from map_agent.config import MAPConfig
from map_agent.eval.report import build_report
from map_agent.eval.runner import Evaluation, RunSpec
from map_agent.files import FileError, load_file
from map_agent.options import EXECUTOR_OPTIONS, ROUTING_OPTIONS, add_options
from map_agent.task import get_task


class ExperimentError(FileError):
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
    """Methods x splits of one task, each with the paper's runs unless ``runs`` names the method (or the method on
    one split: the original ran CogEval's Steppath ToT 5 times, its other baselines once), and each on the split
    unless ``problem_sets`` names the problem set the method's original script ran instead (Hanoi zero-shot on all
    26 three-disk problems where MAP leaves out its two in-context examples)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: str
    splits: list[str] = Field(min_length=1)
    methods: list[str] = Field(min_length=1)
    runs: dict[str, int | dict[str, int]] = Field(
        default_factory=dict, description="runs per method, or per method and split (deterministic baselines: 1)")
    problem_sets: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="method -> {split: the split its original script ran in its place}")
    limit: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _known_names(self) -> Grid:
        for what, table in (("runs", {m: r for m, r in self.runs.items() if isinstance(r, dict)}),
                            ("problem_sets", self.problem_sets)):
            for method, by_split in table.items():
                if method not in self.methods:
                    raise ValueError(f"{what}: {method!r} is not one of the grid's methods {self.methods}")
                if unknown := sorted(set(by_split) - set(self.splits)):
                    raise ValueError(f"{what}.{method}: {unknown} are not the grid's splits {self.splits}")
        return self

    def cells(self) -> list[Cell]:
        return [Cell(task=self.task, split=self.problem_sets.get(m, {}).get(s, s), method=m,
                     runs=runs.get(s) if isinstance(runs := self.runs.get(m), dict) else runs, limit=self.limit)
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
        return load_file(path, Experiment)
    except FileNotFoundError:
        raise ExperimentError(f"{path}: no such file") from None
    except FileError as e:  # not UTF-8, not YAML, or not an experiment
        raise ExperimentError(str(e)) from None


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
                 overrides: MAPConfig | None = None, executor: str = "local", ray_address: str | None = None,
                 max_in_flight: int | None = None, **agent_options: Any) -> None:
        self.name = _slug(Path(experiment).stem if str(experiment).endswith((".yaml", ".yml")) else str(experiment))
        self.experiment = load_experiment(experiment)
        self.dir = Path(out) / self.name
        self.backend, self.model = backend, model
        self.runs, self.limit = runs, limit
        self.concurrency = concurrency
        #: MAP settings given on the command line: applied over every cell's own (its ablation stays unless named)
        self.overrides = overrides.model_dump(include=overrides.model_fields_set) if overrides else {}
        #: where each cell's jobs run (``Evaluation``): not part of what a run is, so not of its id
        self.executor = {"executor": executor, "ray_address": ray_address, "max_in_flight": max_in_flight}
        self.agent_options = agent_options

    def run_id(self, cell: Cell) -> str:
        """Derived from the cell, backend, model and any override: the same command resumes the same runs."""
        digest = hashlib.sha256(json.dumps(self.overrides, sort_keys=True).encode()).hexdigest()[:8]
        parts = [cell.id, self.backend, self.model and Path(self.model).name,
                 f"runs{self.runs}" if self.runs else None, f"limit{self.limit}" if self.limit else None,
                 f"cfg{digest}" if self.overrides else None]
        return _slug("-".join(p for p in parts if p))

    def spec(self, cell: Cell) -> RunSpec:
        task = get_task(cell.task)
        limits = [k for k in (cell.limit, self.limit) if k]
        problems = task.problems(cell.split)[: min(limits) if limits else None]
        return RunSpec(task=task.name, split=cell.split, runs=self.runs or cell.runs or task.default_runs(cell.split),
                       backend=self.backend, model=self.model, config=self.config(cell),
                       problem_ids=[p.id for p in problems], method=cell.method,
                       module_models=self.agent_options.get("module_models") or {})

    def config(self, cell: Cell) -> MAPConfig:
        """The cell's configuration with the command line's overrides (module choices merge)."""
        modules = {**cell.config.get("modules", {}), **self.overrides.get("modules", {})}
        merged = {**cell.config, **self.overrides} | ({"modules": modules} if modules else {})
        return MAPConfig.model_validate(merged)

    def run(self, on_cell: Any = None, on_start: Any = None) -> dict[str, Any]:
        """Run (or resume) every available cell, then write the report; returns what happened to each cell.
        ``on_start(cell, evaluation)`` is called before a cell's problems run (a progress display counts them
        through ``evaluation.on_record``), ``on_cell(cell, status)`` after."""
        runs_dir = self.dir / "runs"
        done: list[Path] = []
        skipped: list[dict[str, str]] = []
        cells: dict[str, dict[str, Any]] = {}
        for cell in self.experiment.all_cells():
            reason = unavailable_reason(cell)
            run_id = self.run_id(cell)
            if reason is None:
                try:
                    evaluation = Evaluation(self.spec(cell), runs_dir, run_id, concurrency=self.concurrency,
                                            **self.executor, **self.agent_options)
                    if on_start:
                        on_start(cell, evaluation)
                    summary = evaluation.run()
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


def run_with_progress(reproduction: Reproduction) -> dict[str, Any]:
    """``reproduction.run()`` with a progress display on stderr: the cells, and the current cell's problems."""
    from map_agent.progress import progress

    with progress("cells", len(reproduction.experiment.all_cells())) as display:
        cells, problems = display.lines[0], display.line("problems", None)

        def start(cell: Any, evaluation: Any) -> None:
            problems.update(completed=0, total=len(evaluation.pending()), description=f"problems of {cell.id}")
            evaluation.on_record = lambda record: problems.advance()

        def finished(cell: Any, status: dict[str, Any]) -> None:
            said = status["status"] if status["status"] == "done" else f"not available: {status.get('reason')}"
            display.print(f"{cell.id}: {said}", highlight=False, markup=False)
            cells.advance(note=cell.id)

        return reproduction.run(on_cell=finished, on_start=start)


def add_arguments(p: Any) -> None:
    """``map-agent reproduce``'s arguments: the experiment, then the shared options (``map_agent.options``). MAP
    options given here override every cell's own configuration (a cheaper or differently configured pass)."""
    p.add_argument("experiment", nargs="?", help=f"a YAML file or a shipped name: {', '.join(experiment_names())}")
    p.add_argument("--list", action="store_true", help="list the shipped experiments and their cells")
    add_options(p, "runs", "limit", "concurrency", "out", *EXECUTOR_OPTIONS, "chat model", *ROUTING_OPTIONS, "map",
                defaults={"out": "experiments-out"})


def cli_run(args: Any) -> int:
    """Run ``map-agent reproduce`` (the CLI parsed ``args``); exit status."""
    from map_agent.options import chat_options, executor_options, map_config

    if args.list or not args.experiment:
        for name in experiment_names():
            exp = load_experiment(name)
            print(f"{name}: {exp.title} ({exp.source})")
            for cell in exp.all_cells():
                reason = unavailable_reason(cell)
                print(f"  {cell.id:<55} {'ok' if reason is None else 'not available: ' + reason}")
        return 0
    reproduction = Reproduction(args.experiment, Path(args.out), backend=args.backend, model=args.model,
                                runs=args.runs, limit=args.limit, concurrency=args.concurrency,
                                overrides=map_config(args), **executor_options(args), **chat_options(args))
    result = run_with_progress(reproduction)
    print((reproduction.dir / "results.md").read_text())
    print(f"report: {result['files']['report.html']}")
    failed = [c for c in result["cells"].values() if str(c.get("reason", "")).startswith("failed")]
    return 1 if failed and len(failed) == len(result["cells"]) else 0
