"""The ``map-agent`` command line.

    map-agent tasks [hanoi --ids]                     # tasks and their splits (a task's problem ids)
    map-agent plan hanoi --problem 7 [--backend local|openai|oracle] [--model M] [--checkpoint F [--thread-id T]]
    map-agent eval hanoi --split test3 --runs 5 --concurrency 4 [--run-id ID]
    map-agent eval maze-code --test-set 1             # the value-iteration code-generation evaluation
    map-agent eval text-to-pddl                       # the Planetarium text-to-PDDL evaluation
    map-agent reproduce hanoi_ablations --backend openai --model M   # a paper table, cell by cell, then its report
    map-agent report runs/ID [runs/ID ...] --out report               # tables, figures and an HTML page

Errors are one line naming the file, field or value (``MAP_AGENT_DEBUG=1`` adds the traceback). Ctrl-C stops a
plan or an evaluation at once (exit 130) and says how to resume; a second Ctrl-C exits without waiting.
"""

from __future__ import annotations

import argparse
import importlib
import json
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
from typing import Any, get_args
from urllib.parse import urlsplit

from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from map_agent.agent import MAPAgent
from map_agent.baselines import ALL_METHODS, check_method
from map_agent.config import DEVIATIONS, Impl, MAPConfig
from map_agent.eval.records import validation_message
from map_agent.learned.adapters import ADAPTERS, adapter_config
from map_agent.llm import BACKENDS
from map_agent.llm.backends import DEFAULT_TIMEOUT, JSON_SCHEMA_FORMS, SetupError, check_endpoint, endpoint_url, redact
from map_agent.task import MODULES, TASKS, get_task

#: evaluations that are not MAP plans: name -> "module:function(argv) -> exit code"
EVALUATIONS = {
    "maze-code": "map_agent.eval.maze_code:cli_main",
    "text-to-pddl": "map_agent.eval.text_to_pddl:cli_main",
}

#: commands with their own options: name -> ("module:function(argv) -> exit code", help)
COMMANDS = {
    "reproduce": ("map_agent.eval.reproduce:cli_main", "run a paper table or figure (experiments/*.yaml), then report"),
    "report": ("map_agent.eval.report:cli_main", "tables, figures and an HTML page from run directories"),
    "distill": ("map_agent.learned.cli:distill_main", "per-module training data from a task's oracles"),
    "train": ("map_agent.learned.cli:train_main", "LoRA-train the embedded model on distilled data (extra [train])"),
    "train-critic": ("map_agent.learned.critic_train:main",
                     "train a goal-conditioned critic (--module Evaluator=learned, --critic learned; extra [train])"),
}

#: progress, plans and errors go to stderr, results (JSON, listings) to stdout; piped output is not hard-wrapped
console = Console(stderr=True, soft_wrap=not sys.stderr.isatty())
out = Console(soft_wrap=True)

#: exit status after Ctrl-C (128 + SIGINT), as shells report it
INTERRUPTED = 130


