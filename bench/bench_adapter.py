"""Module accuracy of the embedded model with and without a fine-tuned LoRA adapter, judged by the task's
ground truth (the module diagnostics of ``map_agent.eval.diagnostics``), on distilled examples.

Both models run through llama.cpp with the fine-tuning prompts (``MAPConfig(prompts="ft")``: one-line role, no
in-context examples, verdict-only replies) and each module's JSON-schema grammar; the baseline in the same run is
the same base model without the adapter. ``--part heldout`` asks about states the adapter never saw (Hanoi:
four-disk problems, out of distribution); ``--part train`` measures how well it fits what it was trained on.
Several ``--adapter`` are measured on the very same sample, so a new adapter is compared with the shipped one in
one run (``--no-baseline`` skips the base model).
``--config FIELD=VALUE`` sets a MAPConfig field for both models, so a named deviation (e.g. the Actor's
``actor_grammar=legal_source``) is measured on the same examples as a run without it.

    map-agent distill hanoi --split all3 --heldout test4 --out data/hanoi
    python bench/bench_adapter.py --data data/hanoi --adapter map-hanoi --part heldout --per-module 30
    map-agent distill hanoi --split world2 all3 world5 --heldout test4 --states all --out data/hanoi-235
    python bench/bench_adapter.py --data data/hanoi-235 --adapter map-hanoi models/new/adapter.gguf \
        --modules Predictor Actor --no-baseline
    python bench/bench_adapter.py --data data/hanoi --adapter map-hanoi --modules Actor Predictor \
        --config actor_grammar=legal_source --config predictor_grammar=configurations
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
from pathlib import Path

from map_agent.config import MAPConfig
from map_agent.eval.diagnostics import SCORES, diagnose_calls, metrics
from map_agent.learned.adapters import ADAPTERS, adapter_path
from map_agent.llm import make_chat_model
from map_agent.modules import build_modules
from map_agent.modules.base import make_input
from map_agent.task import MODULES, get_task


def sample(folder: Path, module: str, k: int, seed: int) -> list[dict]:
    lines = (folder / f"{module}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in random.Random(f"{seed}|{module}").sample(lines, min(k, len(lines)))]


def accuracy(lora: str | None, examples: dict[str, list[dict]], threads: int, settings: dict[str, str]) -> dict:
    llm = make_chat_model("local", lora_path=lora, threads=threads, cache=False, max_tokens=160)
    out, started = {}, time.perf_counter()
    for module, exs in examples.items():
        tally = None
        for ex in exs:
            task = get_task(ex["task"])
            problem = task.problem(ex["problem"])
            config = MAPConfig(prompts="ft", modules=dict.fromkeys(MODULES, "llm"), n_subgoals=1, **settings)
            built = build_modules(task, problem, config.resolve(task, problem), llm)[module]
            result = built(make_input(module, task, ex["input"]))
            call = {"module": module, "input": ex["input"], "failed": not result.ok,
                    "output": result.output.model_dump(mode="json") if result.ok else None}
            t = diagnose_calls(task, problem, [call])[module]
            tally = t if tally is None else tally.merge(t)
        out[module] = {"n": len(exs), SCORES[module]: metrics(module, tally)[SCORES[module]],
                       **{k: v for k, v in metrics(module, tally).items() if k != SCORES[module]}}
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="a `map-agent distill --out` folder")
    p.add_argument("--adapter", nargs="+", required=True,
                   help=f"GGUF adapter paths or shipped names ({', '.join(ADAPTERS)}), measured on the same sample")
    p.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                   help="also measure the base model without an adapter")
    p.add_argument("--part", choices=["heldout", "train"], default="heldout")
    p.add_argument("--per-module", type=int, default=30)
    p.add_argument("--modules", nargs="*", default=list(MODULES))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", action="append", default=[], metavar="FIELD=VALUE",
                   help="a MAPConfig field for both models, e.g. actor_grammar=legal_source")
    args = p.parse_args()
    settings = dict(spec.partition("=")[::2] for spec in args.config)
    examples = {m: sample(args.data / args.part, m, args.per_module, args.seed) for m in args.modules
                if (args.data / args.part / f"{m}.jsonl").exists()}
    report = {
        "what": f"module accuracy on {args.part} examples ({json.loads((args.data / 'manifest.json').read_text())})",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "threads": args.threads},
        "config": settings,
        **({"baseline": accuracy(None, examples, args.threads, settings)} if args.baseline else {}),
        "adapters": {name: accuracy(str(adapter_path(name)) if name in ADAPTERS else name, examples, args.threads,
                                    settings) for name in args.adapter},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
