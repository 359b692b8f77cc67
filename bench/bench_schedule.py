"""How much of a latency-bound model's time MAP's schedule hides, and what each module call costs besides the model.

A correct model sits behind a local OpenAI-compatible server on loopback, in its own process, answering every
module of a three-disk Hanoi problem from the task's ground truth (the oracle modules, which ``OracleChatModel``
uses too) after ``--latency`` seconds. The client is the real ``openai`` backend: HTTP, prompt rendering, schema,
parsing, graph. Measured, on the first ``--problems`` test3 problems:

* per schedule (``SCHEDULES``: the default, ``--speculative-predict``, and that with ``--speculative-orchestrator``):
  a plan's wall time with the Send fan-out (parallel) and one call at a time (``MAPAgent.plan(max_concurrency=1)``,
  LangGraph's standard run-config key), and beside it the ceiling the dependencies allow: module calls / module
  supersteps (a superstep waits for its slowest call). The model is built and its endpoint checked once per
  schedule, as an evaluation does; ``cpu_ms_per_module_call``: this process's CPU time per module call in the
  parallel plans (the server's CPU is not counted: it runs elsewhere);
* ``cached_rerun``: the same plans once more from a filled prompt cache, against the first, uncached run, each
  plan as a user runs it (the model built and the endpoint checked every time, an uncached request);
* ``cpu_per_module_call``: this process's CPU time per module call of the default schedule's parallel plans
  against a server that answers at once (``zero_latency_server_ms``: the client's own cost), against the
  ``--latency`` one (``latency_server_ms``), and against the one that answers at once while the client thread
  sleeps ``--latency`` after each reply (``zero_latency_client_sleep_ms``: the same code, made to wait as long).
  Waiting costs CPU that no code path spends: the caches and the core a process left while it slept are cold when
  it wakes; the last figure measures that on the same calls. Servers keep connections alive, as real model servers
  do; ``zero_latency_server_one_request_per_connection_ms`` is the instant server speaking HTTP/1.0, a TCP
  connection per request;
* ``eval``: ``Evaluation`` over ``--eval-problems`` problems at each ``--concurrency``, against the ideal: the
  wall time at concurrency 1 spread evenly over the workers (never less than the longest problem); and the
  CPU time per module call of the concurrency-1 run, whose model is built and checked once.

    python bench/bench_schedule.py [--latency 0.2] [--problems 4] [--eval-problems 16] [--concurrency 4 16]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import re
import sys
import tempfile
import time
from functools import cache
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the test suite's fake server

from fake_openai import FakeOpenAI, completion  # noqa: E402

MODEL = "hanoi-oracle"
#: the schedules compared: the default and the named options that ask calls ahead of the verdict they hang on
SCHEDULES = {"default": {}, "speculative_predict": {"speculative_predict": True},
             "speculative_predict_and_orchestrator": {"speculative_predict": True, "speculative_orchestrator": True}}


# -- the server: the oracle modules behind the chat-completions protocol ---------------------------------------
def _oracle_answer(body: dict[str, Any]) -> str:
    """The correct reply to one module request, read back from the prompt the client rendered: the module from the
    request line that closes the user message, its input from the labelled lines above it."""
    from map_agent.modules import LLM_MODULES, ORACLES
    from map_agent.modules.base import make_input
    from map_agent.tasks.hanoi import HanoiTask

    task = HanoiTask()
    text = str(body["messages"][-1].get("content") or "")
    lines = text.splitlines()
    asked = [(name, found) for name, cls in LLM_MODULES.items() if lines and (found := re.fullmatch(
        re.escape(cls.request).replace(r"\{n_actions\}", r"(\d+)").replace(r"\{n_subgoals\}", r"(\d+)"), lines[-1]))]
    if not asked:
        return '{"ok": true}'  # the endpoint check's probe
    (name, found), = asked
    fields = dict(line.split(": ", 1) for line in lines[:-1] if ": " in line)
    raw: dict[str, Any] = {}
    for label, key in (("Current state", "state"), ("State", "state"), ("Start state", "state"), ("Goal", "goal")):
        if label in fields:
            raw[key] = _state(fields[label])
    for label in ("Proposed action", "Action"):
        if label in fields:
            disk, source, target = re.fullmatch(r"Move (\d) from ([ABC]) to ([ABC])\.", fields[label]).groups()
            raw["action"] = {"disk": int(disk), "source": source, "target": target}
    if name == "Actor":
        raw["n_actions"] = int(found[1])
    if name == "TaskDecomposer":
        raw["n_subgoals"] = int(found[1])
    problem = _problem(sum(len(v) for v in raw["state"].values()))
    return ORACLES[name](task, problem).compute(make_input(name, task, raw)).model_dump_json()


def _state(text: str) -> dict[str, list[int]]:
    pegs = re.fullmatch(r"A = \[([\d, ]*)\], B = \[([\d, ]*)\], C = \[([\d, ]*)\]", text.strip())
    return {peg: [int(d) for d in pegs[i + 1].split(",") if d.strip()] for i, peg in enumerate("ABC")}


@cache
def _problem(disks: int):
    """A problem with this many disks (the Hanoi oracles read the state and goal they are given, not the
    problem's)."""
    from map_agent.tasks.hanoi import HanoiTask

    return HanoiTask().problems("all3" if disks == 3 else "test4")[0]


def serve(latency: float, port: multiprocessing.connection.Connection, keep_alive: bool = True) -> None:
    """The server process: answer until killed, each request ``latency`` seconds after it came, its answer computed
    within that time (so the requests of one superstep do not queue behind each other's oracle searches, as they
    would not on a model server that batches them); connections kept alive between requests, as real model servers
    keep them (``keep_alive=False``: one request per connection, HTTP/1.0)."""

    def respond(n: int, request: dict[str, Any]) -> tuple[int, str, bytes]:
        started = time.monotonic()
        reply = completion(_oracle_answer(request["body"]))
        time.sleep(max(0.0, latency - (time.monotonic() - started)))
        return 200, "application/json", reply

    with FakeOpenAI(respond=respond, keep_alive=keep_alive) as server:
        port.send(server.url)
        port.close()
        while True:
            time.sleep(3600)


# -- the client ----------------------------------------------------------------------------------------------
def plan(problem, url: str, options: dict[str, Any], *, sequential: bool = False, cache: Any = False,
         llm: Any = None) -> dict[str, Any]:
    """One ``MAPAgent.plan`` over the server under the MAP ``options``: on ``llm``, a model checked once for many
    plans as an evaluation's is, or else as a user runs it (the model built, the endpoint checked). Its module
    calls, module supersteps (every second LangGraph step), wall and CPU time."""
    from map_agent import MAPAgent, MAPConfig

    cpu, started = time.process_time(), time.perf_counter()
    agent = (MAPAgent(problem, llm=llm, config=MAPConfig(**options)) if llm is not None else
             MAPAgent(problem, backend="openai", model=MODEL, base_url=url, cache=cache, config=MAPConfig(**options)))
    result = agent.plan(problem.id, max_concurrency=1 if sequential else None)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    steps = agent.graph.get_state({"configurable": {"thread_id": problem.id}}).metadata["step"]
    return {"wall_s": wall, "cpu_s": cpu, "calls": result.usage.total.calls, "supersteps": steps // 2,
            "unused_calls": result.usage.total.unused, "solved": result.solved,
            "plan": [a.model_dump() for a in result.actions]}


def checked_model(problem, url: str) -> Any:
    """The chat model of ``url``, its endpoint and ``problem``'s prompts checked once, as an evaluation's is, for
    many plans (``plan(llm=...)``)."""
    from map_agent import MAPAgent

    first = MAPAgent(problem, backend="openai", model=MODEL, base_url=url, cache=False)
    first.prepare()
    return first.llm


def total(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out = {k: sum(r[k] for r in runs) for k in ("wall_s", "cpu_s", "calls", "supersteps", "unused_calls", "solved")}
    out["wall_s"], out["cpu_s"] = round(out["wall_s"], 2), round(out["cpu_s"], 2)
    return out


def schedule(problems, url: str, options: dict[str, Any], latency: float) -> dict[str, Any]:
    llm = checked_model(problems[0], url)
    parallel = [plan(p, url, options, llm=llm) for p in problems]
    sequential = [plan(p, url, options, sequential=True, llm=llm) for p in problems]
    par, seq = total(parallel), total(sequential)
    return {
        "parallel": par, "sequential": seq,
        "speedup": round(seq["wall_s"] / par["wall_s"], 3),
        "ceiling_calls_per_superstep": round(par["calls"] / par["supersteps"], 3),
        # a superstep has requests in flight for one latency: the rest of a parallel plan's wall time has none
        "share_of_parallel_wall_without_a_request": round(1 - par["supersteps"] * latency / par["wall_s"], 3),
        "same_plans_both_ways": [r["plan"] for r in parallel] == [r["plan"] for r in sequential],
        "cpu_ms_per_module_call": round(1000 * par["cpu_s"] / par["calls"], 2),
        "plans": [r["plan"] for r in parallel],
    }


def cached_rerun(problems, url: str) -> dict[str, Any]:
    from map_agent.llm.cache import DiskPromptCache

    with tempfile.TemporaryDirectory() as folder:
        cache = DiskPromptCache(folder)
        first = total([plan(p, url, {}, cache=cache) for p in problems])
        again = total([plan(p, url, {}, cache=cache) for p in problems])
        cache.close()
    return {"model_s": first["wall_s"], "cached_s": again["wall_s"], "speedup": round(first["wall_s"] /
                                                                                      again["wall_s"], 2),
            "cpu_ms_per_cached_call": round(1000 * again["cpu_s"] / again["calls"], 2)}


def cpu_per_module_call(problems, url: str, instant_url: str, closing_url: str, latency: float) -> dict[str, Any]:
    from map_agent.llm.http import BoundedTransport

    def cpu_ms(at: str) -> float:
        llm = checked_model(problems[0], at)
        runs = total([plan(p, at, {}, llm=llm) for p in problems])
        return round(1000 * runs["cpu_s"] / runs["calls"], 2)

    out = {"zero_latency_server_ms": cpu_ms(instant_url), "latency_server_ms": cpu_ms(url),
           "zero_latency_server_one_request_per_connection_ms": cpu_ms(closing_url)}
    handle = BoundedTransport.handle_request

    def waiting(self: BoundedTransport, request: Any) -> Any:
        response = handle(self, request)
        time.sleep(latency)
        return response

    BoundedTransport.handle_request = waiting  # type: ignore[method-assign]
    try:
        out["zero_latency_client_sleep_ms"] = cpu_ms(instant_url)
    finally:
        BoundedTransport.handle_request = handle  # type: ignore[method-assign]
    return out


def evaluation(problems, url: str, concurrencies: list[int]) -> dict[str, Any]:
    from map_agent import MAPConfig
    from map_agent.eval.runner import Evaluation, RunSpec

    spec = RunSpec(task="hanoi", split="test3", runs=1, backend="openai", model=MODEL, config=MAPConfig(),
                   problem_ids=[p.id for p in problems])
    out: dict[str, Any] = {"problems": len(problems)}
    with tempfile.TemporaryDirectory() as folder:
        walls: dict[int, float] = {}
        for c in sorted({1, *concurrencies}):
            run = Evaluation(spec, Path(folder), f"c{c}", concurrency=c, base_url=url, cache=False)
            run.prepare()
            cpu, started = time.process_time(), time.perf_counter()
            run.run()
            walls[c], cpu = time.perf_counter() - started, time.process_time() - cpu
            if c == 1:
                each = [r["wall_seconds"] for r in run.records()]
                calls = sum(r["usage"]["total"]["calls"] for r in run.records())
                out["cpu_ms_per_module_call_one_at_a_time"] = round(1000 * cpu / calls, 2)
        for c in concurrencies:
            ideal = max(walls[1] / c, max(each))
            out[f"concurrency_{c}"] = {"wall_s": round(walls[c], 2), "speedup": round(walls[1] / walls[c], 2),
                                       "ideal_speedup": round(walls[1] / ideal, 2),
                                       "of_ideal": round(ideal / walls[c], 3)}
        out["concurrency_1_wall_s"] = round(walls[1], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=float, default=0.2, help="seconds the server takes per request")
    ap.add_argument("--problems", type=int, default=4, help="test3 problems planned per measurement")
    ap.add_argument("--eval-problems", type=int, default=16, help="test3 problems of the evaluation (0: skip)")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[4, 16])
    args = ap.parse_args()
    from map_agent.tasks.hanoi import HanoiTask

    test3 = HanoiTask().problems("test3")
    servers, urls = [], []
    for latency, keep_alive in ((args.latency, True), (0.0, True), (0.0, False)):
        receive, send = multiprocessing.Pipe(duplex=False)
        servers.append(multiprocessing.get_context("spawn").Process(target=serve, args=(latency, send, keep_alive),
                                                                    daemon=True))
        servers[-1].start()
        urls.append(receive.recv())
    url, instant_url, closing_url = urls
    try:
        problems = test3[: args.problems]
        plan(problems[0], url, {})  # imports and first prompts: not part of any measurement
        runs = {name: schedule(problems, url, options, args.latency) for name, options in SCHEDULES.items()}
        report = {
            "benchmark": "schedule",
            "latency_s": args.latency,
            "problems": [p.id for p in problems],
            **{name: {k: v for k, v in run.items() if k != "plans"} for name, run in runs.items()},
            "same_plans_every_schedule": all(run["plans"] == runs["default"]["plans"] for run in runs.values()),
            "cached_rerun": cached_rerun(problems, url),
            "cpu_per_module_call": cpu_per_module_call(problems, url, instant_url, closing_url, args.latency),
        }
        if args.eval_problems:
            report["eval"] = evaluation(test3[: args.eval_problems], url, args.concurrency)
        report["machine"] = {"platform": platform.platform(), "python": platform.python_version(),
                             "cpus": os.cpu_count(), "load_average": os.getloadavg()}
        print(json.dumps(report, indent=2))
    finally:
        for server in servers:
            server.kill()


if __name__ == "__main__":
    main()