class _Help(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows each option's default (when it has one) and keeps the examples in the epilog as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False, [], argparse.SUPPRESS):
            return action.help
        return super()._get_help_string(action)


def _subcommand(sub: Any, name: str, help: str, example: str) -> argparse.ArgumentParser:
    """A subcommand whose --help shows defaults and an example."""
    return sub.add_parser(name, help=help, description=help, epilog=f"example:\n  {example}", formatter_class=_Help)


def _int_in(low: int, high: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range: {low} to {high}")
        return value

    parse.__name__ = "integer"
    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{value:g} is out of range: more than 0, at most 3600 seconds")
    return value


def _config_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("MAP configuration (defaults: the paper's, per task)")
    g.add_argument("--backend", choices=sorted(BACKENDS), default="local", help="; ".join(
        f"{name}: {text}" for name, text in BACKENDS.items()))
    g.add_argument("--model", help="model name (openai) or GGUF path (local)")
    g.add_argument("--base-url", help="OpenAI-compatible endpoint (else MAP_AGENT_BASE_URL / OPENAI_BASE_URL)")
    g.add_argument("--json-schema", nargs="?", const="auto", choices=["auto", *JSON_SCHEMA_FORMS],
                   help="send each module's output JSON schema (openai backend), in the form the server takes: "
                        "json_schema (OpenAI, vLLM, Ollama, llama-server), json_object (llama-cpp-python's "
                        "server); auto, the flag alone, asks the server before the run")
    g.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT,
                   help="seconds one model request may take (openai backend); then it is retried, then recorded "
                        "as that module call's failure")
    g.add_argument("--threads", type=_int_in(1, 256), help="llama.cpp threads (local backend)")
    g.add_argument("--lora", help="LoRA adapter for the local model")
    g.add_argument("--cache-dir", help="prompt cache directory (default: user cache dir)")
    g.add_argument("--no-cache", action="store_true", help="bypass the prompt cache")
    g.add_argument("--branches", "-B", type=int, default=2, help="B: actions proposed and searched per state")
    g.add_argument("--layers", "-L", type=int, default=2, help="L: depth of the tree search")
    g.add_argument("--max-actions", "-N", type=int, help="action budget N (default: the problem's)")
    g.add_argument("--search", action=argparse.BooleanOptionalAction, default=None, help="tree search")
    g.add_argument("--subgoals", type=int, help="TaskDecomposer subgoals K")
    g.add_argument("--no-monitor", action="store_true", help="ablation: every proposal is accepted")
    g.add_argument("--no-decomposer", action="store_true", help="ablation: pursue the final goal only")
    g.add_argument("--module", action="append", default=[], metavar="NAME=llm|oracle|off",
                   help=f"per-module implementation; modules: {', '.join(MODULES)}")
    g.add_argument("--prompts", choices=["paper", "ft"],
                   help="module prompts: the paper's (default), or 'ft', the short ones a fine-tuned adapter learnt "
                        "(default with a shipped adapter, e.g. --model map-hanoi)")
    g.add_argument("--monitor-retries", type=int, help="extra Actor rounds after rejections (default 9: 10 rounds)")
    g.add_argument("--parse-retries", type=int, help="re-asks after an unparseable reply (default 9: 10 attempts)")
    _deviation_args(p.add_argument_group("differences from the original MAP code (default: the original's)"))


def _deviation_args(g: argparse._ArgumentGroup) -> None:
    """One flag per named deviation (``config.DEVIATIONS``), generated so the CLI can never miss one."""
    for field, (original, ours, why) in DEVIATIONS.items():
        flag = "--" + field.replace("_", "-")
        if isinstance(original, bool):
            g.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                           help=f"original: {'on' if original else 'off'}; --{'no-' if original else ''}"
                                f"{field.replace('_', '-')}: {why}")
        elif isinstance(original, str):
            choices = list(get_args(MAPConfig.model_fields[field].annotation))
            g.add_argument(flag, choices=choices, help=f"original: {original}; {ours}: {why}")
        else:
            g.add_argument(flag, type=type(original), help=f"original: {original}; e.g. {ours}: {why}")


def _config(args: argparse.Namespace) -> MAPConfig:
    modules: dict[str, str] = {}
    impls = get_args(Impl)
    for spec in args.module:
        name, _, impl = spec.partition("=")
        if name not in MODULES or impl not in impls:
            raise ValueError(f"--module {spec!r}: expected NAME=IMPL, NAME one of {', '.join(MODULES)} and IMPL one "
                             f"of {', '.join(impls)} (e.g. --module Evaluator=oracle)")
        modules[name] = impl
    if args.no_monitor:
        modules["Monitor"] = "off"
    if args.no_decomposer:
        modules["TaskDecomposer"] = "off"
    chosen = {f: getattr(args, f) for f in (*DEVIATIONS, "monitor_retries", "parse_retries")
              if getattr(args, f, None) is not None}
    if args.prompts:
        chosen["prompts"] = args.prompts
    config = MAPConfig(branches=args.branches, layers=args.layers, max_actions=args.max_actions, search=args.search,
                       n_subgoals=args.subgoals, modules=modules, **chosen)
    # a shipped adapter runs under the settings it was trained with, unless told otherwise
    return adapter_config(args.model, config) if args.backend == "local" and args.model in ADAPTERS else config


def _agent_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {"cache": False if args.no_cache else args.cache_dir}
    if args.backend == "local":
        options.update(threads=args.threads, lora_path=args.lora)
    elif args.backend == "openai":
        options.update(base_url=args.base_url, json_schema=args.json_schema or False, timeout=args.timeout)
    return options


def _redactor(args: argparse.Namespace):
    """Error text as shown: no endpoint path or query, no key (``map_agent.llm.backends.redact``)."""
    url, key = endpoint_url(getattr(args, "base_url", None)), os.environ.get("OPENAI_API_KEY", "")
    return lambda text: redact(text, url, (key,))


