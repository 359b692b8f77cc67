"""The embedded model's first call per MAP module, and a short plan: baseline vs the ways not to read it all again.

A module's first call reads its whole prompt into a fresh llama.cpp context (Hanoi: 443-1,231 tokens, of which all
but the last user message -- 387-1,176 tokens -- is the same on every call of that module). Variants, each a fresh
``LocalChatModel`` (one thread, temperature 0, the JSON-schema grammar), all in the same run:

* ``baseline``: today's settings before this benchmark -- every first call reads its whole prompt;
* ``a_shared_prefix``: a new context copies the prefix it shares with a live context of another module (the task
  description, 175 tokens on Hanoi) and reads the rest;
* ``ab_first_run``: the adopted defaults on a machine's first run: (a), then the prefix saved as llama.cpp state;
* ``b_saved_states``: the states saved by ``ab_first_run`` loaded, as every later process does;
* ``c_batch_threads``: the baseline with prompt processing on every core this process may use
  (``n_threads_batch`` = ``len(os.sched_getaffinity(0))``; generation keeps one thread).

First calls are interleaved -- for each module, every variant in turn -- so load from other jobs hits them alike;
the machine is shared, so read the ratios, measured in the same run, not the seconds. Per call: wall latency, time
to first token (latency minus llama.cpp's own token-generation time), the process's CPU seconds and the prompt
tokens llama.cpp actually evaluated. The replies must be identical across variants (``answers_identical``).
First calls run with a 2,048-token context (six contexts per variant stay alive; the window's size does not change
the work, which is over the tokens held). Then one short plan (``--plan-actions`` steps, 1 Monitor re-ask) per
adopted setting: the baseline, the first run (empty state directory) and a later run (the states it saved).
Every variant runs the model with the GGUF's own RoPE settings (before, the first context got ChatLlamaCpp's
defaults: a correctness fix that costs no time). About 15 minutes, 480 CPU-seconds, on a shared 2-core machine
(SmolLM2 reads ~110 prompt tokens per CPU-second there); ``--modules`` and ``--plan-actions 0`` cut it.

    python bench/bench_embedded.py [--repeats 1] [--plan-actions 1] [--modules Actor Predictor]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import llama_cpp

from map_agent import MAPAgent, MAPConfig
from map_agent.llm import make_chat_model
from map_agent.modules import LLM_MODULES
from map_agent.modules.base import make_input
from map_agent.task import get_task
from map_agent.tasks import hanoi

VARIANTS = ("baseline", "a_shared_prefix", "ab_first_run", "b_saved_states", "c_batch_threads")
#: per variant: (keeps states, copies shared prefixes, prompt-processing threads: None = generation's)
SETTINGS = {"baseline": (False, False, None), "a_shared_prefix": (False, True, None),
            "ab_first_run": (True, True, None), "b_saved_states": (True, False, None),
            "c_batch_threads": (False, False, len(os.sched_getaffinity(0)))}


def chat_model(variant: str, state_dir: Path, n_ctx: int) -> object:
    keep, share, batch_threads = SETTINGS[variant]
    llm = make_chat_model("local", threads=1, cache=False, n_ctx=n_ctx, state_dir=state_dir if keep else False,
                          share_prefixes=share)
    if batch_threads:  # the first context is already made: set it there, and for the contexts still to come
        llm.model_kwargs = {**llm.model_kwargs, "n_threads_batch": batch_threads}
        llama_cpp.llama_set_n_threads(llm.client.ctx, llm.n_threads, batch_threads)
    return llm


def module_inputs(task, problem) -> dict[str, dict]:
    """One input per module on the problem's start state, with its first legal move."""
    state, goal = task.start(problem), task.goal(problem)
    action = task.legal_actions(state, problem)[0]
    state, goal, action = (x.model_dump() if hasattr(x, "model_dump") else x for x in (state, goal, action))
    return {"TaskDecomposer": {"state": state, "goal": goal, "n_subgoals": 1},
            "Actor": {"state": state, "goal": goal, "n_actions": 2},
            "Monitor": {"state": state, "action": action}, "Predictor": {"state": state, "action": action},
            "Evaluator": {"state": state, "goal": goal}, "Orchestrator": {"state": state, "goal": goal}}


def first_call(llm, task, problem, name: str, raw: dict) -> dict:
    module = LLM_MODULES[name](task, problem, llm)
    inp = make_input(name, task, raw)
    wall, cpu = time.perf_counter(), time.process_time()
    result = module(inp)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    perf = llama_cpp.llama_perf_context(next(reversed(llm._contexts.values())).ctx)
    return {"latency_s": round(wall, 3), "ttft_s": round(wall - perf.t_eval_ms / 1000, 3), "cpu_s": round(cpu, 3),
            "prompt_tokens": result.record.input_tokens, "prompt_tokens_evaluated": perf.n_p_eval,
            "reply": result.record.replies[0].text if result.record.replies else None}


