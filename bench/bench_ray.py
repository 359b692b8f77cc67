"""The local executor against Ray on this machine: the same oracle-backend experiment, the same records.

The jobs are CPU-bound (the symbolic modules plan in Python): Hanoi's 80 four-disk test problems and CogEval's
valuepath problems, several runs each, every job a (problem, run) of ``map_agent.eval.runner.Evaluation``. Three
ways, in this order, in one process, on the same machine:

* ``local``: the default executor, one thread (``--concurrency 1``), the baseline of every ratio;
* ``local_threads``: the default executor with one thread per CPU (the GIL keeps CPU-bound threads from helping);
* ``ray``: a local Ray cluster with one worker per CPU. Its fixed start-up cost (``ray.init``, then one trivial
  task per CPU that imports map_agent, so every worker is up) is measured apart from the run.

Every way's records must equal the baseline's apart from times, or the script fails. Printed: the wall times, the
ratios to the baseline (``speedup`` counts Ray's start-up, ``speedup_warm`` does not) and the number of jobs of
this kind past which Ray pays for its start-up here (``break_even_jobs``).

    python bench/bench_ray.py                   # 160 Hanoi + 110 CogEval jobs
    python bench/bench_ray.py --hanoi-runs 1 --cogeval-runs 2 --limit 20
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from map_agent.config import MAPConfig
from map_agent.eval.records import untimed
from map_agent.eval.runner import Evaluation, RunSpec
from map_agent.task import get_task


def experiment(hanoi_runs: int, cogeval_runs: int, limit: int | None) -> list[RunSpec]:
    specs = []
    for task, split, runs in (("hanoi", "test4", hanoi_runs), ("cogeval", "valuepath", cogeval_runs)):
        ids = [p.id for p in get_task(task).problems(split)][:limit]
        specs.append(RunSpec(task=task, split=split, runs=runs, backend="oracle", model=None, config=MAPConfig(),
                             problem_ids=ids))
    return specs



def run(specs: list[RunSpec], out: Path, **executor: Any) -> tuple[float, dict]:
    """Every spec, one after the other as ``reproduce`` runs cells: wall seconds and the records by job."""
    records = {}
    started = time.perf_counter()
    for i, spec in enumerate(specs):
        evaluation = Evaluation(spec, out, f"run{i}", **executor)
        evaluation.run()
        records.update({(spec.task, r["problem_id"], r["run"]): untimed(r) for r in evaluation.records()})
    return time.perf_counter() - started, records


def warm_worker() -> int:
    import map_agent.eval.runner  # noqa: F401 (what a real job imports first)

    time.sleep(0.2)  # long enough that the CPUs' warm-up tasks land on different workers
    return os.getpid()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hanoi-runs", type=int, default=2)
    parser.add_argument("--cogeval-runs", type=int, default=10)
    parser.add_argument("--limit", type=int, help="the first K problems of each split")
    parser.add_argument("--cpus", type=int, default=os.cpu_count(), help="Ray's CPUs and the threads of local_threads")
    args = parser.parse_args()
    specs = experiment(args.hanoi_runs, args.cogeval_runs, args.limit)
    jobs = sum(len(s.problem_ids) * s.runs for s in specs)
    load_before = os.getloadavg()[0]  # the machine is shared: what else ran tells how far times can be read
    with tempfile.TemporaryDirectory() as tmp:
        local, baseline = run(specs, Path(tmp) / "local")
        threads, records = run(specs, Path(tmp) / "threads", concurrency=args.cpus)
        assert records == baseline, "local_threads records differ from local's"

        import ray

        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        started = time.perf_counter()
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        workers = set(ray.get([ray.remote(warm_worker).remote() for _ in range(args.cpus)]))
        startup = time.perf_counter() - started
        on_ray, records = run(specs, Path(tmp) / "ray", executor="ray")
        ray.shutdown()
        assert records == baseline, "ray records differ from local's"
    per_job_local, per_job_ray = local / jobs, on_ray / jobs
    print(json.dumps({
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "python": platform.python_version(), "ray": ray.__version__,
                    "ray_cpus": args.cpus, "ray_workers_warmed": len(workers),
                    "load_average_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)}},
        "experiment": [{"task": s.task, "split": s.split, "problems": len(s.problem_ids), "runs": s.runs}
                       for s in specs],
        "jobs": jobs,
        "records_equal": True,
        "seconds": {"local": round(local, 2), "local_threads": round(threads, 2), "ray_startup": round(startup, 2),
                    "ray_run": round(on_ray, 2), "ray_total": round(startup + on_ray, 2)},
        "ratio_to_local": {"local_threads": round(local / threads, 2), "speedup": round(local / (startup + on_ray), 2),
                           "speedup_warm": round(local / on_ray, 2)},
        "break_even_jobs": round(startup / (per_job_local - per_job_ray)) if per_job_local > per_job_ray else None,
    }, indent=2))


if __name__ == "__main__":
    main()
