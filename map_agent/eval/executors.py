"""Where an evaluation's jobs run: threads in this process (``local``, the default) or Ray tasks (``ray``).

One job is one (problem, run) of an evaluation. With Ray each job is a task on whichever machine of the cluster
has a free CPU, so a sweep that is CPU-bound (the embedded model, the symbolic tools) scales past one machine; Ray
itself schedules, and retries a job whose worker died (a killed process, a lost node: ``MAX_RETRIES``). Nothing
else changes: a task returns its record and this process -- the one writer -- appends it to the same
``records.jsonl`` through ``Evaluation``, so resume, ``summary.json``, reports and diagnostics cannot tell the
executors apart, and a job whose worker died is never written twice nor lost (Ray returns it once; a job that
still fails after its retries is recorded as that problem's error and retried on resume).

What a worker knows reaches it only through ``JobConfig``: the frozen ``RunSpec``, the run id and the chat-model
options, which name the environment variable that holds an API key but never hold the key, and the prompt cache as
a path or a URL without its password. Each worker reads keys from its own environment; no secret enters Ray's
object store or its logs. Jobs in flight are bounded per model endpoint (``max_in_flight``), so a cluster of
hundreds of CPUs does not flood one API.
"""

from __future__ import annotations

import importlib.util
import os
import uuid
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_core.caches import BaseCache
from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel, ConfigDict, SecretStr, field_validator

from map_agent.eval.runner import RunSpec
from map_agent.llm.cache import CACHE_URL_ENV, DiskPromptCache
from map_agent.llm.endpoint import endpoint_url
from map_agent.options import EXECUTOR_CHOICES
from map_agent.task import Problem, get_task

if TYPE_CHECKING:
    from map_agent.eval.runner import Evaluation

#: the executors ``--executor`` names
EXECUTORS = EXECUTOR_CHOICES
#: times Ray reruns a job whose worker process or node died (not a job that raised: that is a recorded failure)
MAX_RETRIES = 3
#: prepared evaluations one worker process keeps (a reproduction runs many cells through the same workers)
WORKER_KEEPS = 8


def require_ray() -> None:
    """Fail in one line, before anything runs, when the optional extra is missing."""
    if importlib.util.find_spec("ray") is None:
        raise ValueError("--executor ray needs Ray, an optional extra: pip install 'map-agent[ray]'")


class Cancelled(Exception):
    """Ctrl-C during a Ray run: the jobs still in flight after the grace period were cancelled."""

    def __init__(self, finished: int, cancelled: int) -> None:
        super().__init__(f"interrupted: {finished} finished, {cancelled} not run")
        self.finished, self.cancelled = finished, cancelled


class JobConfig(BaseModel):
    """Everything a worker needs to plan an evaluation's jobs, frozen, and nothing secret."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    #: this submission's identity: a worker prepares (builds the chat model, checks the endpoint) once per key
    key: str
    spec: RunSpec
    run_id: str
    #: ``Evaluation``'s chat-model options (``options.chat_options``): an API key's variable name, never a key
    options: dict[str, Any]
    #: a chat model the caller gave (a scripted one), shipped without its cache; never one that holds a secret
    llm: BaseChatModel | None = None

    @field_validator("options")
    @classmethod
    def _no_secret(cls, options: dict[str, Any]) -> dict[str, Any]:
        if options.get("api_key"):
            raise ValueError("with --executor ray an API key is never sent to workers: each worker reads it from "
                             "its own environment (--api-key-env names the variable)")
        if isinstance(options.get("cache"), BaseCache):
            raise ValueError("a cache object cannot reach workers; give its directory or URL")
        return options

    @field_validator("llm")
    @classmethod
    def _no_secret_in_model(cls, llm: BaseChatModel | None) -> BaseChatModel | None:
        if llm is not None and any(isinstance(v, SecretStr) for v in llm.__dict__.values()):
            raise ValueError("with --executor ray a chat model holding an API key is not shipped to workers: give "
                             "the backend and model, and each worker builds its own from its environment")
        return llm


def cache_spec(cache: Any) -> str | bool | None:
    """The prompt cache as workers can open it: a directory, a URL without password, ``False`` or ``None``."""
    from map_agent.llm.redis_cache import RedisPromptCache, public_url

    if isinstance(cache, DiskPromptCache):
        return str(cache.directory)
    if isinstance(cache, RedisPromptCache):
        return cache.url
    if isinstance(cache, BaseCache):
        raise ValueError(f"with --executor ray the prompt cache must be a directory or a Redis URL, not a "
                         f"{type(cache).__name__}")
    if isinstance(cache, (str, Path)):
        if public_url(str(cache)) != str(cache) and os.environ.get(CACHE_URL_ENV) != str(cache):
            raise ValueError("with --executor ray a Redis password reaches workers only through their own "
                             f"environment: set {CACHE_URL_ENV} to the URL with the password on every machine")
        return public_url(str(cache))
    return cache


def job_config(evaluation: Evaluation) -> JobConfig:
    """What ``evaluation``'s workers get (a caller's scripted model travels without its cache object)."""
    options = dict(evaluation.agent_options)
    llm = evaluation.given_llm
    if llm is not None and isinstance(llm.cache, BaseCache):
        options["cache"], llm = llm.cache, llm.model_copy(update={"cache": None})
    options["cache"] = cache_spec(options.get("cache"))
    return JobConfig(key=uuid.uuid4().hex, spec=evaluation.spec, run_id=evaluation.dir.name, options=options,
                     llm=llm)


def endpoint(config: JobConfig) -> str:
    """The model endpoint a job's calls go to, for the in-flight bound (local and oracle: the worker's own CPU)."""
    if config.spec.backend == "openai" and config.llm is None:
        return endpoint_url(config.options.get("base_url")) or "https://api.openai.com/v1"
    return f"{config.spec.backend}:{config.spec.model or ''}"


# -- the worker side ------------------------------------------------------------------------------------------

_prepared: dict[str, tuple[Evaluation, dict[str, Problem]]] = {}


def _worker(config: JobConfig, problem_id: str) -> tuple[Evaluation, dict[str, Problem]]:
    """This worker process's evaluation for ``config``, its chat model built and checked on the first job only."""
    from map_agent.eval.runner import Evaluation

    if config.key not in _prepared:
        while len(_prepared) >= WORKER_KEEPS:
            _prepared.pop(next(iter(_prepared)))
        evaluation = Evaluation(config.spec, Path("."), config.run_id, llm=config.llm, **config.options)
        problems = {p.id: p for p in get_task(config.spec.task).problems(config.spec.split)}
        evaluation.build_model(problems[problem_id])
        _prepared[config.key] = (evaluation, problems)
    return _prepared[config.key]


