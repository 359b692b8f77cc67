"""The paper's evaluation: a model writes a value-iteration script for a maze; we run it and score the path.

For each problem of a test set the model gets the paper's prompt (``prompt="paper"``, the default: the problem
description of its Figure 2 and no system message; with ``shots`` solved training examples, the prompt-tuning
frame of its Figure 3) or this project's (``prompt="map-agent"``: a system message stating the answer's
contract, the shots as earlier chat turns), and replies with a script (see ``prompts/maze_code/``). The script runs in
the sandbox (:mod:`map_agent.tools.sandbox`) with the contract of the paper: it binds ``maze`` (a copy of the
problem's maze) and ``value_iteration``, and we evaluate ``value_iteration(maze)`` to get the value matrix.

Metrics (per problem, averaged in ``summary.json``):

* **code execution success** (the paper's) -- the script and the call ran without an error within the limits
  (a result that is not a value matrix of the maze's shape still ran: status ``bad_output``, not accurate);
* **solution accuracy** (the paper's, ``identical_path``) -- the greedy path on the script's values
  (:func:`map_agent.tools.maze.greedy_path`, ties broken by the action order of the set) is identical to the
  greedy path on the reference solver's values ("the path based on human generated code");
* **shortest-path accuracy** (this project's, reported beside it: ``shortest_path``) -- the greedy path reaches
  the goal in the optimal number of moves using only legal moves; any shortest path counts, so values that
  break a tie differently from the reference are not penalised. When the shortest path is unique the two
  agree.

Runs are append-only and resumable: ``records.jsonl`` gets one line per finished problem and ids already there
are skipped; ``summary.json`` is rewritten from all records at the end.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, Field

from map_agent.eval.records import append_record, read_records
from map_agent.llm.backends import redactor
from map_agent.options import add_options, chat_options, int_in, seconds
from map_agent.tasks.maze.data import (
    ANSWER_LEAD,
    DEFAULT_SEED,
    PROMPTS,
    TEST_SETS,
    MazeProblem,
    Prompt,
    load_test_set,
    prompt_tuning_prompt,
    reference_script,
    system_prompt,
    training_problems,
    user_prompt,
)
from map_agent.tools.maze import Maze, Position, greedy_path, solve_maze
from map_agent.tools.sandbox import SandboxLimits, SandboxUnavailable, check_isolation, run_script

EPILOGUE = "__result__ = {'maze': maze, 'values': value_iteration(maze)}"
#: the most characters of a reply or an error a record keeps
EXCERPT_CHARS = 20_000
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)```", re.DOTALL)


class CodeScore(BaseModel):
    """The verdict on one script: the paper's two metrics and this project's relaxed accuracy."""

    executed: bool = Field(description="ran without an error (the paper's code execution success)")
    identical_path: bool = Field(default=False, description="the reference's greedy path (the paper's accuracy)")
    shortest_path: bool = Field(default=False, description="a shortest legal path to the goal (this project's)")
    status: str
    error: str = ""
    maze_copied: bool | None = None
    path: list[Position] = []
    path_length: int | None = None
    optimal_length: int
    seconds: float = 0.0


def extract_code(reply: str) -> str:
    """The script in a reply: the fenced block defining ``value_iteration``, else the longest, else all of it
    but the paper's opening line (:data:`~map_agent.tasks.maze.data.ANSWER_LEAD`)."""
    blocks = [body for _, body in _FENCE.findall(reply)]
    if not blocks:
        return reply.strip().removeprefix(ANSWER_LEAD).strip()
    defining = [b for b in blocks if "def value_iteration" in b]
    return max(defining or blocks, key=len).strip()


def _value_matrix(raw: Any, maze: Maze) -> np.ndarray:
    """The script's values as a ``height x width`` float matrix; raises ValueError naming what is wrong.

    What a script returns is the model's data, never trusted: every key must be an integer (row, col) of the
    maze and every value a real number that fits a float (an overflowing integer, NaN, a string or a list is a
    bad answer, that problem's failure, rather than an exception that would stop the evaluation). Infinities
    stay: a wall at -inf or a goal at +inf orders the greedy path as intended."""
    cells = maze.height * maze.width
    if isinstance(raw, dict) and "__pairs__" in raw:  # a dict keyed by (row, col)
        pairs = raw["__pairs__"]
        if not isinstance(pairs, list) or len(pairs) > cells:
            raise ValueError(f"value dict has {_size(pairs)} entries, the maze {cells} cells")
        matrix = np.full((maze.height, maze.width), -np.inf)
        for pair in pairs:
            key, value = pair if isinstance(pair, list) and len(pair) == 2 else (pair, None)
            if not (isinstance(key, list) and len(key) == 2 and all(type(k) is int for k in key)
                    and maze.inside((key[0], key[1]))):
                raise ValueError(f"value dict key {excerpt(repr(key), 80)} is not a (row, col) of the maze")
            matrix[key[0], key[1]] = _number(value)
        return matrix
    rows = raw if isinstance(raw, list) else None
    if rows is None or len(rows) != maze.height or any(not isinstance(r, list) or len(r) != maze.width
                                                       for r in rows):
        widths = sorted({len(r) if isinstance(r, list) else -1 for r in rows or []})
        got = f"{len(rows)} rows of widths {widths[:4]}" if rows is not None else f"a {type(raw).__name__}"
        raise ValueError(f"value_iteration(maze) returned {got}, not a matrix of the maze's shape "
                         f"{(maze.height, maze.width)}")
    return np.array([[_number(v) for v in row] for row in rows], dtype=float)


