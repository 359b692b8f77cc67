"""``map-agent distill`` and ``map-agent train``: the command lines of the learning loop."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from platformdirs import user_cache_dir

from map_agent.options import add_options, int_in
from map_agent.task import TASKS, get_task


def distill_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("task", choices=sorted(TASKS))
    p.add_argument("--split", nargs="+", required=True,
                   help="splits whose problems' states make the training set (one or several)")
    p.add_argument("--heldout", nargs="+", help="splits whose states make the held-out set (never trained on)")
    p.add_argument("--states", choices=("rollouts", "all"), default="rollouts",
                   help="states of an optimal and --noisy rollouts per problem, or every reachable state with "
                        "every legal action (small worlds covered whole, e.g. hanoi world2 all3 world5)")
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
    for split in [*args.split, *(args.heldout or [])]:
        if split not in task.splits():
            raise ValueError(f"{task.name} has no split {split!r}; known: {', '.join(task.splits())}")
    if set(args.heldout or []) & set(args.split):
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
                           noisy=args.noisy, epsilon=args.epsilon, states=args.states, limit=args.limit, tick=tick)
        for line in lines.values():
            line.advance()  # the last problem of each part has finished
    print(manifest.model_dump_json(indent=2))
    return 0


#: TrainConfig fields set by their own flags (seed and threads are the shared options of the same names)
_TRAIN_FLAGS = {"epochs": "--epochs", "steps": "--steps", "batch_size": "--batch-size",
                "learning_rate": "--learning-rate", "rank": "--rank", "alpha": "--alpha",
                "max_tokens": "--max-example-tokens", "balance": "--balance", "loss": "--loss",
                "answer_weight": "--answer-weight", "target": "--target", "eval_every": "--eval-every",
                "eval_per_module": "--eval-per-module", "heldout_per_module": "--heldout-per-module",
                "save_every": "--save-every", "device": "--device"}


def train_arguments(p: argparse.ArgumentParser) -> None:
    from map_agent.learned.train import TrainConfig

    p.add_argument("data", nargs="+", help="distilled data folders (map-agent distill --out)")
    p.add_argument("--modules", nargs="*", help="train these modules only")
    for name, flag in _TRAIN_FLAGS.items():
        field = TrainConfig.model_fields[name]
        kind = {"choices": get_args(field.annotation)} if get_origin(field.annotation) is Literal else \
            {"type": int if field.default is None else type(field.default)}  # the one optional field is --steps
        p.add_argument(flag, dest=name, default=field.default, help=field.description, **kind)
    p.add_argument("--no-export", action="store_true", help="stop after training (no GGUF adapter)")
    p.add_argument("--converter-cache", type=Path, default=Path(user_cache_dir("map-agent")) / "llama-cpp-sdist",
                   help="where llama.cpp's converter (from the llama-cpp-python sdist) is kept")
    defaults = {name: TrainConfig.model_fields[name].default for name in ("seed", "threads")}
    add_options(p, "out", "seed", "threads", defaults={"out": None, **defaults})


def train_run(args: argparse.Namespace) -> int:
    """``map-agent train``: LoRA SFT of the embedded model on distilled data until it fits, then a GGUF adapter
    for ``--backend local --lora adapter.gguf`` beside its card (``card.json``); the same command resumes it."""
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
