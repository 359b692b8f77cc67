"""``--executor ray``: every job a Ray task, the records the local executor writes.

One local Ray cluster per session (``conftest.ray_cluster``: 2 CPUs, no dashboard, offline). The records of a Ray
run must equal the local executor's (same problems, plans, metrics, module calls; only times differ), a worker
killed mid-run must be retried by Ray with nothing lost or written twice, a rerun must run nothing, the per-endpoint
bound must hold, and no API key or cache password may enter what Ray ships to workers.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from langchain_openai import ChatOpenAI

from map_agent import cli
from map_agent.config import MAPConfig
from map_agent.eval import executors
from map_agent.eval.records import untimed
from map_agent.eval.runner import Evaluation, RunSpec
from map_agent.modules import OracleChatModel


def jobs(run_dir: Path) -> dict[tuple[str, int], dict[str, Any]]:
    """Each (problem, run) -> its record without times; fails if a job was written twice."""
    lines = [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines() if line.strip()]
    by_job = {(r["problem_id"], r["run"]): untimed(r) for r in lines}
    assert len(by_job) == len(lines), "a job was written twice"
    return by_job


def spec(task: str, split: str, ids: list[str], runs: int, backend: str = "oracle") -> RunSpec:
    return RunSpec(task=task, split=split, runs=runs, backend=backend, model=None, config=MAPConfig(),
                   problem_ids=ids)


def both(tmp_path: Path, run_spec: RunSpec, **options: Any) -> tuple[dict, dict]:
    """The same evaluation with the local and the Ray executor (same run id, so the same thread ids)."""
    local = Evaluation(run_spec, tmp_path / "local", "r", **options).run()
    on_ray = Evaluation(run_spec, tmp_path / "ray", "r", executor="ray", **options).run()
    return local, on_ray


@pytest.mark.slow
@pytest.mark.parametrize("run_spec", [
    spec("hanoi", "test3", ["1", "2", "4", "5"], runs=2),
    spec("cogeval", "detour", ["detour-2", "detour-3"], runs=1),  # two phases per problem
], ids=["hanoi", "cogeval-detour"])
def test_oracle_backend_records_equal_the_local_executors(ray_cluster, tmp_path, run_spec):
    local, on_ray = both(tmp_path, run_spec)
    assert jobs(tmp_path / "ray" / "r") == jobs(tmp_path / "local" / "r")
    assert len(jobs(tmp_path / "ray" / "r")) == len(run_spec.problem_ids) * run_spec.runs
    assert untimed(on_ray) == untimed(local)


@pytest.mark.slow
def test_scripted_ground_truth_model_records_equal_the_local_executors(ray_cluster, tmp_path):
    """The LLM path (prompts, parsing, usage counts) with the scripted ground-truth chat model on the workers."""
    run_spec = spec("hanoi", "test3", ["1", "2", "4"], runs=1, backend="scripted")
    local, on_ray = both(tmp_path, run_spec, llm=OracleChatModel(), cache=False)
    assert jobs(tmp_path / "ray" / "r") == jobs(tmp_path / "local" / "r")
    assert on_ray["usage"]["model_calls"] == local["usage"]["model_calls"] > 0
    assert on_ray["pct_solved"]["mean"] == 100.0


class DiesOnce(OracleChatModel):
    """The ground-truth model, except that the first call anywhere in the cluster kills its own worker process
    (SIGKILL, as the kernel's OOM killer or a lost node would): only Ray's retry can finish that job."""

    marker: str

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.slow
def test_a_killed_worker_is_retried_nothing_lost_or_duplicated_and_a_rerun_runs_nothing(ray_cluster, tmp_path):
    run_spec = spec("hanoi", "test3", ["1", "2", "4"], runs=2, backend="scripted")
    marker = tmp_path / "killed"
    Evaluation(run_spec, tmp_path / "local", "r", llm=OracleChatModel(), cache=False).run()
    summary = Evaluation(run_spec, tmp_path / "ray", "r", executor="ray", llm=DiesOnce(marker=str(marker)),
                         cache=False).run()
    assert marker.exists() and int(marker.read_text()) != os.getpid()  # a worker, not this process, was killed
    assert jobs(tmp_path / "ray" / "r") == jobs(tmp_path / "local" / "r")  # every job once, none lost
    assert summary["errors"] == 0 and summary["records"] == 6

    records = (tmp_path / "ray" / "r" / "records.jsonl").read_bytes()
    again = Evaluation(run_spec, tmp_path / "ray", "r", executor="ray", llm=DiesOnce(marker=str(marker)),
                       cache=False)
    assert again.pending() == []
    assert untimed(again.run()) == untimed(summary)
    assert (tmp_path / "ray" / "r" / "records.jsonl").read_bytes() == records  # nothing ran, nothing written


def stamps_file(run_id: str) -> Path:
    return Path(tempfile.gettempdir()) / f"{run_id}.stamps"


def timed_plan_job(config, problem_id, run):
    """``executors.plan_job``, noting when each job ran (in a file named after the run) and lasting >= 0.3 s."""
    started = time.time()
    record = executors.plan_job(config, problem_id, run)
    time.sleep(max(0.0, 0.3 - (time.time() - started)))
    with stamps_file(config.run_id).open("a") as f:
        f.write(f"{started} {time.time()}\n")
    return record


@pytest.mark.slow
def test_jobs_in_flight_stay_within_the_bound(ray_cluster, tmp_path, monkeypatch):
    """Two CPUs would run two jobs at once; ``max_in_flight=1`` per endpoint runs them one after the other."""
    monkeypatch.setattr(executors, "plan_job", timed_plan_job)  # what the driver submits
    run_id = f"bound-{os.getpid()}-{time.time_ns()}"
    try:
        Evaluation(spec("hanoi", "test3", ["1", "2", "4", "5"], runs=1), tmp_path, run_id, executor="ray",
                   max_in_flight=1).run()
        spans = sorted(tuple(map(float, line.split())) for line in stamps_file(run_id).read_text().splitlines())
    finally:
        stamps_file(run_id).unlink(missing_ok=True)
    assert len(spans) == 4
    assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:], strict=False)), spans


def test_without_ray_installed_the_executor_fails_in_one_line(monkeypatch, tmp_path, capsys):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else find_spec(name, *a))
    code = cli.main(["eval", "hanoi", "--backend", "oracle", "--limit", "1", "--executor", "ray",
                     "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "pip install 'map-agent[ray]'" in err
    assert not list(tmp_path.iterdir())  # failed before anything was written


def test_no_api_key_or_cache_password_reaches_the_workers(monkeypatch, tmp_path):
    import ray.cloudpickle

    secret, password = "sk-test-secret-key-0123456789", "redis-pass-9876"
    monkeypatch.setenv("MY_KEY", secret)
    url = f"redis://:{password}@127.0.0.1:6390/0"
    run_spec = spec("hanoi", "test3", ["1"], runs=1, backend="openai")
    evaluation = Evaluation(run_spec, tmp_path, "r", executor="ray", base_url="http://127.0.0.1:9/v1",
                            api_key_env="MY_KEY", cache=url)
    with pytest.raises(ValueError, match="MAP_AGENT_CACHE_URL"):  # a password workers could not read
        executors.job_config(evaluation)
    monkeypatch.setenv("MAP_AGENT_CACHE_URL", url)  # each worker's environment holds it: the URL travels without
    shipped = ray.cloudpickle.dumps(executors.job_config(evaluation))
    assert secret.encode() not in shipped and password.encode() not in shipped
    assert b"MY_KEY" in shipped and b"127.0.0.1:6390" in shipped  # the variable's name and the server travel
    with pytest.raises(ValueError, match="each worker reads it from its own environment"):
        executors.job_config(Evaluation(run_spec, tmp_path, "r", executor="ray", api_key=secret))
    holding_a_key = ChatOpenAI(model="m", api_key=secret, base_url="http://127.0.0.1:9/v1")
    with pytest.raises(ValueError, match="holding an API key"):
        executors.job_config(Evaluation(run_spec, tmp_path, "r", executor="ray", llm=holding_a_key))
    assert not pickle.dumps(run_spec).count(secret.encode())


@pytest.mark.slow
def test_eval_and_reproduce_commands_on_ray(ray_cluster, tmp_path):
    argv = ["eval", "hanoi", "--split", "test3", "--backend", "oracle", "--limit", "2", "--runs", "1",
            "--executor", "ray", "--max-in-flight", "2", "--run-id", "r"]
    assert cli.main([*argv, "--out", str(tmp_path / "eval")]) == 0
    assert len(jobs(tmp_path / "eval" / "r")) == 2
    smoke = ["reproduce", "smoke", "--backend", "oracle", "--limit", "2", "--runs", "1"]
    assert cli.main([*smoke, "--out", str(tmp_path / "local")]) == 0
    assert cli.main([*smoke, "--executor", "ray", "--out", str(tmp_path / "ray")]) == 0
    cells = {where: json.loads((tmp_path / where / "smoke" / "experiment.json").read_text())["cells"]
             for where in ("local", "ray")}
    assert cells["ray"] == cells["local"] and all(c["status"] == "done" for c in cells["ray"].values())
    for cell in cells["ray"].values():
        assert (jobs(tmp_path / "ray" / "smoke" / "runs" / cell["run_id"])
                == jobs(tmp_path / "local" / "smoke" / "runs" / cell["run_id"]))


@pytest.mark.slow
@pytest.mark.real_model
def test_ray_workers_share_a_redis_cache_in_front_of_a_real_server(ray_cluster, redis_url, llama_server, tmp_path):
    """llama-cpp-python's server behind the workers, Redis between them: the rerun (another run id, so every job
    runs again) is served from Redis but for the replies that failed to parse, which are never stored."""
    from map_agent.llm.redis_cache import RedisPromptCache

    RedisPromptCache(redis_url).clear()  # this test's entries only
    argv = ["eval", "hanoi", "--split", "test3", "--limit", "1", "--runs", "1", "--backend", "openai",
            "--base-url", llama_server.url, "--model", "smollm2", "--json-schema", "json_object",
            "--max-actions", "1", "--monitor-retries", "0", "--parse-retries", "0", "--max-tokens", "128",
            "--no-search", "--executor", "ray", "--cache", redis_url, "--out", str(tmp_path)]
    assert cli.main([*argv, "--run-id", "a"]) == 0
    assert cli.main([*argv, "--run-id", "b"]) == 0
    assert llama_server.alive()
    (a,), (b,) = (list(jobs(tmp_path / run).values()) for run in ("a", "b"))
    unparsed = sum(1 for call in a["calls"] for reply in call.get("replies", []) if reply.get("error"))
    assert a["usage"]["total"]["model_calls"] > unparsed  # some replies parsed, and were stored
    assert b["usage"]["total"]["model_calls"] == unparsed
    assert b["usage"]["total"]["cache_hits"] == (a["usage"]["total"]["model_calls"] - unparsed
                                                 + a["usage"]["total"]["cache_hits"])
    assert b["plan"] == a["plan"]


@pytest.mark.slow
def test_ctrl_c_on_a_cluster_run_summarises_cancels_and_resumes(ray_cluster, tmp_path):
    """A second process joins the session's cluster (``--ray-address``), is interrupted after its first record,
    and resumed with the command it prints: every job once, none failed, nothing sent after the stop."""
    from fake_openai import FakeOpenAI
    from test_sigint import record_lines, resume_command, start, wait_until

    address = ray_cluster.get_runtime_context().gcs_address
    with FakeOpenAI(delay=0.4) as server:
        proc = start(["eval", "hanoi", "--split", "test3", "--limit", "6", "--runs", "1", "--backend", "openai",
                      "--base-url", server.url, "--out", str(tmp_path), "--run-id", "r", "--grace", "2",
                      "--parse-retries", "0", "--monitor-retries", "0", "--no-cache",
                      "--executor", "ray", "--ray-address", address, "--max-in-flight", "2"], tmp_path)
        records = tmp_path / "r" / "records.jsonl"
        wait_until(lambda: len(record_lines(records)) >= 1 or proc.poll() is not None)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        finished = record_lines(records)
        assert 1 <= len(finished) < 6 and not any(r.get("error") for r in finished), finished
        assert json.loads((tmp_path / "r" / "summary.json").read_text())["records"] == len(finished)
        time.sleep(1.0)
        asked = len(server.requests)
        time.sleep(1.0)
        assert len(server.requests) == asked  # the cancelled jobs send nothing more
        resumed = subprocess.run(resume_command(err), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert len(jobs(tmp_path / "r")) == 6 and not any(r.get("error") for r in jobs(tmp_path / "r").values())
