"""The ``map-agent`` command line.

    map-agent tasks [hanoi --ids]                     # tasks and their splits (a task's problem ids)
    map-agent plan hanoi --problem 7 [--backend local|openai|oracle] [--model M] [--checkpoint F [--thread-id T]]
    map-agent eval hanoi --split test3 --runs 5 --concurrency 4 [--run-id ID]
    map-agent eval maze-code --test-set 1             # the value-iteration code-generation evaluation
    map-agent eval text-to-pddl                       # the Planetarium text-to-PDDL evaluation
    map-agent reproduce hanoi_ablations --backend openai --model M   # a paper table, cell by cell, then its report
    map-agent sensitivity hanoi --sweep Actor:repeated_wrong_move:0.1,0.2   # % solved as a module's errors grow
    map-agent report runs/ID [runs/ID ...] --out report               # tables, figures and an HTML page
    map-agent view runs/ID [--out DIR] [--serve --port P]             # one offline page per run: what happened

Errors are one line naming the file, field or value (``MAP_AGENT_DEBUG=1`` adds the traceback). Ctrl-C stops a
plan or an evaluation at once (exit 130) and says how to resume; a second Ctrl-C exits without waiting.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import queue
import shlex
import signal
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import version
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from rich.text import Text

from map_agent.baselines import ALL_METHODS, check_method
from map_agent.files import validation_message
from map_agent.llm.endpoint import SetupError, endpoint_url, redact
from map_agent.options import (
    EXECUTOR_OPTIONS,
    ROUTING_OPTIONS,
    add_options,
    api_key,
    chat_options,
    check_applicable,
    executor_options,
    map_config,
    seconds,
)
from map_agent.progress import console, progress  # progress, plans and errors: stderr
from map_agent.task import TASKS, get_task

#: results (tables, listings) go to stdout
out = Console(soft_wrap=True)

#: exit status after Ctrl-C (128 + SIGINT), as shells report it
INTERRUPTED = 130


class _Help(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows each option's default (when it has one) and keeps the examples in the epilog as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or action.default in ([], argparse.SUPPRESS):
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """A usage error is the one line that matters, not the whole usage block above it."""

    def error(self, message: str) -> Any:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def command_parser(name: str, help: str, example: str) -> argparse.ArgumentParser:
    """The parser of one subcommand (``map-agent <name>``): its --help shows defaults and an example."""
    return _Parser(prog=f"map-agent {name}", description=help, epilog=f"example:\n  {example}", formatter_class=_Help)


def _redaction(args: argparse.Namespace) -> tuple[str | None, tuple[str, ...]]:
    """What ``map_agent.llm.endpoint.redact`` must hide for this command: the endpoint and the key."""
    return endpoint_url(getattr(args, "base_url", None)), (api_key(args) or "",)


def _redactor(args: argparse.Namespace):
    """Error text as shown: no endpoint path or query, no key (``map_agent.llm.endpoint.redact``)."""
    url, secrets = _redaction(args)
    return lambda text: redact(text, url, secrets)


def _loading(args: argparse.Namespace) -> None:
    if args.backend == "local":
        console.print(f"loading model {args.model or 'SmolLM2-135M-Instruct (embedded)'}...")
    elif args.backend == "openai":
        where = urlsplit(endpoint_url(args.base_url) or "https://api.openai.com/v1")
        host = where.hostname or ""  # never the user:password@ part of the address
        console.print(f"checking the endpoint at {where.scheme}://{host}{f':{where.port}' if where.port else ''}...",
                      highlight=False)


def cmd_tasks(args: argparse.Namespace) -> int:
    if args.ids and not args.task:
        raise ValueError("--ids lists one task's problem ids: map-agent tasks TASK --ids")
    for name in [args.task] if args.task else TASKS:
        try:
            task = get_task(name)
        except ImportError as e:
            out.print(f"[red]{name}[/]: unavailable ({e})")
            continue
        out.print(f"[bold]{name}[/]")
        for split, text in task.splits().items():
            if args.ids:
                out.print(f"  {split}: {' '.join(p.id for p in task.problems(split))}", highlight=False)
            else:
                out.print(f"  {split:<22} {text}", highlight=False)
    return 0


def _problem(task: Any, problem_id: str, split: str | None) -> Any:
    try:
        return task.problem(problem_id, split=split)
    except KeyError as e:
        raise KeyError(f"{e.args[0]} (list the ids with: map-agent tasks {task.name} --ids)") from None


def cmd_plan(args: argparse.Namespace) -> int:
    from map_agent.agent import MAPAgent  # LangGraph and LangChain: only a plan pays for them

    if args.thread_id and not args.checkpoint:
        raise ValueError("--thread-id resumes a plan saved with --checkpoint PATH: give both")
    task = get_task(args.task)
    problem = _problem(task, args.problem, args.split)
    config = map_config(args)
    checkpointer = _sqlite_checkpointer(args.checkpoint) if args.checkpoint else None
    if args.backend != "oracle":
        _loading(args)
    agent = MAPAgent(problem, backend=args.backend, model=args.model, config=config, checkpointer=checkpointer,
                     **chat_options(args))
    agent.prepare()  # endpoint, schema form and context window: one line now rather than a failure per call
    console.print(f"[bold]{task.name}[/] problem {problem.id}: start {task.render_state(task.start(problem))}, "
                  f"goal {task.render_goal(task.goal(problem))}, N = {agent.config.max_actions}")
    thread_id = args.thread_id or uuid.uuid4().hex
    if args.checkpoint:
        console.print(f"thread {thread_id}, saved in {args.checkpoint}", highlight=False)
    try:
        with progress("actions", agent.config.max_actions, "step 1") as display:
            render = _Renderer(task, _redactor(args), display)
            for node, update in _in_background(agent.stream(thread_id)):
                render(node, update)
    except KeyboardInterrupt:
        how = (f"resume with: {_with_option(args.argv, '--thread-id', thread_id)}" if args.checkpoint else
               "nothing was saved (plan with --checkpoint PATH to make a plan resumable)")
        console.print(f"interrupted; {how}", highlight=False, markup=False)
        return _exit_now(INTERRUPTED)
    result = agent.result(thread_id)
    console.print(f"\nplan ({_plural(len(result.actions), 'action')}, {result.outcome}):")
    for step in result.execution.steps:
        mark = "[green]ok[/]" if step.valid else f"[red]invalid: {step.reason}[/]"
        console.print(f"  {step.index + 1:>2}. {task.render_action(task.Action.model_validate(step.action))}  {mark}")
    u = result.usage.total
    console.print(f"solved: {result.solved}  invalid moves: {result.invalid_moves}  module calls: {u.calls}  "
                  f"model calls: {u.model_calls}  cache hits: {u.cache_hits}  tokens: "
                  f"{u.input_tokens}+{u.output_tokens}  failures: {u.failures}"
                  + (f"  unused (asked ahead): {u.unused}" if u.unused else ""))
    if args.json:
        from map_agent.eval.runner import _redacted

        print(json.dumps(_redacted(result.record(), *_redaction(args)), indent=2))
    if u.calls and u.failures == u.calls:  # nothing the model said was usable: not a plan, whatever it scored
        first = result.failures[0].error or "no reason recorded"
        _error(f"every module call failed ({u.failures} of {u.calls}); the first: {_redactor(args)(first)}")
        return 1
    return 0


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class _Renderer:
    """Prints the plan as it is made: subgoals, proposals, Monitor verdicts, predictions, chosen actions; and
    keeps the progress line on the step, the module called and the Monitor round.

    A proposal the Actor repeats within a step is printed once: the Monitor judged it already (its verdict is
    memoised, so no new Monitor call follows), and the step's line says how often it came back."""

    def __init__(self, task: Any, scrub: Callable[[str], str] = str, display: Any = None) -> None:
        self.task = task
        self.scrub = scrub  # module errors may quote the endpoint: shown redacted
        self.display = display
        self.steps_shown = 0
        self.proposals: dict[str, int] = {}  # this step's Actor proposals, as shown, and how often each came
        self.verdicts: dict[str, str] = {}  # the Monitor's verdict on each action judged so far

    def print(self, text: Any) -> None:
        (self.display or console).print(text)

    def note(self, module: str) -> None:
        if self.display is None:
            return
        rounds = sum(self.proposals.values())
        retry = f" · Monitor round {rounds + 1 if module == 'Actor' else rounds}" if rounds else ""
        self.display.lines[0].update(note=f"step {self.steps_shown + 1} · {module}{retry}")

    def __call__(self, node: str, update: dict[str, Any]) -> None:
        task = self.task
        if node == "MAP":
            progress = update.get("progress") or {}
            for step in (progress.get("steps") or [])[self.steps_shown:]:
                chosen = (step.get("choice") or {}).get("chosen") or {}
                action = task.render_action(task.Action.model_validate(chosen["action"]))
                value = chosen.get("value")
                valued = f" (Evaluator value {value:g})" if isinstance(value, (int, float)) and math.isfinite(value) \
                    else ""
                repeats = sum(self.proposals.values()) - len(self.proposals)
                again = f"; the Actor repeated earlier proposals {_plural(repeats, 'time')}" if repeats else ""
                self.print(f"[bold cyan]step {step['index'] + 1}[/]: {action}{valued} -> "
                           f"{task.render_state(task.State.model_validate(chosen['predicted']))}{again}")
                self.proposals = {}
                if self.display is not None:
                    self.display.lines[0].advance()
            self.steps_shown = len(progress.get("steps") or [])
            return
        self.note(node)
        for table, entries in update.items():
            if table in ("usage", "calls"):
                continue
            for entry in entries.values():
                if entry.get("failed"):
                    self.print(Text.assemble(f"  {node} ", ("failed", "red"), f": {self.scrub(entry['error'])}"))
                elif node == "Actor":
                    key = json.dumps(entry["actions"], sort_keys=True)
                    self.proposals[key] = self.proposals.get(key, 0) + 1
                    if self.proposals[key] > 1:
                        continue
                    shown = []
                    for a in entry["actions"]:
                        judged = self.verdicts.get(json.dumps(a, sort_keys=True))
                        text = task.render_action(task.Action.model_validate(a))
                        shown.append(f"{text} (already judged: {judged})" if judged else text)
                    self.print(f"  Actor proposes: {', '.join(shown)}")
                elif node == "Monitor":
                    verdict = "[green]valid[/]" if entry["valid"] else f"[red]invalid[/] ({entry['feedback']})"
                    self.print(f"  Monitor: {verdict}")
                    for action in self._judged(update):
                        self.verdicts[action] = "valid" if entry["valid"] else "invalid"
                elif node == "TaskDecomposer":
                    goals = "; ".join(task.render_goal(task.Goal.model_validate(g)) for g in entry["subgoals"])
                    self.print(f"[bold]TaskDecomposer[/] subgoals: {goals}")
                elif node == "Predictor":
                    state = task.render_state(task.State.model_validate(entry["next_state"]))
                    self.print(f"  Predictor: {state}")
                elif node == "Evaluator":
                    self.print(f"  Evaluator: {_plural(entry['steps_to_goal'], 'step')} to go")
                elif node == "Orchestrator" and entry.get("achieved"):
                    self.print("  Orchestrator: goal achieved")

    @staticmethod
    def _judged(update: dict[str, Any]) -> list[str]:
        """The actions a Monitor update judged (from the call it logged)."""
        return [json.dumps((c.get("input") or {}).get("action"), sort_keys=True) for c in update.get("calls") or []]