def _loading(args: argparse.Namespace) -> None:
    if args.backend == "local":
        console.print(f"loading model {args.model or 'SmolLM2-135M-Instruct (embedded)'}...")
    elif args.backend == "openai":
        where = urlsplit(endpoint_url(args.base_url) or "https://api.openai.com/v1")
        console.print(f"checking the endpoint at {where.scheme}://{where.netloc}...", highlight=False)


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
    if args.thread_id and not args.checkpoint:
        raise ValueError("--thread-id resumes a plan saved with --checkpoint PATH: give both")
    task = get_task(args.task)
    problem = _problem(task, args.problem, args.split)
    config = _config(args)
    checkpointer = _sqlite_checkpointer(args.checkpoint) if args.checkpoint else None
    if args.backend != "oracle":
        _loading(args)
    agent = MAPAgent(problem, backend=args.backend, model=args.model, config=config, checkpointer=checkpointer,
                     **_agent_options(args))
    if agent.llm is not None:
        check_endpoint(agent.llm, auto_form=args.json_schema == "auto")
    render = _Renderer(task, _redactor(args))
    console.print(f"[bold]{task.name}[/] problem {problem.id}: start {task.render_state(task.start(problem))}, "
                  f"goal {task.render_goal(task.goal(problem))}, N = {agent.config.max_actions}")
    thread_id = args.thread_id or uuid.uuid4().hex
    if args.checkpoint:
        console.print(f"thread {thread_id}, saved in {args.checkpoint}", highlight=False)
    try:
        for node, update in _in_background(agent.stream(thread_id)):
            render(node, update)
    except KeyboardInterrupt:
        how = (f"resume with: {_with_option(args.argv, '--thread-id', thread_id)}" if args.checkpoint else
               "nothing was saved (plan with --checkpoint PATH to make a plan resumable)")
        console.print(f"interrupted; {how}", highlight=False, markup=False)
        return _exit_now(INTERRUPTED)
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

    def __init__(self, task: Any, scrub: Callable[[str], str] = str) -> None:
        self.task = task
        self.scrub = scrub  # module errors may quote the endpoint: shown redacted
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
            if table in ("usage", "calls"):
                continue
            for entry in entries.values():
                if entry.get("failed"):
                    console.print(Text.assemble(f"  {node} ", ("failed", "red"), f": {self.scrub(entry['error'])}"))
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
    from map_agent.eval.runner import Evaluation, Interrupted, RunSpec

    task = get_task(args.task)
    args.split = args.split or next(iter(task.splits()))
    problems = task.problems(args.split)[: args.limit]
    args.runs = args.runs or task.default_runs(args.split)  # the paper's number of runs for the split
    check_method(task.name, args.method)  # one line naming the methods the paper ran on this task
    spec = RunSpec(task=task.name, split=args.split, runs=args.runs, backend=args.backend, model=args.model,
                   config=_config(args), problem_ids=[p.id for p in problems], method=args.method)
    label = "" if args.method == "map" else f"{args.method}-"
    run_id = args.run_id or f"{task.name}-{args.split}-{label}{args.backend}-{uuid.uuid4().hex[:6]}"
    evaluation = Evaluation(spec, args.out, run_id, concurrency=args.concurrency, grace=args.grace,
                            **_agent_options(args))
    if args.backend != "oracle":
        _loading(args)
    evaluation.prepare()  # model, endpoint and prompt files checked once, before any problem starts
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("solved {task.fields[solved]}  failed module calls {task.fields[failures]}  "
                             "problems failed {task.fields[errors]}"), console=console) as bar:
        job = bar.add_task(run_id, total=len(evaluation.pending()), solved=0, failures=0, errors=0)

        def tick(record: dict[str, Any]) -> None:
            shown = bar.tasks[job].fields
            failures = ((record.get("usage") or {}).get("total") or {}).get("failures", 0)
            bar.update(job, advance=1, solved=shown["solved"] + int(bool(record.get("solved"))),
                       failures=shown["failures"] + failures, errors=shown["errors"] + int(bool(record.get("error"))))

        evaluation.on_record = tick
        try:
            summary = evaluation.run()
        except Interrupted as stop:
            bar.stop()
            console.print(f"interrupted: {stop.finished} problem(s) finished, {stop.cancelled} not run "
                          f"(summary: {evaluation.dir / 'summary.json'}); resume with: "
                          f"{_with_option(args.argv, '--run-id', run_id)}", highlight=False, markup=False)
            return _exit_now(INTERRUPTED)
    console.print(f"records: {evaluation.records_path}", highlight=False)
    print(json.dumps(summary, indent=2))
    if summary["records"] and summary["errors"] == summary["records"]:
        first = next(r["error"] for r in evaluation.records() if r.get("error"))
        _error(f"every problem failed ({summary['errors']} of {summary['records']}); the first: {first}")
        return 1
    return 0


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


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="map-agent", description="MAP, the Modular Agentic Planner",
                                epilog="example:\n  map-agent plan hanoi --problem 7 --backend oracle",
                                formatter_class=_Help)
    p.add_argument("--version", action="version", version=f"%(prog)s {version('map-agent')}")
    sub = p.add_subparsers(dest="command", required=True)
    tasks = _subcommand(sub, "tasks", "list tasks and splits (to stdout)", "map-agent tasks hanoi --ids")
    tasks.add_argument("task", nargs="?", choices=sorted(TASKS), help="this task only")
    tasks.add_argument("--ids", action="store_true", help="list the task's problem ids, per split")
    plan = _subcommand(sub, "plan", "plan one problem, showing each module's work",
                       "map-agent plan hanoi --problem 7 --backend oracle --checkpoint plans.db")
    plan.add_argument("task", choices=sorted(TASKS))
    plan.add_argument("--problem", required=True, help="problem id (map-agent tasks TASK --ids lists them)")
    plan.add_argument("--split", help="look the id up in this split only")
    plan.add_argument("--checkpoint", metavar="PATH", help="save every step in this SQLite file, so an interrupted "
                                                           "plan can be resumed with --thread-id")
    plan.add_argument("--thread-id", help="resume (or show) this plan saved with --checkpoint")
    plan.add_argument("--json", action="store_true", help="also print the full record as JSON")
    _config_args(plan)
    ev = _subcommand(sub, "eval", f"evaluate a task split (or: {', '.join(EVALUATIONS)}, with their own options)",
                     "map-agent eval hanoi --split test3 --runs 5 --concurrency 4 --backend oracle")
    ev.add_argument("task", choices=sorted(TASKS))
    ev.add_argument("--split", help="default: the task's first split")
    ev.add_argument("--runs", type=_int_in(1, 1000),
                    help="runs per problem (default: the paper's for the split, e.g. Hanoi test3 5, test4 1; CogEval "
                         "valuepath 10, detour 10, reward_revaluation 5, steppath 1)")
    ev.add_argument("--concurrency", type=_int_in(1, 64), default=1, help="problems planned at once")
    ev.add_argument("--grace", type=_seconds, default=10.0,
                    help="after Ctrl-C, seconds the problems in flight get to finish")
    ev.add_argument("--method", choices=ALL_METHODS, default="map",
                    help="MAP or a baseline the paper ran on the task (zero-shot, icl, cot, mad, tot)")
    ev.add_argument("--limit", type=_int_in(1, 10**6), help="first K problems only")
    ev.add_argument("--run-id", help="name of the run directory; an existing one is resumed")
    ev.add_argument("--out", default="runs", help="parent directory of run directories")
    _config_args(ev)
    for name, (_, text) in COMMANDS.items():
        sub.add_parser(name, help=f"{text} (see map-agent {name} --help)", add_help=False)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) >= 2 and argv[0] == "eval" and argv[1] in EVALUATIONS:
        target, rest = EVALUATIONS[argv[1]], argv[2:]
    elif argv and argv[0] in COMMANDS:
        target, rest = COMMANDS[argv[0]][0], argv[1:]
    else:
        args = parser().parse_args(argv)
        args.argv = argv
        target, rest = "", []
    with _ctrl_c():  # the commands with their own parsers get the same Ctrl-C handling and one-line errors
        try:
            if target:
                module, _, func = target.partition(":")
                return getattr(importlib.import_module(module), func)(rest)
            return HANDLERS[args.command](args)
        except KeyboardInterrupt:  # outside a plan or evaluation loop (loading, checking): nothing to resume
            console.print("interrupted")
            return _exit_now(INTERRUPTED)
        except ValidationError as e:
            _error(validation_message(e))
        except KeyError as e:
            _error(str(e.args[0]) if e.args else repr(e))
        except OSError as e:
            _error(f"{e.filename}: {e.strerror}" if e.filename and e.strerror else f"{type(e).__name__}: {e}")
        except (ValueError, SetupError) as e:
            _error(" ".join(str(e).split()))
        except Exception as e:  # a bug: still one line, unless asked for the traceback
            if os.environ.get("MAP_AGENT_DEBUG"):
                raise
            _error(f"{type(e).__name__}: {e} (internal error; MAP_AGENT_DEBUG=1 shows the traceback)")
            return 1
        return 2


#: subcommand -> handler (commands with their own parsers are in EVALUATIONS and COMMANDS)
HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {"tasks": cmd_tasks, "plan": cmd_plan, "eval": cmd_eval}


if __name__ == "__main__":
    raise SystemExit(main())
