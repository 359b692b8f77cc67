"""Evaluation runs: (method x problems x runs) -> ``runs/<id>/records.jsonl`` and ``summary.json``.

Records are append-only JSON lines (``map_agent.eval.records``), written and flushed one per finished
(problem, run), so no completed result is ever lost; rerunning the same ``run_id`` skips the pairs that already
have a record (a pair whose plan raised is retried). ``config.json`` pins what the run means: resuming with a
different configuration is refused; a line that is not a record of this run (an unknown problem, a wrong type) is
refused with its line number rather than counted.

Before the first problem the chat model is built once and shared by every worker (a local model loads once), one
small request checks the endpoint, and the first problem's prompt files are validated: a broken setup fails once,
up front. Ctrl-C (``KeyboardInterrupt`` in the thread that called ``run``) starts no further problem, gives the
ones in flight ``grace`` seconds, summarises what finished and raises ``Interrupted``; a cancelled problem leaves
no record, so resuming runs it again. Error text is redacted (``map_agent.llm.endpoint.redact``) before it is
stored.

Jobs run in threads here (``executor="local"``) or as Ray tasks (``executor="ray"``, ``map_agent.eval.executors``);
either way the files are the same. Several processes may share one run directory: each claims a job before
planning it (``Evaluation.claim``) and writes its record, so each job is planned once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import re
import statistics
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed, wait
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel, Field

from map_agent.agent import MAPAgent
from map_agent.config import MAPConfig
from map_agent.eval.diagnostics import aggregate as aggregate_diagnostics
from map_agent.eval.diagnostics import diagnose_record
from map_agent.eval.records import RecordCheck, append_record, read_records
from map_agent.files import load_file
from map_agent.llm.cache import open_cache
from map_agent.llm.endpoint import endpoint_url, env_api_key, redact
from map_agent.modules import build_modules
from map_agent.modules.base import is_transient
from map_agent.task import Problem, get_task

#: seconds the problems in flight get to finish after Ctrl-C
GRACE_SECONDS = 10.0


#: the longest a thread holds the GIL while another waits (CPython's default: 5 ms), while problems run in threads.
#: An evaluation's threads mostly wait on model replies; one whose reply has come should parse it and send the next
#: request at once, not wait out another thread's slice (``bench/bench_schedule.py``, ``--concurrency 16``: 80-85%
#: of the ideal speed-up at 5 ms, 86-87% at 1 ms, same machine and run)
SWITCH_INTERVAL = 0.001


class RunSpec(BaseModel):
    """What an evaluation run is; stored as ``config.json`` and compared on resume."""

    task: str
    split: str
    runs: int
    backend: str
    model: str | None
    config: MAPConfig
    problem_ids: list[str]
    #: "map", or a baseline of ``map_agent.baselines`` (it uses ``config``'s seed, parse retries and N only)
    method: str = "map"
    #: module -> the model name its requests ask for (one server, an adapter per module); others ask for ``model``
    module_models: dict[str, str] = Field(default_factory=dict)

    def default_run_id(self) -> str:
        """A name derived from what the run is, so repeating a command resumes its run instead of starting a new
        one: task, split, method, backend, model, and a digest of everything else."""
        digest = hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:8]
        model = Path(self.model).name if self.model else None
        parts = [self.task, self.split, None if self.method == "map" else self.method, self.backend, model, digest]
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", "-".join(p for p in parts if p))


class Interrupted(Exception):
    """``Evaluation.run`` stopped by Ctrl-C: what finished is recorded and summarised (``summary``).

    The threads of problems still in flight after the grace period are abandoned, not stopped (Python cannot stop
    a thread), and their records are no longer written; the CLI exits the process at once.
    """

    def __init__(self, summary: dict[str, Any], finished: int, cancelled: int) -> None:
        super().__init__(f"interrupted: {finished} finished, {cancelled} not run")
        self.summary, self.finished, self.cancelled = summary, finished, cancelled


def ended_by(record: dict[str, Any]) -> str:
    """Who ended a problem: "model" (solved, unsolved, stuck), "environment" (the planning code or the task
    raised) or "infrastructure" (the endpoint did not serve a call: unreachable, timeouts, 5xx after the retries,
    rate limit; or the worker died). A problem the model did not solve while a call of it failed at the endpoint
    is the infrastructure's: a plan cut short by an outage says nothing about the model. Records written before
    the field existed are judged by their error."""
    if record.get("ended_by"):
        return record["ended_by"]
    if record.get("error"):
        return "environment"
    if record.get("solved"):
        return "model"
    calls = [*record.get("calls", []), *(c for phase in record.get("phases", []) for c in phase.get("calls", []))]
    return "infrastructure" if any(c.get("infrastructure") for c in calls) else "model"


def latest(records: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    """The last record of each (problem, run): the file is append-only, later lines supersede earlier ones."""
    return {(r["problem_id"], r["run"]): r for r in records}


def mean_sem(values: list[float | None]) -> dict[str, float | None]:
    """Mean and standard error over the values that are defined (a run that made no move has no % invalid)."""
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "sem": None, "n": 0}
    sem = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None
    return {"mean": statistics.fmean(values), "sem": sem, "n": len(values)}


def summarise(records: list[dict[str, Any]], runs: int, wall_seconds: float | None = None) -> dict[str, Any]:
    """The paper's metrics per run, then mean and SEM over runs, plus cost.

    % solved = problems whose plan reached the goal within N with zero invalid moves; % invalid = invalid moves
    / moves, over all moves of the run, undefined (None) for a run that made no move -- 0% would claim moves that
    were all valid -- and left out of the mean; problems whose run raised count as unsolved with no moves.
    Problems the infrastructure ended are not scored (neither solved nor unsolved): they are counted apart, in
    ``infrastructure_failures``, and retried when the run is resumed; their calls still count in the cost.
    """
    every = list(latest(records).values())
    scored = [r for r in every if ended_by(r) != "infrastructure"]
    by_run: dict[int, list[dict[str, Any]]] = {}
    for r in scored:
        by_run.setdefault(r["run"], []).append(r)
    solved, invalid, reached = [], [], []
    for run in sorted(by_run):
        recs = by_run[run]
        solved.append(100 * sum(bool(r.get("solved")) for r in recs) / len(recs))
        reached.append(100 * sum(bool(r.get("goal_reached")) for r in recs) / len(recs))
        invalid.append(pct_invalid(recs))
    metrics = _paper_metrics(by_run)
    ever_solved = {r["problem_id"] for r in scored if r.get("solved")}
    problems = {r["problem_id"] for r in scored}
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
        "records": len(scored),
        "errors": sum(1 for r in scored if r.get("error")),
        # not scored, retried on resume: the endpoint (or a worker) failed, not the model
        "infrastructure_failures": len(every) - len(scored),
        "ended_by": {who: sum(ended_by(r) == who for r in every) for who in ("model", "environment", "infrastructure")},
        "module_failures": sum(int(t.get("failures", 0)) for t in totals.values()),
        # apart from planning failures: a method that got no usable reply, and replies cut at the token limit
        "no_plan": sum(1 for r in scored if r.get("status") == "no_plan"),
        "truncated_replies": sum(truncated_replies(r) for r in scored),
        "pct_solved": mean_sem(solved),
        # the best single run, and the share of problems solved in at least one run (the paper's "solved every
        # problem at least once"): two different numbers, each under its own name
        "pct_solved_best_run": max(solved) if solved else None,
        "pct_solved_any_run": 100 * len(ever_solved) / len(problems) if problems else None,
        "pct_goal_reached": mean_sem(reached),
        "pct_invalid": mean_sem(invalid),
        "metrics": metrics,
        "usage": {
            "modules": totals,
            "model_calls": sum(t.get("model_calls", 0) for t in totals.values()),
            "cache_hits": sum(t.get("cache_hits", 0) for t in totals.values()),
            "input_tokens": sum(t.get("input_tokens", 0) for t in totals.values()),
            "output_tokens": sum(t.get("output_tokens", 0) for t in totals.values()),
            # calls asked ahead of the answer they hung on and never read (--speculative-predict and the like)
            "unused_calls": sum(t.get("unused", 0) for t in totals.values()),
        },
        "diagnostics": aggregate_diagnostics(scored),
        "plan_seconds": sum(r.get("wall_seconds", 0.0) for r in every),
        "wall_seconds": wall_seconds,
    }


def truncated_replies(record: dict[str, Any]) -> int:
    """Replies of a record's calls (earlier phases included) that stopped at the token limit
    (``finish_reason == "length"``): a reply budget too small for the plan shows here, not as a planning failure."""
    calls = [*record.get("calls", []), *(c for phase in record.get("phases", []) for c in phase.get("calls", []))]
    return sum(reply.get("finish_reason") == "length" for call in calls for reply in call.get("replies") or [])


def pct_invalid(records: list[dict[str, Any]]) -> float | None:
    """Invalid moves as a percentage of all moves of ``records``; None when they made no move."""
    moves = sum((r.get("execution") or {}).get("n_actions", 0) for r in records)
    bad = sum((r.get("execution") or {}).get("n_invalid", 0) for r in records)
    return 100 * bad / moves if moves else None


def _paper_metrics(by_run: dict[int, list[dict[str, Any]]]) -> dict[str, dict[str, float | None]]:
    """``Task.paper_metrics`` (the original's own scores, stricter ones) summarised per run by the task, then mean
    and SEM over runs, labelled by the task's names."""
    per_run: dict[str, list[float | None]] = {}
    for run in sorted(by_run):
        recs = [r for r in by_run[run] if r.get("metrics")]
        if not recs:
            continue
        for name, v in get_task(recs[0]["task"]).summarise_metrics([r["metrics"] for r in recs]).items():
            per_run.setdefault(name, []).append(v)
    return {name: mean_sem(vs) for name, vs in sorted(per_run.items())}


class Evaluation:
    """One evaluation run directory; ``run()`` does (or finishes) the work and returns the summary."""

    def __init__(self, spec: RunSpec, out: Path, run_id: str, *, concurrency: int = 1,
                 agent_factory: Callable[[Problem, MAPConfig], MAPAgent] | None = None,
                 on_record: Callable[[dict[str, Any]], None] | None = None, grace: float = GRACE_SECONDS,
                 llm: BaseChatModel | None = None, executor: str = "local", ray_address: str | None = None,
                 max_in_flight: int | None = None, **agent_options: Any) -> None:
        from map_agent.eval.executors import EXECUTORS, require_ray

        if executor not in EXECUTORS:
            raise ValueError(f"executor {executor!r}: one of {', '.join(EXECUTORS)}")
        if executor == "ray":
            require_ray()
            if agent_factory is not None:
                raise ValueError("--executor ray builds each agent on its worker; an agent factory cannot travel")
        self.spec = spec
        self.dir = Path(out) / run_id
        self.concurrency = max(1, concurrency)
        self.on_record = on_record
        self.grace = grace
        self.llm = llm
        #: the chat model the caller gave (not one ``prepare`` built here): the only one a Ray worker may receive
        self.given_llm = llm
        #: "local": threads in this process (``concurrency``); "ray": Ray tasks (``map_agent.eval.executors``)
        self.executor, self.ray_address, self.max_in_flight = executor, ray_address, max_in_flight
        self.agent_options = agent_options
        self.agent_factory = agent_factory or self._agent
        self._prepared = agent_factory is not None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._closed = False  # set under the lock once interrupted: no record is written after the summary
        key = agent_options.get("api_key") or env_api_key(agent_options.get("api_key_env")) or ""
        self._redact_args = (endpoint_url(agent_options.get("base_url")), (key,))

    def _agent(self, problem: Problem, config: MAPConfig) -> MAPAgent:
        if self.spec.method != "map":
            from map_agent.baselines.agent import BaselineAgent

            options = {} if self.llm is not None else {"backend": self.spec.backend, "model": self.spec.model,
                                                       **self.agent_options}
            return BaselineAgent(problem, self.spec.method, llm=self.llm, config=config, **options)
        if self.llm is not None:  # a given model keeps its own cache; else the run's --cache-dir / --no-cache
            return MAPAgent(problem, llm=self.llm, config=config, cache=self.agent_options.get("cache"))
        return MAPAgent(problem, backend=self.spec.backend, model=self.spec.model, config=config,
                        **self.agent_options)

    def prepare(self) -> None:
        """Pin the configuration; build the shared chat model, check its endpoint and the first pending problem's
        prompt files -- everything that would otherwise fail once per problem. Idempotent; ``run`` calls it."""
        self._pin_config()
        if self._prepared:
            return
        task = get_task(self.spec.task)
        if self.spec.method != "map":
            from map_agent.baselines import check_method

            check_method(task.name, self.spec.method)
        todo = {pid for pid, _ in self.pending()}
        first = next((p for p in task.problems(self.spec.split) if p.id in todo), None)
        if first is None:  # nothing left to plan: no model needed
            self._prepared = True
            return
        self.build_model(first)

    def build_model(self, first: Problem) -> None:
        """Build the shared chat model and check it, and ``first``'s prompt files. Touches no file of the run, so a
        Ray worker calls it too (once per process), on whatever machine it is."""
        task = get_task(self.spec.task)
        resolved = self.spec.config.for_backend(self.spec.backend, task).resolve(task, first)
        if self.llm is None and "llm" in resolved.modules.values():
            # the model stack (an OpenAI client, llama.cpp) is imported only by an evaluation that calls a model
            from map_agent.llm.backends import make_chat_model
            from map_agent.llm.preflight import prepare_baseline, prepare_model

            options = dict(self.agent_options)
            if self.spec.module_models:
                options["module_models"] = self.spec.module_models
            cache = open_cache(options.pop("cache", None))
            self.llm = make_chat_model(self.spec.backend, self.spec.model, cache=cache, **options)
            if self.spec.method == "map":  # endpoint, schema form, and MAP's prompts against the context window
                prepare_model(self.llm, task, first, resolved)
            else:  # endpoint, schema form, and the baseline's first prompts against the context window
                prepare_baseline(self.llm, task, first, self.spec.method, self.spec.config.max_actions)
        build_modules(task, first, resolved, self.llm)  # reads and validates the prompt files
        self._prepared = True

    @property
    def records_path(self) -> Path:
        return self.dir / "records.jsonl"

    def _pin_config(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / "config.json"
        if path.exists():
            existing = load_file(path, RunSpec)
            if existing != self.spec:
                raise ValueError(f"{path}: run {self.dir.name!r} exists with a different configuration; "
                                 "use another --run-id")
        else:
            path.write_text(self.spec.model_dump_json(indent=2))

    def records(self) -> list[dict[str, Any]]:
        """The run's records, each checked (``RecordCheck``): a corrupted line raises ``RecordError``."""
        return read_records(self.records_path, RecordCheck,
                            {"problem_ids": set(self.spec.problem_ids), "runs": self.spec.runs})

    def pending(self) -> list[tuple[str, int]]:
        done = {k for k, r in latest(self.records()).items() if not r.get("error") and ended_by(r) != "infrastructure"}
        return [(pid, run) for run in range(self.spec.runs) for pid in self.spec.problem_ids
                if (pid, run) not in done]

    def append(self, record: dict[str, Any]) -> None:
        """Write one finished job's record (this process writes its own jobs' records, whatever the executor)."""
        with self._lock:
            if self._closed:
                return
            append_record(self.records_path, _redacted(record, *self._redact_args))
        if self.on_record:
            self.on_record(record)

    def stop(self) -> None:
        """Ctrl-C: start no further job."""
        self._stopping.set()

    def close(self) -> None:
        """After the summary of an interrupted run: no record is written any more."""
        with self._lock:
            self._closed = True

    def claim(self, problem_id: str, run: int) -> IO[str] | None:
        """Take the job (``problem_id``, ``run``) for this process, or None when another process sharing the run
        directory holds it or has finished it meanwhile: several processes on one run plan each job once.

        The claim is an exclusive ``flock`` on ``claims/<digest>.<run>``, held until the job's record is written
        (close the returned file); the kernel drops it when its process dies, so a crashed claimer's job is free
        again, with no stale lock to clear."""
        directory = self.dir / "claims"
        directory.mkdir(exist_ok=True)
        handle = (directory / f"{hashlib.sha256(problem_id.encode()).hexdigest()[:16]}.{run}").open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return None
        if (problem_id, run) not in self.pending():  # another process finished it since this one looked
            handle.close()
            return None
        return handle

    def _one(self, problem: Problem, run: int) -> dict[str, Any] | None:
        if self._stopping.is_set():  # picked up after Ctrl-C: cancelled, not failed
            return None
        claim = self.claim(problem.id, run)
        if claim is None:
            return None
        with claim:
            record = self.plan_one(problem, run)
            self.append(record)
        return record

    @staticmethod
    def error_record(problem: Problem, run: int, error: str, trace: str | None = None,
                     ended: str = "environment") -> dict[str, Any]:
        """The record of a job that produced no plan: unsolved (unscored if ``ended`` by the infrastructure),
        retried when the run is resumed."""
        return {"problem_id": problem.id, "run": run, "task": problem.task,
                "finished_at": datetime.now(timezone.utc).isoformat(), "solved": False, "goal_reached": False,
                "error": error, "ended_by": ended, **({"traceback": trace} if trace else {})}

    def plan_one(self, problem: Problem, run: int) -> dict[str, Any]:
        """Plan one (problem, run) and return its record, redacted; never raises and writes nothing, so a thread
        here and a Ray worker elsewhere do the same job and only the run's writer appends it."""
        base = {"problem_id": problem.id, "run": run, "task": problem.task,
                "finished_at": datetime.now(timezone.utc).isoformat()}
        try:
            config = self.spec.config.model_copy(update={"seed": run})
            result = self.agent_factory(problem, config).plan(thread_id=f"{self.dir.name}-{problem.id}-{run}")
            record = {**result.record(), **base}
            try:  # which module failed, judged against ground truth; a diagnostics bug never loses the record
                record["diagnostics"] = diagnose_record(get_task(problem.task), problem, record)
            except Exception as e:
                record["diagnostics_error"] = f"{type(e).__name__}: {e}"
            record["ended_by"] = ended_by(record)
        except Exception as e:  # a crash of one plan is that problem's failure, recorded, never the run's
            record = self.error_record(problem, run, f"{type(e).__name__}: {e}", traceback.format_exc(limit=5),
                                       "infrastructure" if is_transient(e) else "environment")
        return _redacted(record, *self._redact_args)

    def run(self) -> dict[str, Any]:
        self.prepare()
        task = get_task(self.spec.task)
        problems = {p.id: p for p in task.problems(self.spec.split)}
        todo = self.pending()
        started = time.perf_counter()
        if self.executor == "ray":
            from map_agent.eval.executors import Cancelled, run_on_ray

            try:
                run_on_ray([self], address=self.ray_address, max_in_flight=self.max_in_flight, grace=self.grace)
            except Cancelled as stop:
                raise Interrupted(self._summarise(started), stop.finished, stop.cancelled) from None
            return self._summarise(started)
        previous = sys.getswitchinterval()
        if self.concurrency > 1:
            sys.setswitchinterval(min(previous, SWITCH_INTERVAL))
        try:
            self._run_threads([(problems[pid], run) for pid, run in todo], started)
        finally:
            sys.setswitchinterval(previous)
        return self._summarise(started)

    def _run_threads(self, todo: list[tuple[Problem, int]], started: float) -> None:
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="map-eval")
        futures = [pool.submit(self._one, problem, run) for problem, run in todo]
        try:
            for f in as_completed(futures):
                f.result()
        except KeyboardInterrupt:
            self.stop()
            pool.shutdown(wait=False, cancel_futures=True)
            wait([f for f in futures if not f.done()], timeout=self.grace)  # a second Ctrl-C ends this wait
            self.close()
            finished = sum(1 for f in futures if f.done() and not f.cancelled() and f.result() is not None)
            raise Interrupted(self._summarise(started), finished, len(futures) - finished) from None
        pool.shutdown()

    def _summarise(self, started: float) -> dict[str, Any]:
        """Write ``summary.json``; its wall time adds this session's to the earlier sessions' of a resumed run."""
        path = self.dir / "summary.json"
        try:
            earlier = float(json.loads(path.read_text()).get("wall_seconds") or 0.0) if path.exists() else 0.0
        except (ValueError, TypeError, AttributeError):
            earlier = 0.0
        summary = {
            "task": self.spec.task, "split": self.spec.split, "method": self.spec.method,
            "backend": self.spec.backend, "model": self.spec.model, "run_id": self.dir.name,
            # MAP's named differences from the original code (a baseline runs as the original's own script)
            "deviations": self.spec.config.deviations(get_task(self.spec.task)) if self.spec.method == "map" else {},
            **summarise(self.records(), self.spec.runs, earlier + time.perf_counter() - started),
            "code_version": code_version(),
        }
        path.write_text(json.dumps(summary, indent=2))
        return summary


def _redacted(value: Any, base_url: str | None, secrets: tuple[str, ...]) -> Any:
    """The record with its error texts (``error``, ``*_error``, ``traceback``, at any depth) redacted."""
    if isinstance(value, dict):
        return {k: redact(v, base_url, secrets) if (k.endswith("error") or k == "traceback") and isinstance(v, str)
                else _redacted(v, base_url, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v, base_url, secrets) for v in value]
    return value


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