def cmd_eval(args: argparse.Namespace) -> int:
    from map_agent.eval.runner import Evaluation, Interrupted, RunSpec, ended_by, latest

    task = get_task(args.task)
    args.split = args.split or next(iter(task.splits()))
    problems = task.problems(args.split)[: args.limit]
    args.runs = args.runs or task.default_runs(args.split)  # the paper's number of runs for the split
    check_method(task.name, args.method)  # one line naming the methods the paper ran on this task
    chat = chat_options(args)
    spec = RunSpec(task=task.name, split=args.split, runs=args.runs, backend=args.backend, model=args.model,
                   config=map_config(args), problem_ids=[p.id for p in problems], method=args.method,
                   module_models=chat.get("module_models", {}))
    run_id = args.run_id or spec.default_run_id()
    evaluation = Evaluation(spec, args.out, run_id, concurrency=args.concurrency, grace=args.grace,
                            **executor_options(args), **chat)
    if args.backend != "oracle":
        _loading(args)
    evaluation.prepare()  # model, endpoint and prompt files checked once, before any problem starts
    with progress(run_id, len(evaluation.pending()), "solved 0") as display:
        line, seen = display.lines[0], {"solved": 0, "failures": 0, "errors": 0}

        def tick(record: dict[str, Any]) -> None:
            seen["solved"] += bool(record.get("solved"))
            seen["failures"] += ((record.get("usage") or {}).get("total") or {}).get("failures", 0)
            seen["errors"] += bool(record.get("error"))
            line.advance(note=f"solved {seen['solved']}  failed module calls {seen['failures']}  "
                              f"problems failed {seen['errors']}")

        evaluation.on_record = tick
        try:
            summary = evaluation.run()
        except Interrupted as stop:
            display.stop()
            console.print(f"interrupted: {stop.finished} problem(s) finished, {stop.cancelled} not run "
                          f"(summary: {evaluation.dir / 'summary.json'}); resume with: "
                          f"{_redactor(args)(_with_option(args.argv, '--run-id', run_id))}", highlight=False,
                          markup=False)
            return _exit_now(INTERRUPTED)
    out.print(_summary_table(summary))
    out.print(f"summary: {evaluation.dir / 'summary.json'}\nrecords: {evaluation.records_path}\n"
              f"see every step: map-agent view {evaluation.dir}", highlight=False, markup=False)
    if summary.get("infrastructure_failures"):  # an outage is not a result: say so, and fail the command
        first = next(r.get("error") or _first_call_error(r) for r in latest(evaluation.records()).values()
                     if ended_by(r) == "infrastructure")
        _error(f"{summary['infrastructure_failures']} problem(s) ended by the endpoint, not the model (not scored; "
               f"the first: {_redactor(args)(first)}); run the same command again to retry them")
        return 1
    if summary["records"] and summary["errors"] == summary["records"]:
        first = next(r["error"] for r in evaluation.records() if r.get("error"))
        _error(f"every problem failed ({summary['errors']} of {summary['records']}); the first: "
               f"{_redactor(args)(first)}")
        return 1
    return 0


