"""``map-agent distill`` and ``map-agent train``: the command lines of the learning loop."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from platformdirs import user_cache_dir

from map_agent.task import TASKS, get_task


def _parser(prog: str, description: str, example: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=f"map-agent {prog}", description=description,
                                   epilog=f"example:\n  {example}",
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)


def distill_main(argv: list[str]) -> int:
    p = _parser("distill", "Write per-module chat JSONL labelled by the task's oracles: train on --split, hold out "
                           "--heldout.", "map-agent distill hanoi --split all3 --heldout test4 --out data/hanoi")
    p.add_argument("task", choices=sorted(TASKS))
    p.add_argument("--split", required=True, help="problems whose states make the training set")
    p.add_argument("--heldout", help="problems whose states make the held-out set (never trained on)")
    p.add_argument("--out", required=True, type=Path, help="folder for train/, heldout/ and manifest.json")
    p.add_argument("--noisy", type=int, default=4, help="epsilon-greedy rollouts per problem besides the optimal")
    p.add_argument("--epsilon", type=float, default=0.3, help="chance of a random action in a noisy rollout")
    p.add_argument("--limit", type=int, help="first K problems of each split only")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    from map_agent.learned.distill import distill

    task = get_task(args.task)
    for split in filter(None, (args.split, args.heldout)):
        if split not in task.splits():
            print(f"error: {task.name} has no split {split!r}; known: {', '.join(task.splits())}", file=sys.stderr)
            return 2
    if args.heldout == args.split:
        print("error: --heldout must differ from --split (held-out states are never trained on)", file=sys.stderr)
        return 2
    manifest = distill(task, args.split, args.out, heldout=args.heldout, seed=args.seed, noisy=args.noisy,
                       epsilon=args.epsilon, limit=args.limit)
    print(manifest.model_dump_json(indent=2))
    return 0


def train_main(argv: list[str]) -> int:
    from map_agent.learned.train import TrainConfig

    p = _parser("train", "LoRA SFT of the embedded model on distilled data, then a GGUF adapter for "
                         "`--backend local --lora adapter.gguf`. Resumes from --out.",
                "map-agent train data/hanoi --out models/map-hanoi --steps 300")
    p.add_argument("data", nargs="+", help="distilled data folders (map-agent distill --out)")
    p.add_argument("--out", required=True, type=Path, help="run folder: checkpoints, base model, adapter.gguf")
    p.add_argument("--modules", nargs="*", help="train these modules only")
    for name in ("steps", "batch_size", "learning_rate", "rank", "alpha", "max_tokens", "seed", "threads",
                 "save_every"):
        field = TrainConfig.model_fields[name]
        p.add_argument(f"--{name.replace('_', '-')}", type=type(field.default), default=field.default,
                       help=field.description)
    p.add_argument("--no-export", action="store_true", help="stop after training (no GGUF adapter)")
    p.add_argument("--converter-cache", type=Path, default=Path(user_cache_dir("map-agent")) / "llama-cpp-sdist",
                   help="where llama.cpp's converter (from the llama-cpp-python sdist) is kept")
    args = p.parse_args(argv)
    from map_agent.learned.train import export, train

    config = TrainConfig(data=args.data, modules=args.modules, **{
        k: getattr(args, k) for k in ("steps", "batch_size", "learning_rate", "rank", "alpha", "max_tokens", "seed",
                                      "threads", "save_every")})
    try:
        summary = train(config, args.out)
        if not args.no_export:
            summary["adapter"] = str(export(args.out, args.converter_cache))
    except (RuntimeError, ValueError, FileNotFoundError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0