def _number(value: Any) -> float:
    """A value of the script's table as a float; ValueError for anything that is not a real number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"value {excerpt(repr(value), 80)} is not a number")
    try:
        number = float(value)
    except OverflowError:
        raise ValueError(f"value {excerpt(repr(value), 80)} does not fit a float") from None
    if number != number:
        raise ValueError("value NaN is not a number")
    return number


def _size(value: Any) -> str:
    return str(len(value)) if isinstance(value, list) else f"no list of ({type(value).__name__})"


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """At most ``limit`` characters of model-made text for a record, and how much was cut: one reply could
    otherwise store megabytes in a record."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit} more characters)"


def score_script(code: str, problem: MazeProblem, limits: SandboxLimits | None = None) -> CodeScore:
    """Run one script in the sandbox and score execution and path accuracy against ``problem``."""
    maze = problem.maze
    actions = problem.config.actions
    run = run_script(code, EPILOGUE, limits)
    base = {"optimal_length": problem.optimal_length, "seconds": run.seconds}
    if not run.ok:
        return CodeScore(executed=False, status=run.status, error=excerpt(run.error), **base)
    result = run.result if isinstance(run.result, dict) else {}
    try:
        values = _value_matrix(result.get("values"), maze)
    except ValueError as e:  # it ran (the paper's execution success) but gave no path to score
        return CodeScore(executed=True, status="bad_output", error=str(e), **base)
    path = greedy_path(values, maze, actions)
    shortest = path[-1] == maze.goal and len(path) - 1 == problem.optimal_length
    reference = greedy_path(solve_maze(maze, actions, problem.config.reward).values, maze, actions)
    copied = result.get("maze") == problem.grid
    return CodeScore(executed=True, identical_path=path == reference, shortest_path=shortest, status="ok",
                     error=_path_error(path, reference, maze, problem.optimal_length),
                     maze_copied=copied, path=path, path_length=len(path) - 1, **base)


def _path_error(path: list[Position], reference: list[Position], maze: Maze, optimal: int) -> str:
    """Why the path is not the reference's ("" when it is)."""
    if path[-1] != maze.goal:
        return f"the greedy path stops at {path[-1]} after {len(path) - 1} moves without reaching the goal"
    if len(path) - 1 != optimal:
        return f"the greedy path reaches the goal in {len(path) - 1} moves; the optimum is {optimal}"
    if path != reference:
        return "the greedy path is a shortest path but not the reference's (values break a tie differently)"
    return ""


def messages_for(problem: MazeProblem, shots: Sequence[MazeProblem] = (),
                 prompt: Prompt = "paper") -> list[BaseMessage]:
    """The request for one problem.

    ``"paper"``: one user message and no system message; the problem description alone (Figure 2), or with
    ``shots`` the paper's prompt tuning (Figure 3, :func:`~map_agent.tasks.maze.data.prompt_tuning_prompt`).
    ``"map-agent"``: this project's system contract, the shots as earlier chat turns with fenced scripts, then
    the problem.
    """
    if prompt == "paper":
        return [HumanMessage(prompt_tuning_prompt(problem, shots) if shots else user_prompt(problem, prompt))]
    messages: list[BaseMessage] = [SystemMessage(system_prompt(prompt))]
    for shot in shots:
        messages += [HumanMessage(user_prompt(shot, prompt)),
                     AIMessage(f"```python\n{reference_script(shot)}```")]
    return [*messages, HumanMessage(user_prompt(problem, prompt))]