def _first_call_error(record: dict[str, Any]) -> str:
    """The error of a record's first call that failed at the endpoint."""
    calls = [*record.get("calls", []), *(c for phase in record.get("phases", []) for c in phase.get("calls", []))]
    return next((c.get("error") or "" for c in calls if c.get("infrastructure")), "no reason recorded")


def _summary_table(summary: dict[str, Any]) -> Table:
    """The few numbers a person reads after an evaluation; everything else is in ``summary.json``."""

    def pm(stat: Any, unit: str = "%") -> str:
        if not isinstance(stat, dict) or stat.get("mean") is None:
            return "–"
        sem = f" ± {stat['sem']:.1f}" if stat.get("sem") is not None else ""
        return f"{stat['mean']:.1f}{sem}{unit}"

    usage = summary.get("usage") or {}
    calls = sum(m.get("calls", 0) for m in (usage.get("modules") or {}).values())
    table = Table(show_header=False, box=None, pad_edge=False)
    for name, value in (("problems", f"{summary.get('problems')} × {summary.get('runs_complete')} of "
                                     f"{summary.get('runs_requested')} runs"),
                        ("solved (mean ± SEM over runs)", pm(summary.get("pct_solved"))),
                        ("invalid moves", pm(summary.get("pct_invalid"))),
                        ("module calls", f"{calls:,} ({usage.get('model_calls', 0):,} sent to a model, "
                                         f"{usage.get('cache_hits', 0):,} from the cache)"),
                        ("tokens", f"{usage.get('input_tokens', 0):,} in, {usage.get('output_tokens', 0):,} out"),
                        ("failed module calls", str(summary.get("module_failures", "–"))),
                        ("problems failed", str(summary.get("errors", "–"))),
                        ("wall time", f"{summary.get('wall_seconds', 0):.1f} s")):
        table.add_row(name, value)
    return table


