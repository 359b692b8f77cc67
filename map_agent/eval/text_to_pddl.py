"""Planetarium's text-to-PDDL evaluation: parseable, solvable and correct, by abstraction and size.

Metrics, as the paper defines them:

* **parseable** -- a STRIPS PDDL problem parses from a substring of the model's output (the first
  ``(define (problem ...)`` with balanced parentheses) and converts to scene graphs (known predicates and
  objects, positive goals);
* **solvable** -- parseable and a plan reaches its goal from its initial state
  (:func:`map_agent.tools.planners.solve`);
* **correct** -- solvable and equivalent to the ground truth (:func:`map_agent.tools.equivalence.equivalence`,
  in placeholder mode by the reference implementation's per-task rule,
  :func:`map_agent.tasks.planetarium.generator.is_placeholder`: when the description is abstract on either side,
  except for swap, invert, swap rooms and move to max / min, which are always checked with object identity).

Runs are append-only and resumable: ``records.jsonl`` gets one line per instance (instances already recorded are
skipped on a rerun) and ``summary.json`` is recomputed from all records.

Example:
    >>> cli_main(["--backend", "openai", "--model", "gpt-4o", "--limit", "20", "--out", "runs/t2p"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel

from map_agent.eval.records import append_record, read_records
from map_agent.llm.backends import redactor
from map_agent.options import add_options, chat_options
from map_agent.prompts import PROMPT_ROOT
from map_agent.tasks.planetarium.generator import Instance, domain_text, generate
from map_agent.tools.equivalence import equivalence
from map_agent.tools.planners import solve
from map_agent.tools.strips import PDDLError, Strips

__all__ = ["Score", "extract_problem", "run", "score", "summarise"]

PROMPT_FILE = PROMPT_ROOT / "planetarium" / "text_to_pddl.md"
_START = re.compile(r"\(\s*define\s*\(\s*problem\b", re.IGNORECASE)


class Score(BaseModel):
    """The three metrics of one generated problem, and why it failed where it did."""

    parseable: bool
    solvable: bool
    correct: bool
    error: str = ""


def extract_problem(text: str) -> str | None:
    """The first balanced ``(define (problem ...) ...)`` in ``text`` (code fences and prose around it ignored)."""
    match = _START.search(text)
    if not match:
        return None
    depth = 0
    for i in range(match.start(), len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return text[match.start():i + 1]
    return None


def score(instance: Instance, output: str) -> Score:
    """Score one model output against the instance's ground truth."""
    problem = extract_problem(output)
    if problem is None:
        return Score(parseable=False, solvable=False, correct=False, error="no (define (problem ...)) found")
    domain = domain_text(instance.domain)
    try:
        candidate = Strips.from_text(domain, problem, problem_source=f"output for {instance.id}")
        if candidate.goal_neg:
            raise PDDLError(f"output for {instance.id}: negative goals are not STRIPS")
    except PDDLError as exc:
        return Score(parseable=False, solvable=False, correct=False, error=str(exc))
    if solve(candidate) is None:
        return Score(parseable=True, solvable=False, correct=False, error="no plan reaches the goal")
    reference = Strips.from_text(domain, instance.problem_pddl, problem_source=f"ground truth {instance.id}")
    verdict = equivalence(reference, candidate, is_placeholder=instance.is_placeholder)
    return Score(parseable=True, solvable=True, correct=verdict.equivalent,
                 error="" if verdict.equivalent else f"not equivalent ({verdict.stage}: {verdict.reason})")


def _messages(instance: Instance, instructions: str) -> list:
    user = (f"Domain:\n```pddl\n{domain_text(instance.domain).strip()}\n```\n\n"
            f"Problem description:\n{instance.natural_language}")
    return [SystemMessage(content=instructions), HumanMessage(content=user)]