def evaluate(llm: BaseChatModel, problems: Sequence[MazeProblem], out: Path | str, *, shots: int = 0,
             prompt: Prompt = "paper", seed: int = DEFAULT_SEED, limits: SandboxLimits | None = None,
             meta: dict[str, Any] | None = None, tick: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Ask ``llm`` for a script per problem, score it, append to ``out/records.jsonl``; returns the summary.
    ``tick(note)`` is called after each problem (a progress display: a script takes a model call and a sandbox).

    A problem whose model call fails (network, quota) gets no record, so the next run retries it. Raises
    SandboxUnavailable, before any model call, where the scripts could not be run under OS isolation.
    """
    check_isolation(limits or SandboxLimits())
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records = out / "records.jsonl"
    done = {r["id"] for r in read_records(records) if "id" in r}
    examples = training_problems(max(shots, 1), seed)[:shots]
    failures: dict[str, str] = {}
    tick = tick or (lambda note: None)
    scrub = redactor(llm)
    succeeded = 0
    for problem in problems:
        if problem.id in done:
            tick(f"{problem.id}: done earlier")
            continue
        started = time.perf_counter()
        try:
            reply = llm.invoke(messages_for(problem, examples, prompt))
        except Exception as e:  # the model's failure is this problem's, never the run's
            failures[problem.id] = scrub(f"{type(e).__name__}: {e}")[:500]  # a server may echo the URL or key
            print(f"maze-code: {problem.id}: model call failed: {failures[problem.id]}", file=sys.stderr)
            tick(f"{len(failures)} model calls failed")
            continue
        text = reply.content if isinstance(reply.content, str) else str(reply.content)
        score = score_script(extract_code(text), problem, limits)
        usage = reply.usage_metadata or {}
        record = {"id": problem.id, "test_set": problem.test_set, "config": problem.config.name,
                  "config_source": problem.config_source, "prompt": prompt,
                  **score.model_dump(mode="json"), "reply": excerpt(text),
                  "input_tokens": usage.get("input_tokens", 0),
                  "output_tokens": usage.get("output_tokens", 0),
                  "total_seconds": time.perf_counter() - started}
        append_record(records, record)
        succeeded += score.executed
        tick(f"scripts ran {succeeded}")
    summary = summarise(records, [p.id for p in problems], {"prompt": prompt, "shots": shots, **(meta or {})})
    summary["model_failures"] = failures
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary


def summarise(records: Path, ids: Sequence[str], meta: dict[str, Any]) -> dict[str, Any]:
    """Rates over the records of ``ids`` (the last record of an id wins): the paper's code execution success and
    solution accuracy (identical path), and beside it this project's shortest-path accuracy."""
    wanted = set(ids)
    latest = {rec["id"]: rec for rec in read_records(records) if rec.get("id") in wanted}
    rows = list(latest.values())
    n = len(rows)

    def rate(key: str) -> float | None:
        return sum(bool(r[key]) for r in rows) / n if n else None

    return {**meta, "problems": len(wanted), "scored": n, "code_execution_success": rate("executed"),
            "solution_accuracy": rate("identical_path"), "solution_accuracy_shortest_path": rate("shortest_path"),
            "maze_copied": rate("maze_copied"), "status": dict(Counter(r["status"] for r in rows)),
            "input_tokens": sum(r.get("input_tokens", 0) for r in rows),
            "output_tokens": sum(r.get("output_tokens", 0) for r in rows)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``map-agent eval maze-code``'s arguments: its own, then the shared ones (``map_agent.options``)."""
    parser.add_argument("--test-set", type=int, choices=TEST_SETS, required=True)
    parser.add_argument("--shots", type=int_in(0, 20), default=0,
                        help="solved training examples before the problem")
    parser.add_argument("--prompt", choices=PROMPTS, default="paper",
                        help="the paper's prompt (default) or this project's system prompt and chat turns (map-agent)")
    parser.add_argument("--script-timeout", type=seconds, default=20.0, help="wall-clock seconds per script")
    parser.add_argument("--unsafe-sandbox", action="store_true",
                        help="where the OS cannot isolate model code (no user namespaces, seccomp or Landlock), run "
                             "it anyway with rlimits, seccomp and Landlock as available: trusted models only")
    add_options(parser, "limit", "out", "run_id", "seed", "chat model", defaults={"seed": DEFAULT_SEED},
                backends=("openai", "local"))


def cli_run(args: argparse.Namespace) -> int:
    """Run ``map-agent eval maze-code`` (the CLI parsed ``args``); exit status."""
    limits = SandboxLimits(wall_s=args.script_timeout, cpu_s=max(1, int(args.script_timeout)),
                           allow_weak_isolation=args.unsafe_sandbox)
    try:
        check_isolation(limits)
    except SandboxUnavailable as e:
        print(f"map-agent eval maze-code: {e}", file=sys.stderr)
        return 2
    from map_agent.llm import make_chat_model
    from map_agent.llm.backends import check_endpoint

    llm = make_chat_model(args.backend, args.model, **chat_options(args, max_tokens=2048))  # a script: ~1000
    check_endpoint(llm)  # a dead endpoint fails here, once, not as one failed call per problem
    problems = load_test_set(args.test_set, args.seed)[: args.limit]
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(args.model).name if args.model else args.backend)
    suffix = "" if args.prompt == "paper" else f"-{args.prompt}"
    out = Path(args.out) / (args.run_id or f"maze-code-test{args.test_set}-{name}{suffix}")
    meta = {"test_set": args.test_set, "backend": args.backend, "model": args.model, "seed": args.seed}
    from map_agent.progress import progress

    with progress(out.name, len(problems)) as display:
        summary = evaluate(llm, problems, out, shots=args.shots, prompt=args.prompt, seed=args.seed,
                           limits=limits, meta=meta, tick=lambda note: display.lines[0].advance(note=note))
    print(f"records: {out / 'records.jsonl'}", file=sys.stderr)
    print(json.dumps({k: v for k, v in summary.items() if k != "model_failures"}, indent=2))
    failures = summary.get("model_failures") or {}
    if problems and len(failures) == len(problems):  # nothing was scored: not a result, whatever the rates say
        print(f"error: every model call failed ({len(failures)} of {len(problems)}); the first: "
              f"{next(iter(failures.values()))}", file=sys.stderr)
        return 1
    return 0