def _sqlite_checkpointer(path: str) -> Any:
    """A LangGraph checkpointer in an SQLite file: every finished superstep survives the process."""
    import sqlite3

    from langgraph.checkpoint.sqlite import SqliteSaver

    try:
        connection = sqlite3.connect(path, check_same_thread=False)
        saver = SqliteSaver(connection)
        saver.setup()
    except sqlite3.Error as e:
        raise ValueError(f"--checkpoint {path}: not a usable SQLite file ({e})") from None
    return saver


def _in_background(items: Iterator[Any]) -> Iterator[Any]:
    """Iterate in a daemon thread and hand the items over, so Ctrl-C reaches the main thread at once rather than
    after the module calls in flight, and the process can exit without waiting for them."""
    handover: queue.Queue = queue.Queue()
    end = object()

    def produce() -> None:
        try:
            for item in items:
                handover.put((item, None))
            handover.put((end, None))
        except BaseException as e:  # re-raised in the main thread
            handover.put((end, e))

    threading.Thread(target=produce, name="map-agent-plan", daemon=True).start()
    while True:
        item, error = handover.get()
        if error is not None:
            raise error
        if item is end:
            return
        yield item


def _with_option(argv: list[str], option: str, value: str) -> str:
    """The command line that was run, with ``option`` set to ``value``: what to type to resume."""
    words = [w for w in argv if not w.startswith(option + "=")]
    if option in words:
        words[words.index(option) + 1] = value
    else:
        words += [option, value]
    return shlex.join(["map-agent", *words])