def plan_job(config: JobConfig, problem_id: str, run: int) -> dict[str, Any]:
    """One job on a Ray worker: its record, redacted with the worker's own key, never written here."""
    evaluation, problems = _worker(config, problem_id)
    return evaluation.plan_one(problems[problem_id], run)


# -- the driver side ------------------------------------------------------------------------------------------

def run_on_ray(evaluations: Sequence[Evaluation], *, address: str | None = None, max_in_flight: int | None = None,
               grace: float = 10.0) -> int:
    """Run every pending job of ``evaluations`` (each already ``prepare``d) as Ray tasks and append each record
    as it returns; the number of records written. ``address``: a running cluster (``auto``, ``ray://host:10001``),
    else ``ray.init``'s own choice ($RAY_ADDRESS, or a local cluster on this machine's CPUs).
    ``max_in_flight``: most jobs submitted at once per model endpoint (default: Ray's CPUs are the only bound).
    Ctrl-C gives the jobs in flight ``grace`` seconds, cancels the rest and raises ``Cancelled``."""
    require_ray()
    import ray

    if not ray.is_initialized():
        ray.init(address=address)
    queues: dict[str, deque[tuple[Any, Any, Evaluation, Problem, int]]] = {}
    for evaluation in evaluations:
        config = job_config(evaluation)
        problems = {p.id: p for p in get_task(config.spec.task).problems(config.spec.split)}
        local = config.spec.backend == "local"
        task = ray.remote(plan_job).options(
            max_retries=MAX_RETRIES, retry_exceptions=False,
            num_cpus=(config.options.get("threads") or 1) if local else 1)
        ref = ray.put(config)  # once per evaluation, not once per job
        queue = queues.setdefault(endpoint(config), deque())
        queue.extend((task, ref, evaluation, problems[pid], run) for pid, run in evaluation.pending())
    in_flight: dict[Any, tuple[str, Evaluation, Problem, int, Any]] = {}
    running = {name: 0 for name in queues}

    def submit() -> None:
        for name, queue in queues.items():
            while queue and (max_in_flight is None or running[name] < max_in_flight):
                task, config, evaluation, problem, run = queue.popleft()
                claim = evaluation.claim(problem.id, run)  # held here, the run's writer, until the record is in
                if claim is None:  # another process sharing the run directory has it
                    continue
                in_flight[task.remote(config, problem.id, run)] = (name, evaluation, problem, run, claim)
                running[name] += 1

    def collect(refs: list[Any]) -> None:
        for ref in refs:
            name, evaluation, problem, run, claim = in_flight.pop(ref)
            running[name] -= 1
            with claim:
                try:
                    record = ray.get(ref)
                except ray.exceptions.RayError as e:  # its worker died after every retry: recorded, rerun on resume
                    record = evaluation.error_record(problem, run, f"{type(e).__name__}: {_last_line(e)}",
                                                     ended="infrastructure")
                evaluation.append(record)

    written = 0
    try:
        submit()
        while in_flight:
            refs = list(in_flight)
            ready, rest = ray.wait(refs, num_returns=1)
            if rest:  # everything else that is done by now, in the same round
                more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
                ready += more
            collect(ready)
            written += len(ready)
            submit()
    except KeyboardInterrupt:
        for evaluation in evaluations:
            evaluation.stop()
        ready, rest = ray.wait(list(in_flight), num_returns=len(in_flight), timeout=grace) if in_flight else ([], [])
        collect(ready)
        for ref in rest:
            ray.cancel(ref)
        for evaluation in evaluations:
            evaluation.close()
        not_run = len(rest) + sum(len(q) for q in queues.values())
        raise Cancelled(written + len(ready), not_run) from None
    return written


def _last_line(error: BaseException) -> str:
    """Ray's error text ends with what happened, after a banner and a traceback."""
    text = str(error).strip()
    return text.splitlines()[-1] if text else type(error).__name__
