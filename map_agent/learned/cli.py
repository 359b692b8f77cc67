"""``map-agent distill`` and ``map-agent train``: the command lines of the learning loop."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from platformdirs import user_cache_dir

from map_agent.options import add_options, int_in
from map_agent.task import TASKS, get_task


def distill_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("task", choices=sorted(TASKS))
    p.add_argument("--split", required=True, help="problems whose states make the training set")
    p.add_argument("--heldout", help="problems whose states make the held-out set (never trained on)")
    p.add_argument("--noisy", type=int_in(0, 10_000), default=4,
                   help="epsilon-greedy rollouts per problem besides the optimal")
    p.add_argument("--epsilon", type=float, default=0.3, help="chance of a random action in a noisy rollout")
    add_options(p, "out", "limit", "seed", defaults={"out": None, "seed": 0})


def distill_run(args: argparse.Namespace) -> int:
    """``map-agent distill``: per-module training data, labelled by the task's oracles."""
    from map_agent.learned.distill import distill

    if args.out is None:
        raise ValueError("--out: name the folder for train/, heldout/ and manifest.json")
    task = get_task(args.task)
    for split in filter(None, (args.split, args.heldout)):
        if split not in task.splits():
            raise ValueError(f"{task.name} has no split {split!r}; known: {', '.join(task.splits())}")
    if args.heldout == args.split:
        raise ValueError("--heldout must differ from --split (held-out states are never trained on)")
    from map_agent.progress import progress

    with progress() as display:
        lines: dict[str, Any] = {}

        def tick(part: str, total: int) -> None:
            if part not in lines:
                lines[part] = display.line(f"{part} problems", total)
            else:
                lines[part].advance()

        manifest = distill(task, args.split, Path(args.out), heldout=args.heldout, seed=args.seed,
                           noisy=args.noisy, epsilon=args.epsilon, limit=args.limit, tick=tick)
        for line in lines.values():
            line.advance()  # the last problem of each part has finished
    print(manifest.model_dump_json(indent=2))
    return 0


#: TrainConfig fields set by their own flags (seed and threads are the shared options of the same names)
_TRAIN_FLAGS = {"steps": "--steps", "batch_size": "--batch-size", "learning_rate": "--learning-rate",
                "rank": "--rank", "alpha": "--alpha", "max_tokens": "--max-example-tokens",
                "save_every": "--save-every"}


def train_arguments(p: argparse.ArgumentParser) -> None:
    from map_agent.learned.train import TrainConfig

    p.add_argument("data", nargs="+", help="distilled data folders (map-agent distill --out)")
    p.add_argument("--modules", nargs="*", help="train these modules only")
    for name, flag in _TRAIN_FLAGS.items():
        field = TrainConfig.model_fields[name]
        p.add_argument(flag, dest=name, type=type(field.default), default=field.default, help=field.description)
    p.add_argument("--no-export", action="store_true", help="stop after training (no GGUF adapter)")
    p.add_argument("--converter-cache", type=Path, default=Path(user_cache_dir("map-agent")) / "llama-cpp-sdist",
                   help="where llama.cpp's converter (from the llama-cpp-python sdist) is kept")
    defaults = {name: TrainConfig.model_fields[name].default for name in ("seed", "threads")}
    add_options(p, "out", "seed", "threads", defaults={"out": None, **defaults})


def train_run(args: argparse.Namespace) -> int:
    """``map-agent train``: LoRA SFT of the embedded model on distilled data, then a GGUF adapter for
    ``--backend local --lora adapter.gguf``; resumes from --out."""
    from map_agent.learned.train import TrainConfig, export, train

    if args.out is None:
        raise ValueError("--out: name the run folder (checkpoints, base model, adapter.gguf)")
    config = TrainConfig(data=args.data, modules=args.modules, seed=args.seed, threads=args.threads,
                         **{name: getattr(args, name) for name in _TRAIN_FLAGS})
    out = Path(args.out)
    try:
        summary = train(config, out)
        if not args.no_export:
            summary["adapter"] = str(export(out, args.converter_cache))
    except RuntimeError as e:  # the [train] extra or the converter is missing: a setup problem, said in one line
        raise ValueError(str(e)) from None
    print(json.dumps(summary, indent=2))
    return 0
