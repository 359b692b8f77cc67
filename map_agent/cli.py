"""The ``map-agent`` command line.

    map-agent tasks                                   # tasks and their splits
    map-agent plan hanoi --problem 7 [--backend local|openai|oracle] [--model M]
    map-agent eval hanoi --split test3 --runs 5 --concurrency 4 [--run-id ID]
    map-agent eval maze-code --test-set 1             # the value-iteration code-generation evaluation
    map-agent eval text-to-pddl                       # the Planetarium text-to-PDDL evaluation
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import uuid
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from map_agent.agent import MAPAgent
from map_agent.config import MAPConfig
from map_agent.llm import BACKENDS
from map_agent.task import MODULES, TASKS, get_task

#: evaluations that are not MAP plans: name -> "module:function(argv) -> exit code"
EVALUATIONS = {
    "maze-code": "map_agent.eval.maze_code:cli_main",
    "text-to-pddl": "map_agent.eval.text_to_pddl:cli_main",
}

console = Console(stderr=True)


def _config_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("MAP configuration (defaults: the paper's, per task)")
    g.add_argument("--backend", choices=sorted(BACKENDS), default="local")
    g.add_argument("--model", help="model name (openai) or GGUF path (local)")
    g.add_argument("--base-url", help="OpenAI-compatible endpoint (else MAP_AGENT_BASE_URL / OPENAI_BASE_URL)")
    g.add_argument("--json-schema", action="store_true", help="send the output JSON schema (openai backend)")
    g.add_argument("--threads", type=int, help="llama.cpp threads (local backend)")
    g.add_argument("--lora", help="LoRA adapter for the local model")
    g.add_argument("--cache-dir", help="prompt cache directory (default: user cache dir)")
    g.add_argument("--no-cache", action="store_true", help="bypass the prompt cache")
    g.add_argument("--branches", "-B", type=int, default=2)
    g.add_argument("--layers", "-L", type=int, default=2)
    g.add_argument("--max-actions", "-N", type=int, help="action budget N (default: the problem's)")
    g.add_argument("--search", action=argparse.BooleanOptionalAction, default=None, help="tree search")
    g.add_argument("--subgoals", type=int, help="TaskDecomposer subgoals K")
    g.add_argument("--no-monitor", action="store_true", help="ablation: every proposal is accepted")
    g.add_argument("--no-decomposer", action="store_true", help="ablation: pursue the final goal only")
    g.add_argument("--module", action="append", default=[], metavar="NAME=llm|oracle|off",
                   help=f"per-module implementation; modules: {', '.join(MODULES)}")


def _config(args: argparse.Namespace) -> MAPConfig:
    modules: dict[str, str] = {}
    for spec in args.module:
        name, _, impl = spec.partition("=")
        modules[name] = impl
    if args.no_monitor:
        modules["Monitor"] = "off"
    if args.no_decomposer:
        modules["TaskDecomposer"] = "off"
    return MAPConfig(branches=args.branches, layers=args.layers, max_actions=args.max_actions, search=args.search,
                     n_subgoals=args.subgoals, modules=modules)


def _agent_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {"cache": False if args.no_cache else args.cache_dir}
    if args.backend == "local":
        options.update(threads=args.threads, lora_path=args.lora)
    elif args.backend == "openai":
        options.update(base_url=args.base_url, json_schema=args.json_schema)
    return options


def cmd_tasks(args: argparse.Namespace) -> int:
    for name in TASKS:
        try:
            task = get_task(name)
        except ImportError as e:
            console.print(f"[red]{name}[/]: unavailable ({e})")
            continue
        console.print(f"[bold]{name}[/]")
        for split, text in task.splits().items():
            console.print(f"  {split:<22} {text}")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    task = get_task(args.task)
    problem = task.problem(args.problem, split=args.split)
    agent = MAPAgent(problem, backend=args.backend, model=args.model, config=_config(args), **_agent_options(args))
    render = _Renderer(task)
    console.print(f"[bold]{task.name}[/] problem {problem.id}: start {task.render_state(task.start(problem))}, "
                  f"goal {task.render_goal(task.goal(problem))}, N = {agent.config.max_actions}")
    thread_id = args.thread_id or uuid.uuid4().hex
    for node, update in agent.stream(thread_id):
        render(node, update)
    result = agent.result(thread_id)
    console.print(f"\nplan ({len(result.actions)} actions, {result.outcome}):")
    for step in result.execution.steps:
        mark = "[green]ok[/]" if step.valid else f"[red]invalid: {step.reason}[/]"
        console.print(f"  {step.index + 1:>2}. {task.render_action(task.Action.model_validate(step.action))}  {mark}")
    u = result.usage.total
    console.print(f"solved: {result.solved}  invalid moves: {result.invalid_moves}  module calls: {u.calls}  "
                  f"model calls: {u.model_calls}  cache hits: {u.cache_hits}  tokens: "
                  f"{u.input_tokens}+{u.output_tokens}  failures: {u.failures}")
    if args.json:
        print(json.dumps(result.record(), indent=2))
    return 0


class _Renderer:
    """Prints the plan as it is made: subgoals, proposals, Monitor verdicts, predictions, chosen actions."""

    def __init__(self, task: Any) -> None:
        self.task = task
        self.steps_shown = 0

    def __call__(self, node: str, update: dict[str, Any]) -> None:
        task = self.task
        if node == "MAP":
            progress = update.get("progress") or {}
            for step in (progress.get("steps") or [])[self.steps_shown:]:
                chosen = (step.get("choice") or {}).get("chosen") or {}
                action = task.render_action(task.Action.model_validate(chosen["action"]))
                value = chosen.get("value")
                console.print(f"[bold cyan]step {step['index'] + 1}[/]: {action} "
                              f"(value {value}) -> {task.render_state(task.State.model_validate(chosen['predicted']))}")
            self.steps_shown = len(progress.get("steps") or [])
            return
        for table, entries in update.items():
            if table == "usage":
                continue
            for entry in entries.values():
                if entry.get("error") and len(entry) == 1:
                    console.print(f"  [red]{node} failed[/]: {entry['error']}")
                elif node == "Actor":
                    acts = ", ".join(task.render_action(task.Action.model_validate(a)) for a in entry["actions"])
                    console.print(f"  Actor proposes: {acts}")
                elif node == "Monitor":
                    verdict = "[green]valid[/]" if entry["valid"] else f"[red]invalid[/] ({entry['feedback']})"
                    console.print(f"  Monitor: {verdict}")
                elif node == "TaskDecomposer":
                    goals = "; ".join(task.render_goal(task.Goal.model_validate(g)) for g in entry["subgoals"])
                    console.print(f"[bold]TaskDecomposer[/] subgoals: {goals}")
                elif node == "Predictor":
                    state = task.render_state(task.State.model_validate(entry["next_state"]))
                    console.print(f"  Predictor: {state}")
                elif node == "Evaluator":
                    console.print(f"  Evaluator: {entry['steps_to_goal']} steps to go")
                elif node == "Orchestrator" and entry.get("achieved"):
                    console.print("  Orchestrator: goal achieved")


def cmd_eval(args: argparse.Namespace) -> int:
    from map_agent.eval.runner import Evaluation, RunSpec

    task = get_task(args.task)
    args.split = args.split or next(iter(task.splits()))
    problems = task.problems(args.split)[: args.limit]
    spec = RunSpec(task=task.name, split=args.split, runs=args.runs, backend=args.backend, model=args.model,
                   config=_config(args), problem_ids=[p.id for p in problems])
    run_id = args.run_id or f"{task.name}-{args.split}-{args.backend}-{uuid.uuid4().hex[:6]}"
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("solved {task.fields[solved]}"), console=console) as bar:
        evaluation = Evaluation(spec, args.out, run_id, concurrency=args.concurrency, **_agent_options(args))
        todo = len(evaluation.pending())
        job = bar.add_task(run_id, total=todo, solved=0)

        def tick(record: dict[str, Any]) -> None:
            bar.update(job, advance=1, solved=bar.tasks[job].fields["solved"] + int(bool(record.get("solved"))))

        evaluation.on_record = tick
        summary = evaluation.run()
    console.print(f"records: {evaluation.records_path}")
    print(json.dumps(summary, indent=2))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="map-agent", description="MAP, the Modular Agentic Planner")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("tasks", help="list tasks and splits")
    plan = sub.add_parser("plan", help="plan one problem, showing each module's work")
    plan.add_argument("task", choices=sorted(TASKS))
    plan.add_argument("--problem", required=True, help="problem id")
    plan.add_argument("--split", help="look the id up in this split only")
    plan.add_argument("--thread-id", help="resume or inspect this checkpointed run")
    plan.add_argument("--json", action="store_true", help="also print the full record as JSON")
    _config_args(plan)
    ev = sub.add_parser("eval", help=f"evaluate a task split (or: {', '.join(EVALUATIONS)}, with their own options)")
    ev.add_argument("task", choices=sorted(TASKS))
    ev.add_argument("--split", help="default: the task's first split")
    ev.add_argument("--runs", type=int, default=1)
    ev.add_argument("--concurrency", type=int, default=1)
    ev.add_argument("--limit", type=int, help="first K problems only")
    ev.add_argument("--run-id", help="name of the run directory; an existing one is resumed")
    ev.add_argument("--out", default="runs", help="parent directory of run directories")
    _config_args(ev)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) >= 2 and argv[0] == "eval" and argv[1] in EVALUATIONS:
        module, _, func = EVALUATIONS[argv[1]].partition(":")
        return getattr(importlib.import_module(module), func)(argv[2:])
    args = parser().parse_args(argv)
    try:
        if args.command == "tasks":
            return cmd_tasks(args)
        if args.command == "plan":
            return cmd_plan(args)
        return cmd_eval(args)
    except (KeyError, ValueError, FileNotFoundError) as e:
        console.print(f"[red]error:[/] {e}")
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