def _rate(records: list[dict]) -> dict:
    n = len(records)
    return {"n": n, **{m: (sum(r[m] for r in records) / n if n else 0.0) for m in ("parseable", "solvable",
                                                                                 "correct")}}


def summarise(records: Iterable[dict]) -> dict:
    """Overall rates, and rates by abstraction (``explicit_to_abstract`` ...), size bin, domain, task and
    placeholder mode (the reference implementation's ``placeholder`` / ``non-placeholder`` split)."""
    records = list(records)
    groups: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        groups["abstraction"][f"{r['init_abstraction']}_to_{r['goal_abstraction']}"].append(r)
        groups["size"][r["size_bin"]].append(r)
        groups["domain"][r["domain"]].append(r)
        groups["task"][r["task"]].append(r)
        groups["placeholder"]["placeholder" if r["is_placeholder"] else "non-placeholder"].append(r)
    return {"overall": _rate(records),
            **{name: {k: _rate(v) for k, v in sorted(g.items())} for name, g in groups.items()}}


def run(llm: BaseChatModel, instances: Iterable[Instance], out: Path | str,
        prompt_file: Path = PROMPT_FILE, tick: Callable[[str], None] | None = None) -> dict:
    """Ask ``llm`` for each instance's PDDL, append a record per instance and write ``summary.json``;
    ``tick(note)`` after each instance (a progress display)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records_path = out / "records.jsonl"
    done = {r["id"]: r for r in read_records(records_path) if "id" in r}
    instructions = prompt_file.read_text()
    tick = tick or (lambda note: None)
    for instance in instances:
        if instance.id in done:
            tick(f"{instance.id}: done earlier")
            continue
        try:
            reply = llm.invoke(_messages(instance, instructions))
        except Exception as e:  # the model's failure is this instance's, never the run's: no record, so a rerun retries
            print(redactor(llm)(f"text-to-pddl: {instance.id}: model call failed: {type(e).__name__}: {e}")[:500],
                  file=sys.stderr)  # a server may echo the URL or key
            tick(f"{instance.id}: model call failed")
            continue
        output = reply.content if isinstance(reply.content, str) else json.dumps(reply.content)
        verdict = score(instance, output)
        record = {**instance.model_dump(exclude={"natural_language", "problem_pddl"}), "output": output,
                  **verdict.model_dump(), "usage": getattr(reply, "usage_metadata", None) or {}}
        append_record(records_path, record)
        done[instance.id] = record
        tick(f"correct {sum(bool(r.get('correct')) for r in done.values())}")
    summary = summarise(done.values())
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``map-agent eval text-to-pddl``'s arguments, all shared (``map_agent.options``)."""
    add_options(parser, "limit", "out", "run_id", "seed", "chat model", defaults={"limit": 56, "seed": 0},
                backends=("local", "openai"))


def cli_run(args: argparse.Namespace) -> int:
    """Run ``map-agent eval text-to-pddl`` (the CLI parsed ``args``); exit status."""
    from map_agent.llm import make_chat_model

    # a 60-block problem is ~1,500 tokens
    from map_agent.llm.backends import check_endpoint

    llm = make_chat_model(args.backend, args.model, **chat_options(args, max_tokens=2048))
    check_endpoint(llm)  # a dead endpoint fails here, once, not as one failed call per instance
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(args.model).name if args.model else args.backend)
    out = Path(args.out) / (args.run_id or f"text-to-pddl-{name}-seed{args.seed}")
    from map_agent.progress import progress

    instances = list(generate(args.limit, seed=args.seed))
    with progress(out.name, len(instances)) as display:
        summary = run(llm, instances, out, tick=lambda note: display.lines[0].advance(note=note))
    print(f"records: {out / 'records.jsonl'}", file=sys.stderr)
    print(json.dumps(summary["overall"]))
    if instances and not summary["overall"]["n"]:  # every model call failed: nothing was scored
        print("error: every model call failed; nothing was scored (see the lines above)", file=sys.stderr)
        return 1
    return 0
