"""Model calls per problem and framework overhead per module call, on the 24 three-disk Hanoi test problems.

The LLM path runs at full size -- prompt building, the chat-model call, JSON parsing, graph state, reducers,
Send fan-out, checkpoints -- with ``OracleChatModel``, a scripted chat model that answers every module correctly
from the task's ground truth. "Overhead" is wall time outside the model call, per module call. The baseline in
the same run is the same plans with the symbolic oracle modules (no prompts, no parsing): the ratio shows what
the LLM path adds on top of the bare state machine.

    python bench/bench_map_overhead.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

from map_agent import MAPAgent
from map_agent.modules import OracleChatModel
from map_agent.tasks.hanoi import HanoiTask


def run(problems, **agent_kwargs) -> dict:
    wall = model = 0.0
    calls = model_calls = 0
    per_problem = []
    solved = 0
    for p in problems:
        started = time.perf_counter()
        result = MAPAgent(p, cache=False, **agent_kwargs).plan()
        wall += time.perf_counter() - started
        u = result.usage.total
        calls += u.calls
        model_calls += u.model_calls
        model += u.model_seconds
        per_problem.append(u.model_calls)
        solved += result.solved
    return {"wall_s": wall, "model_s": model, "module_calls": calls, "model_calls": model_calls,
            "model_calls_per_problem": per_problem, "solved": solved,
            "overhead_ms_per_module_call": 1000 * (wall - model) / calls}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    problems = HanoiTask().problems("test3")
    llm_runs = [run(problems, llm=OracleChatModel()) for _ in range(args.repeats)]
    oracle_runs = [run(problems, backend="oracle") for _ in range(args.repeats)]
    llm_overhead = statistics.median(r["overhead_ms_per_module_call"] for r in llm_runs)
    oracle_overhead = statistics.median(r["overhead_ms_per_module_call"] for r in oracle_runs)
    calls = llm_runs[0]["model_calls_per_problem"]
    print(json.dumps({
        "benchmark": "map_overhead",
        "problems": len(problems),
        "repeats": args.repeats,
        "solved": llm_runs[0]["solved"],
        "model_calls_per_problem": {"mean": statistics.fmean(calls), "min": min(calls), "max": max(calls),
                                    "total": sum(calls)},
        "llm_path_overhead_ms_per_module_call": round(llm_overhead, 3),
        "baseline": "same plans with symbolic oracle modules (no prompting/parsing), same graph",
        "baseline_overhead_ms_per_module_call": round(oracle_overhead, 3),
        "ratio_llm_path_to_baseline": round(llm_overhead / oracle_overhead, 2),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
    }, indent=2))


if __name__ == "__main__":
    main()