def _exit_now(code: int) -> int:
    """Return ``code``, or -- when threads abandoned after Ctrl-C are still running model calls, which the
    interpreter would wait for -- flush the output and end the process with it at once."""
    alive = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if not alive:
        return code
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _error(message: str) -> None:
    console.print(Text.assemble(("error: ", "red"), message), highlight=False)


@contextmanager
def _ctrl_c() -> Iterator[None]:
    """The first Ctrl-C raises ``KeyboardInterrupt`` (the commands stop cleanly); the second ends the process."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def second(signum: int, frame: Any) -> None:
        os.write(2, b"\ninterrupted again: exiting now\n")
        os._exit(INTERRUPTED)

    def first(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGINT, second)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, first)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def tasks_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("task", nargs="?", choices=sorted(TASKS), help="this task only")
    p.add_argument("--ids", action="store_true", help="list the task's problem ids, per split")


def plan_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("task", choices=sorted(TASKS))
    p.add_argument("--problem", required=True, help="problem id (map-agent tasks TASK --ids lists them)")
    p.add_argument("--split", help="look the id up in this split only")
    p.add_argument("--checkpoint", metavar="PATH", help="save every step in this SQLite file, so an interrupted "
                                                        "plan can be resumed with --thread-id")
    p.add_argument("--thread-id", help="resume (or show) this plan saved with --checkpoint")
    p.add_argument("--json", action="store_true", help="also print the full record as JSON")
    add_options(p, "chat model", *ROUTING_OPTIONS, "map")


def eval_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("task", choices=sorted(TASKS))
    p.add_argument("--split", help="default: the task's first split")
    p.add_argument("--method", choices=ALL_METHODS, default="map",
                   help="MAP or a baseline the paper ran on the task (zero-shot, icl, cot, mad, tot)")
    p.add_argument("--grace", type=seconds, default=10.0, help="after Ctrl-C, seconds the problems in flight get "
                                                               "to finish")
    add_options(p, "runs", "limit", "concurrency", "out", "run_id", *EXECUTOR_OPTIONS, "chat model",
                *ROUTING_OPTIONS, "map")


class Command(NamedTuple):
    """A subcommand: where its arguments and its handler are (``module:function``, imported only when the
    command runs), its one-line help and an example."""

    arguments: str
    handler: str
    help: str
    example: str


#: every subcommand; "eval maze-code" and "eval text-to-pddl" are evaluations that are not MAP plans
COMMANDS: dict[str, Command] = {
    "tasks": Command("map_agent.cli:tasks_arguments", "map_agent.cli:cmd_tasks", "list tasks and splits (to stdout)",
                     "map-agent tasks hanoi --ids"),
    "plan": Command("map_agent.cli:plan_arguments", "map_agent.cli:cmd_plan",
                    "plan one problem, showing each module's work",
                    "map-agent plan hanoi --problem 7 --backend oracle --checkpoint plans.db"),
    "eval": Command("map_agent.cli:eval_arguments", "map_agent.cli:cmd_eval",
                    "evaluate a task split (also: eval maze-code, eval text-to-pddl)",
                    "map-agent eval hanoi --split test3 --runs 5 --concurrency 4 --backend oracle"),
    "eval maze-code": Command("map_agent.eval.maze_code:add_arguments", "map_agent.eval.maze_code:cli_run",
                              "score model-written value-iteration scripts on mazes (the paper's code evaluation)",
                              "map-agent eval maze-code --test-set 1 --backend openai --model gpt-4o"),
    "eval text-to-pddl": Command("map_agent.eval.text_to_pddl:add_arguments", "map_agent.eval.text_to_pddl:cli_run",
                                 "translate Planetarium descriptions to PDDL and check equivalence",
                                 "map-agent eval text-to-pddl --limit 8 --backend openai --model gpt-4o"),
    "reproduce": Command("map_agent.eval.reproduce:add_arguments", "map_agent.eval.reproduce:cli_run",
                         "run a paper table or figure (experiments/*.yaml), then report",
                         "map-agent reproduce hanoi_ablations --backend openai --model gpt-4o --limit 2"),
    "sensitivity": Command("map_agent.eval.sensitivity:add_arguments", "map_agent.eval.sensitivity:cli_run",
                           "% solved as one oracle module's answers go wrong at known rates (a table and a figure)",
                           "map-agent sensitivity hanoi --split test3 --runs 2 --sweep Predictor:wrong_state:0.05,0.1 "
                           "--sweep Orchestrator:flipped:0.02,0.05"),
    "report": Command("map_agent.eval.report:add_arguments", "map_agent.eval.report:cli_run",
                      "tables, figures and an HTML page from run directories",
                      "map-agent report runs/hanoi-test3-map-openai-gpt-4o --out report"),
    "view": Command("map_agent.view:add_arguments", "map_agent.view:cli_run",
                    "one offline HTML page per run: every problem, step, proposal, verdict, prompt and reply",
                    "map-agent view runs/hanoi-test3-openai-smollm2-1a2b3c4d --serve"),
    "distill": Command("map_agent.learned.cli:distill_arguments", "map_agent.learned.cli:distill_run",
                       "per-module training data from a task's oracles",
                       "map-agent distill hanoi --split all3 --heldout test4 --out data/hanoi"),
    "train": Command("map_agent.learned.cli:train_arguments", "map_agent.learned.cli:train_run",
                     "LoRA-train the embedded model on distilled data (extra [train])",
                     "map-agent train data/hanoi --out models/map-hanoi --steps 300"),
    "train-critic": Command("map_agent.learned.critic_train:add_arguments", "map_agent.learned.critic_train:cli_run",
                            "train a goal-conditioned critic (--module Evaluator=learned, --critic learned; "
                            "extra [train])", "map-agent train-critic hanoi --split all3 --out critic.npz"),
}


def _load(target: str) -> Callable[..., Any]:
    module, _, func = target.partition(":")
    return getattr(importlib.import_module(module), func)


def command_for(argv: list[str]) -> tuple[str, list[str]]:
    """The subcommand ``argv`` names and the arguments after it (``eval maze-code`` is one command)."""
    if len(argv) >= 2 and f"{argv[0]} {argv[1]}" in COMMANDS:
        return f"{argv[0]} {argv[1]}", argv[2:]
    return argv[0], argv[1:]


def subcommand_parser(name: str) -> argparse.ArgumentParser:
    """The full parser of one subcommand, its options taken from the registry (``map_agent.options``)."""
    command = COMMANDS[name]
    p = command_parser(name, command.help, command.example)
    _load(command.arguments)(p)
    return p


def parser() -> argparse.ArgumentParser:
    """The top-level parser: ``--version``, ``--help`` and the list of subcommands."""
    p = _Parser(prog="map-agent", description="MAP, the Modular Agentic Planner",
                                epilog="example:\n  map-agent plan hanoi --problem 7 --backend oracle",
                                formatter_class=_Help)
    p.add_argument("--version", action="version", version=f"%(prog)s {version('map-agent')}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in COMMANDS.items():
        if " " not in name:
            sub.add_parser(name, help=command.help, add_help=False)
    return p


def parse(argv: list[str]) -> tuple[argparse.Namespace, Command]:
    """Parse a whole command line with the subcommand's own parser; usage errors exit 2 as argparse does."""
    if not argv or argv[0].startswith("-") or argv[0] not in COMMANDS:
        parser().parse_args(argv)  # --help, --version, or an unknown command: argparse says so and exits
    name, rest = command_for(argv)
    p = subcommand_parser(name)
    args = p.parse_args(rest)
    args.argv, args.command = argv, name
    try:
        check_applicable(args, p)
    except ValueError as e:
        p.error(str(e))
    return args, COMMANDS[name]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args, command = parse(argv)
    scrub = _redactor(args)  # whatever raised may quote the endpoint or the key
    with _ctrl_c():  # every command gets the same Ctrl-C handling and one-line errors
        try:
            return _load(command.handler)(args)
        except KeyboardInterrupt:  # outside a plan or evaluation loop (loading, checking): nothing to resume
            console.print("interrupted")
            return _exit_now(INTERRUPTED)
        except ValidationError as e:
            _error(scrub(validation_message(e)))
        except KeyError as e:
            _error(scrub(str(e.args[0]) if e.args else repr(e)))
        except OSError as e:
            _error(scrub(f"{e.filename}: {e.strerror}" if e.filename and e.strerror else f"{type(e).__name__}: {e}"))
        except (ValueError, SetupError) as e:
            _error(scrub(" ".join(str(e).split())))
        except Exception as e:  # a bug: still one line, unless asked for the traceback
            if os.environ.get("MAP_AGENT_DEBUG"):
                raise
            _error(scrub(f"{type(e).__name__}: {e} (internal error; MAP_AGENT_DEBUG=1 shows the traceback)"))
            return 1
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
