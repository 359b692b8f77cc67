"""Evaluation runs: (method x problems x runs) -> ``runs/<id>/records.jsonl`` and ``summary.json``.

Records are append-only JSON lines (``map_agent.eval.records``), written and flushed one per finished
(problem, run), so no completed result is ever lost; rerunning the same ``run_id`` skips the pairs that already
have a record (a pair whose plan raised is retried). ``config.json`` pins what the run means: resuming with a
different configuration is refused.
"""

from __future__ import annotations

import json
import math
import statistics
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from map_agent.agent import MAPAgent
from map_agent.config import MAPConfig
from map_agent.eval.records import append_record, read_records
from map_agent.task import Problem, get_task


class RunSpec(BaseModel):
    """What an evaluation run is; stored as ``config.json`` and compared on resume."""

    task: str
    split: str
    runs: int
    backend: str
    model: str | None
    config: MAPConfig
    problem_ids: list[str]


def latest(records: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    """The last record of each (problem, run): the file is append-only, later lines supersede earlier ones."""
    return {(r["problem_id"], r["run"]): r for r in records}


def mean_sem(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"mean": None, "sem": None, "n": 0}
    sem = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None
    return {"mean": statistics.fmean(values), "sem": sem, "n": len(values)}


def summarise(records: list[dict[str, Any]], runs: int, wall_seconds: float | None = None) -> dict[str, Any]:
    """The paper's metrics per run, then mean and SEM over runs, plus cost.

    % solved = problems whose plan reached the goal within N with zero invalid moves; % invalid = invalid moves
    / moves, over all moves of the run; problems whose run raised count as unsolved with no moves.
    """
    by_run: dict[int, list[dict[str, Any]]] = {}
    for r in latest(records).values():
        by_run.setdefault(r["run"], []).append(r)
    solved, invalid, reached = [], [], []
    for run in sorted(by_run):
        recs = by_run[run]
        solved.append(100 * sum(bool(r.get("solved")) for r in recs) / len(recs))
        reached.append(100 * sum(bool(r.get("goal_reached")) for r in recs) / len(recs))
        moves = sum(r.get("execution", {}).get("n_actions", 0) for r in recs)
        bad = sum(r.get("execution", {}).get("n_invalid", 0) for r in recs)
        invalid.append(100 * bad / moves if moves else 0.0)
    every = list(latest(records).values())
    ever_solved = {r["problem_id"] for r in every if r.get("solved")}
    problems = {r["problem_id"] for r in every}
    totals: dict[str, dict[str, float]] = {}
    for r in every:
        for module, u in (r.get("usage") or {}).get("modules", {}).items():
            t = totals.setdefault(module, {})
            for k, v in u.items():
                t[k] = t.get(k, 0) + v
    return {
        "runs_complete": len(by_run),
        "runs_requested": runs,
        "problems": len(problems),
        "records": len(every),
        "errors": sum(1 for r in every if r.get("error")),
        "pct_solved": mean_sem(solved),
        "pct_solved_best": 100 * len(ever_solved) / len(problems) if problems else None,
        "pct_goal_reached": mean_sem(reached),
        "pct_invalid": mean_sem(invalid),
        "usage": {
            "modules": totals,
            "model_calls": sum(t.get("model_calls", 0) for t in totals.values()),
            "cache_hits": sum(t.get("cache_hits", 0) for t in totals.values()),
            "input_tokens": sum(t.get("input_tokens", 0) for t in totals.values()),
            "output_tokens": sum(t.get("output_tokens", 0) for t in totals.values()),
        },
        "plan_seconds": sum(r.get("wall_seconds", 0.0) for r in every),
        "wall_seconds": wall_seconds,
    }


class Evaluation:
    """One evaluation run directory; ``run()`` does (or finishes) the work and returns the summary."""

    def __init__(self, spec: RunSpec, out: Path, run_id: str, *, concurrency: int = 1,
                 agent_factory: Callable[[Problem, MAPConfig], MAPAgent] | None = None,
                 on_record: Callable[[dict[str, Any]], None] | None = None, **agent_options: Any) -> None:
        self.spec = spec
        self.dir = Path(out) / run_id
        self.concurrency = max(1, concurrency)
        self.on_record = on_record
        self.agent_factory = agent_factory or (lambda problem, config: MAPAgent(
            problem, backend=spec.backend, model=spec.model, config=config, **agent_options))
        self._lock = threading.Lock()

    @property
    def records_path(self) -> Path:
        return self.dir / "records.jsonl"

    def _pin_config(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / "config.json"
        if path.exists():
            existing = RunSpec.model_validate_json(path.read_text())
            if existing != self.spec:
                raise ValueError(f"{path}: run {self.dir.name!r} exists with a different configuration; "
                                 "use another --run-id")
        else:
            path.write_text(self.spec.model_dump_json(indent=2))

    def pending(self) -> list[tuple[str, int]]:
        done = {k for k, r in latest(read_records(self.records_path)).items() if not r.get("error")}
        return [(pid, run) for run in range(self.spec.runs) for pid in self.spec.problem_ids
                if (pid, run) not in done]

    def _append(self, record: dict[str, Any]) -> None:
        append_record(self.records_path, record, self._lock)
        if self.on_record:
            self.on_record(record)

    def _one(self, problem: Problem, run: int) -> dict[str, Any]:
        base = {"problem_id": problem.id, "run": run, "task": problem.task,
                "finished_at": datetime.now(timezone.utc).isoformat()}
        try:
            config = self.spec.config.model_copy(update={"seed": run})
            result = self.agent_factory(problem, config).plan(thread_id=f"{self.dir.name}-{problem.id}-{run}")
            record = {**result.record(), **base}
        except Exception as e:  # a crash of one plan is that problem's failure, recorded, never the run's
            record = {**base, "solved": False, "goal_reached": False,
                      "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(limit=5)}
        self._append(record)
        return record

    def run(self) -> dict[str, Any]:
        self._pin_config()
        task = get_task(self.spec.task)
        problems = {p.id: p for p in task.problems(self.spec.split)}
        todo = self.pending()
        started = time.perf_counter()
        with ThreadPoolExecutor(self.concurrency) as pool:
            futures = [pool.submit(self._one, problems[pid], run) for pid, run in todo]
            for f in as_completed(futures):
                f.result()
        summary = {
            "task": self.spec.task, "split": self.spec.split, "backend": self.spec.backend,
            "model": self.spec.model, "run_id": self.dir.name,
            **summarise(read_records(self.records_path), self.spec.runs, time.perf_counter() - started),
            "code_version": code_version(),
        }
        (self.dir / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary


def code_version() -> str:
    """The package version and, in a git checkout, the commit: records say which code produced them."""
    import subprocess
    from importlib.metadata import version

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return version("map-agent") + (f"+{commit}" if commit else "")