def first_calls(repeats: int, n_ctx: int, modules: list[str] | None) -> dict:
    task = get_task("hanoi")
    problem = task.problems("test3")[0]
    inputs = {m: raw for m, raw in module_inputs(task, problem).items() if not modules or m in modules}
    calls = {v: {m: [] for m in inputs} for v in VARIANTS}
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as states:
            models = {v: chat_model(v, Path(states), n_ctx) for v in VARIANTS}
            for name, raw in inputs.items():
                for v in VARIANTS:  # ab_first_run saves what b_saved_states then loads
                    calls[v][name].append(first_call(models[v], task, problem, name, raw))
            del models
    out = {}
    for v in VARIANTS:
        per_module = {m: {k: statistics.median(c[k] for c in runs) for k in
                          ("latency_s", "ttft_s", "cpu_s", "prompt_tokens_evaluated")} for m, runs in calls[v].items()}
        out[v] = {"per_module": per_module,
                  **{f"total_{k}": round(sum(p[k] for p in per_module.values()), 3)
                     for k in ("latency_s", "ttft_s", "cpu_s", "prompt_tokens_evaluated")}}
    base = out["baseline"]
    ratios = {v: {k: round(base[f"total_{k}"] / out[v][f"total_{k}"], 2) for k in ("latency_s", "ttft_s", "cpu_s")}
              for v in VARIANTS[1:]}
    replies = {v: [c["reply"] for m in inputs for c in calls[v][m]] for v in VARIANTS}
    return {"problem": problem.id, "modules": list(inputs), "repeats": repeats, "n_ctx": n_ctx,
            "prompt_tokens": {m: calls["baseline"][m][0]["prompt_tokens"] for m in inputs},
            "variants": out, "speedup_vs_baseline": ratios,
            "answers_identical": {v: replies[v] == replies["baseline"] for v in VARIANTS[1:]},
            "baseline_replies": {m: calls["baseline"][m][0]["reply"] for m in inputs}}


def plans(actions: int) -> dict:
    """One short plan per adopted setting, the later run loading what the first run saved."""
    config = MAPConfig(max_actions=actions, monitor_retries=1)
    out = {}
    with tempfile.TemporaryDirectory() as states:
        for label, state_dir, share in (("baseline", False, False), ("ab_first_run", states, True),
                                        ("b_later_run", states, True)):
            llm = make_chat_model("local", threads=1, cache=False, state_dir=state_dir, share_prefixes=share)
            wall, cpu = time.perf_counter(), time.process_time()
            result = MAPAgent(hanoi.problem(10), llm=llm, config=config, cache=False).plan()
            u = result.usage.total
            out[label] = {"wall_s": round(time.perf_counter() - wall, 2), "cpu_s": round(time.process_time() - cpu, 2),
                          "model_calls": u.model_calls, "input_tokens": u.input_tokens, "status": result.status,
                          "actions": [a.model_dump() for a in result.actions], "load_average": os.getloadavg()}
            del llm
    base = out["baseline"]
    return {"problem": 10, "max_actions": actions, "runs": out,
            "speedup_vs_baseline": {k: {"wall": round(base["wall_s"] / r["wall_s"], 2),
                                        "cpu": round(base["cpu_s"] / r["cpu_s"], 2)} for k, r in out.items()
                                    if k != "baseline"},
            "same_plan": all((r["status"], r["actions"]) == (base["status"], base["actions"]) for r in out.values())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=1, help="rounds of first calls (fresh models each)")
    ap.add_argument("--plan-actions", type=int, default=1, help="steps of the short plan (0: no plan)")
    ap.add_argument("--n-ctx", type=int, default=2048, help="context window of the first-call models")
    ap.add_argument("--modules", nargs="*", help="first calls of these modules only (default: all six)")
    args = ap.parse_args()
    started, load = time.perf_counter(), os.getloadavg()
    report = {"benchmark": "embedded_first_call",
              "baseline": "every first call reads its whole prompt (the settings before state_dir and "
                          "share_prefixes); speedups are baseline / variant, measured in the same run",
              "first_calls": first_calls(args.repeats, args.n_ctx, args.modules)}
    if args.plan_actions:
        report["plan"] = plans(args.plan_actions)
    report["machine"] = {"platform": platform.platform(), "python": platform.python_version(),
                         "cpus": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0)),
                         "llama_cpp_python": llama_cpp.__version__,
                         "load_average_before": load, "load_average_after": os.getloadavg()}
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
