"""Training data for MAP's modules from a task's oracles: ``map-agent distill``.

Every example is a module call as the fine-tuned model will see it -- the LLM module's own messages, built from
the public problem with the short fine-tuning prompt (``prompts/<task>/<module>.ft.md`` when it exists, no
in-context examples) -- answered by the module's symbolic oracle, reasoning included where the module reasons
first: the oracle's reasoning is the check spelled out (``Task.explain`` for the Monitor), so a small model learns
to work the verdict out rather than guess it. States come from optimal rollouts and from noisy ones (a random
legal action with probability ``epsilon``), so the modules also see off-path states; the Monitor sees legal
actions and actions that are legal elsewhere but not here, in equal numbers, and the Actor also sees the
Monitor's note on such a rejected proposal, as a later round of the search shows it.

The split is stated, not sampled: the problems of ``--split`` make the training set and those of ``--heldout``
the held-out one (Hanoi: train on the three-disk problems, hold out the four-disk ones; mazes: training
configurations vs test sets), and ``manifest.json`` records both.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import BaseMessage
from pydantic import BaseModel

from map_agent.config import MAPConfig
from map_agent.modules import ORACLES, build_modules
from map_agent.modules.base import make_input
from map_agent.modules.oracle import OracleModule
from map_agent.modules.schemas import MonitorInput
from map_agent.search.algorithms import rejection_note
from map_agent.task import MODULES, Problem, Task, canonical, shortest_path

#: the prompt variant of fine-tuned models (short role, no in-context examples)
FT_CONFIG = MAPConfig(prompts="ft", modules=dict.fromkeys(MODULES, "llm"), n_subgoals=1)
_ROLES = {"system": "system", "human": "user", "ai": "assistant"}


def visited_states(task: Task, problem: Problem, rng: random.Random, *, noisy: int, epsilon: float) -> list[Any]:
    """States on an optimal path from the start, then on ``noisy`` epsilon-greedy rollouts of N actions."""
    start, goal = task.start(problem), task.goal(problem)
    path = shortest_path(task, start, goal, problem)
    states = [task.State.model_validate(s) for s in path.states] or [start]
    optimal = [task.Action.model_validate(a) for a in path.actions]
    for _ in range(noisy):
        state = start
        for i in range(problem.max_actions):
            legal = task.legal_actions(state, problem)
            if not legal or task.satisfies(state, goal, problem):
                break
            on_path = i < len(optimal) and rng.random() >= epsilon and optimal[i] in legal
            state = task.apply(state, optimal[i] if on_path else rng.choice(legal), problem)
            states.append(state)
            if not on_path:
                optimal = []  # off the optimal path: the rest of the rollout is a random walk
    unique: dict[str, Any] = {}
    for s in states:
        unique.setdefault(canonical(s), s)
    return list(unique.values())


def module_inputs(task: Task, problem: Problem, states: list[Any], rng: random.Random,
                  monitor: OracleModule) -> Iterator[tuple[str, dict]]:
    """(module, raw input) pairs covering every module on the visited states; ``monitor`` (the oracle) writes the
    verdicts that later Actor rounds are told of."""
    goal = task.goal(problem)
    final = [s for s in states if task.satisfies(s, goal, problem)]
    yield "TaskDecomposer", {"state": problem.start, "goal": problem.goal, "n_subgoals": 1}
    everywhere = [a for s in states for a in task.legal_actions(s, problem)]
    for state in states:
        s, g = state.model_dump(mode="json"), goal.model_dump(mode="json")
        legal = task.legal_actions(state, problem)
        yield "Evaluator", {"state": s, "goal": g}
        yield "Orchestrator", {"state": s, "goal": g}
        if not legal:
            continue
        yield "Actor", {"state": s, "goal": g, "n_actions": min(2, len(legal))}
        action = rng.choice(legal)
        yield "Predictor", {"state": s, "action": action.model_dump(mode="json")}
        yield "Monitor", {"state": s, "action": action.model_dump(mode="json")}
        illegal = [a for a in everywhere if a not in legal]
        if illegal:
            wrong = rng.choice(illegal)
            yield "Monitor", {"state": s, "action": wrong.model_dump(mode="json")}
            # a later Actor round, as the search sends it: the Monitor's note on a rejected proposal
            verdict = monitor.compute(MonitorInput(state=state, action=wrong)).model_dump()
            yield "Actor", {"state": s, "goal": g, "n_actions": min(2, len(legal)),
                            "feedback": [rejection_note(task, wrong, verdict)]}
    for state in final[:1]:  # the Orchestrator must also learn to say yes
        yield "Orchestrator", {"state": state.model_dump(mode="json"), "goal": goal.model_dump(mode="json")}


def chat(messages: list[BaseMessage], reply: str) -> list[dict[str, str]]:
    return [*({"role": _ROLES[m.type], "content": str(m.content)} for m in messages),
            {"role": "assistant", "content": reply}]


def examples(task: Task, problem: Problem, *, seed: int = 0, noisy: int = 4,
             epsilon: float = 0.3) -> Iterator[dict[str, Any]]:
    """Chat examples for one problem: ``{"module", "task", "problem", "input", "messages"}`` (the last message is
    the oracle's reply; ``input`` lets an evaluation ask the module the same question)."""
    rng = random.Random(f"{seed}|{task.name}|{problem.id}")
    resolved = FT_CONFIG.resolve(task, problem)
    llm = FakeListChatModel(responses=["{}"])  # only renders messages: never called
    modules = build_modules(task, problem, resolved, llm)
    oracles = {m: ORACLES[m](task, problem, reasoning=resolved.reasoning) for m in MODULES}
    seen: set[str] = set()
    states = visited_states(task, problem, rng, noisy=noisy, epsilon=epsilon)
    for module, raw in module_inputs(task, problem, states, rng, oracles["Monitor"]):
        inp = make_input(module, task, raw)
        messages = modules[module].messages(inp)
        reply = oracles[module].compute(inp)
        text = modules[module].output_model.model_validate(reply.model_dump()).model_dump_json()
        record = {"module": module, "task": task.name, "problem": problem.id, "input": inp.model_dump(mode="json"),
                  "messages": chat(messages, text)}
        fingerprint = json.dumps(record["messages"])
        if fingerprint not in seen:
            seen.add(fingerprint)
            yield record


class Manifest(BaseModel):
    """What a distilled data set holds and how it was split."""

    task: str
    train_split: str
    heldout_split: str | None
    seed: int
    noisy_rollouts: int
    epsilon: float
    counts: dict[str, dict[str, int]]  # part -> module -> examples


def distill(task: Task, split: str, out: Path, *, heldout: str | None = None, seed: int = 0, noisy: int = 4,
            epsilon: float = 0.3, limit: int | None = None,
            tick: Callable[[str, int], None] | None = None) -> Manifest:
    """Write ``out/train/<module>.jsonl`` (and ``out/heldout/...``) and ``out/manifest.json``; ``tick(part,
    n_problems)`` as each problem of a part starts (a progress display: oracle rollouts take a while)."""
    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, dict[str, int]] = {}
    for part, name in (("train", split), ("heldout", heldout)):
        if name is None:
            continue
        folder = out / part
        folder.mkdir(exist_ok=True)
        files: dict[str, Any] = {}
        try:
            problems = task.problems(name)[:limit]
            for problem in problems:
                if tick:
                    tick(part, len(problems))
                for ex in examples(task, problem, seed=seed, noisy=noisy, epsilon=epsilon):
                    if ex["module"] not in files:
                        files[ex["module"]] = (folder / f"{ex['module']}.jsonl").open("w", encoding="utf-8")
                    files[ex["module"]].write(json.dumps(ex) + "\n")
                    counts.setdefault(part, {}).setdefault(ex["module"], 0)
                    counts[part][ex["module"]] += 1
        finally:
            for f in files.values():
                f.close()
    manifest = Manifest(task=task.name, train_split=split, heldout_split=heldout, seed=seed, noisy_rollouts=noisy,
                        epsilon=epsilon, counts=counts)
    (out / "manifest.json").write_text(manifest.model_dump_json(indent=2))
    return manifest
