"""Training data for MAP's modules from a task's oracles: ``map-agent distill``.

Every example is a module call as the fine-tuned model will see it -- the LLM module's own messages, built from
the public problem with the short fine-tuning prompt (``prompts/<task>/<module>.ft.md`` when it exists, no
in-context examples) -- answered by the module's symbolic oracle, reasoning included where the module reasons
first: the oracle's reasoning is the check spelled out (``Task.explain`` for the Monitor), so a small model learns
to work the verdict out rather than guess it. States come from optimal rollouts and from noisy ones (a random
legal action with probability ``epsilon``), so the modules also see off-path states -- or, with ``states="all"``,
every state reachable from the start with every legal action in it: a small world covered whole, which a model
must fit exactly before it can be asked to generalise. The Monitor sees legal actions and actions that are legal
elsewhere but not here, in equal numbers, and the Actor also sees the Monitor's note on such a rejected proposal,
as a later round of the search shows it. A part holds each distinct example once (problems of one world share
most of their module calls).

The split is stated, not sampled: the problems of ``--split`` make the training set and those of ``--heldout``
the held-out one (Hanoi: train on the 2-, 3- and 5-disk worlds, hold out the four-disk problems; mazes: training
configurations vs test sets), and ``manifest.json`` records both with their sizes. ``heldout_leaks`` checks the
split on the data itself: no state of a held-out example may appear in a training example.
"""

from __future__ import annotations

import json
import random
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import BaseMessage
from pydantic import BaseModel, Field, field_validator

from map_agent.config import MAPConfig
from map_agent.modules import ORACLES, build_modules
from map_agent.modules.base import make_input
from map_agent.modules.oracle import OracleModule
from map_agent.modules.schemas import MonitorInput
from map_agent.search.algorithms import rejection_note
from map_agent.task import MODULES, Problem, Task, canonical, shortest_path

#: the settings a model trained on this data must run with (an adapter card's ``config``): the short prompts
#: without in-context examples, no move history (distilled Actor calls carry none), reasoning where a module reasons
RUN_WITH = {"prompts": "ft", "actor_history": False, "reasoning": True}
#: the prompt variant of fine-tuned models (short role, no in-context examples)
FT_CONFIG = MAPConfig(**RUN_WITH, modules=dict.fromkeys(MODULES, "llm"), n_subgoals=1)
#: the most states ``states="all"`` covers: a world larger than this is sampled by rollouts instead
MAX_STATES = 20_000
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


def reachable_states(task: Task, problem: Problem, limit: int = MAX_STATES) -> list[Any]:
    """Every state reachable from the problem's start, breadth first (Hanoi: the whole world, 3^n states);
    ``ValueError`` past ``limit`` states, where a world is too large to cover whole."""
    start = task.start(problem)
    seen, frontier = {canonical(start): start}, deque([start])
    while frontier:
        state = frontier.popleft()
        for action in task.legal_actions(state, problem):
            nxt = task.apply(state, action, problem)
            if canonical(nxt) not in seen:
                if len(seen) >= limit:
                    raise ValueError(f"{task.name}/{problem.id}: more than {limit} reachable states; "
                                     f"distill it with --states rollouts")
                seen[canonical(nxt)] = nxt
                frontier.append(nxt)
    return list(seen.values())


def module_inputs(task: Task, problem: Problem, states: list[Any], rng: random.Random,
                  monitor: OracleModule, *, every_action: bool = False, seed: int = 0,
                  covered: set[str] | None = None) -> Iterator[tuple[str, dict]]:
    """(module, raw input) pairs covering every module on the visited states; ``monitor`` (the oracle) writes the
    verdicts that later Actor rounds are told of. The Predictor and the Monitor see one random legal action per
    state, or, with ``every_action``, each of them, with random choices seeded by ``seed`` and the state alone:
    then every problem of a world asks the same questions of a state, and the states in ``covered`` (state and
    goal, as ``canonical``; grown here) were asked already."""
    goal = task.goal(problem)
    final = [s for s in states if task.satisfies(s, goal, problem)]
    yield "TaskDecomposer", {"state": problem.start, "goal": problem.goal, "n_subgoals": 1}
    everywhere = [a for s in states for a in task.legal_actions(s, problem)]
    distinct = list({canonical(a): a for a in everywhere}.values())
    for state in states:
        if covered is not None:
            if (key := canonical(state) + canonical(goal)) in covered:
                continue
            covered.add(key)
        if every_action:
            rng = random.Random(f"{seed}|{task.name}|{canonical(state)}")
        s, g = state.model_dump(mode="json"), goal.model_dump(mode="json")
        legal = task.legal_actions(state, problem)
        yield "Evaluator", {"state": s, "goal": g}
        yield "Orchestrator", {"state": s, "goal": g}
        if not legal:
            continue
        yield "Actor", {"state": s, "goal": g, "n_actions": min(2, len(legal))}
        actions = legal if every_action else [rng.choice(legal)]
        for action in actions:
            yield "Predictor", {"state": s, "action": action.model_dump(mode="json")}
            yield "Monitor", {"state": s, "action": action.model_dump(mode="json")}
        illegal = [a for a in everywhere if a not in legal]
        if illegal:
            # as many illegal actions as legal ones for the Monitor (distinct ones when every action is covered)
            wrongs = (rng.sample(d := [a for a in distinct if a not in legal], min(len(actions), len(d)))
                      if every_action else [rng.choice(illegal)])
            for wrong in wrongs:
                yield "Monitor", {"state": s, "action": wrong.model_dump(mode="json")}
            # a later Actor round, as the search sends it: the Monitor's note on a rejected proposal
            verdict = monitor.compute(MonitorInput(state=state, action=wrongs[0])).model_dump()
            yield "Actor", {"state": s, "goal": g, "n_actions": min(2, len(legal)),
                            "feedback": [rejection_note(task, wrongs[0], verdict)]}
    for state in final[:1]:  # the Orchestrator must also learn to say yes
        yield "Orchestrator", {"state": state.model_dump(mode="json"), "goal": goal.model_dump(mode="json")}


def chat(messages: list[BaseMessage], reply: str) -> list[dict[str, str]]:
    return [*({"role": _ROLES[m.type], "content": str(m.content)} for m in messages),
            {"role": "assistant", "content": reply}]


def examples(task: Task, problem: Problem, *, seed: int = 0, noisy: int = 4, epsilon: float = 0.3,
             states: Literal["rollouts", "all"] = "rollouts",
             covered: set[str] | None = None) -> Iterator[dict[str, Any]]:
    """Chat examples for one problem: ``{"module", "task", "problem", "input", "messages"}`` (the last message is
    the oracle's reply; ``input`` lets an evaluation ask the module the same question), on the states of
    rollouts or on every reachable state (``states="all"``, skipping the ``covered`` ones: see
    ``module_inputs``)."""
    rng = random.Random(f"{seed}|{task.name}|{problem.id}")
    resolved = FT_CONFIG.resolve(task, problem)
    llm = FakeListChatModel(responses=["{}"])  # only renders messages: never called
    modules = build_modules(task, problem, resolved, llm)
    oracles = {m: ORACLES[m](task, problem, reasoning=resolved.reasoning) for m in MODULES}
    every = states == "all"
    visited = reachable_states(task, problem) if every else visited_states(task, problem, rng, noisy=noisy,
                                                                           epsilon=epsilon)
    for module, raw in module_inputs(task, problem, visited, rng, oracles["Monitor"], every_action=every, seed=seed,
                                     covered=covered if every else None):
        inp = make_input(module, task, raw)
        messages = modules[module].messages(inp)
        reply = oracles[module].compute(inp)
        text = modules[module].output_model.model_validate(reply.model_dump()).model_dump_json()
        yield {"module": module, "task": task.name, "problem": problem.id, "input": inp.model_dump(mode="json"),
               "messages": chat(messages, text)}


def fingerprint(example: dict[str, Any]) -> str:
    """What makes two examples the same: their messages (the problem they came from does not matter -- problems
    of one world ask most module questions alike, and a repeated example only weighs more in training)."""
    return json.dumps(example["messages"], sort_keys=True)


def example_states(examples: Iterable[dict[str, Any]]) -> set[str]:
    """The states and goals the examples' inputs show, as canonical JSON (``canonical`` of the model)."""
    return {json.dumps(ex["input"][k], sort_keys=True, separators=(",", ":"))
            for ex in examples for k in ("state", "goal") if isinstance(ex["input"].get(k), dict)}


def heldout_leaks(train: Iterable[dict[str, Any]], heldout_states: set[str]) -> set[str]:
    """The held-out states that a training example shows: empty when the split holds. A held-out number is
    only honest when this is empty; ``map-agent train`` checks it before it reports one, and the tests check it
    for every shipped adapter whose card reports one."""
    return example_states(train) & heldout_states


class Manifest(BaseModel):
    """What a distilled data set holds and how it was split."""

    task: str
    train_split: list[str]
    heldout_split: list[str] | None
    states: Literal["rollouts", "all"] = "rollouts"
    seed: int
    noisy_rollouts: int
    epsilon: float
    sizes: dict[str, list[int]] = Field(default_factory=dict, description="part -> sizes of its problems "
                                        "(Task.size: Hanoi disks)")
    run_with: dict[str, Any] = Field(default_factory=dict, description="settings a model trained on it runs with")
    counts: dict[str, dict[str, int]]  # part -> module -> distinct examples
    duplicates: dict[str, int] = Field(default_factory=dict, description="part -> repeated examples left out")

    @field_validator("train_split", "heldout_split", mode="before")
    @classmethod
    def _splits(cls, value: Any) -> Any:
        """Data distilled before several splits could make a part names one split."""
        return [value] if isinstance(value, str) else value


def distill(task: Task, split: str | list[str], out: Path, *, heldout: str | list[str] | None = None,
            seed: int = 0, noisy: int = 4, epsilon: float = 0.3, states: Literal["rollouts", "all"] = "rollouts",
            limit: int | None = None, tick: Callable[[str, int], None] | None = None) -> Manifest:
    """Write ``out/train/<module>.jsonl`` (and ``out/heldout/...``) and ``out/manifest.json``, each distinct
    example once per part; ``split`` and ``heldout`` name one split or several; ``limit`` caps the problems of
    each split; ``tick(part, n_problems)`` as each problem of a part starts (a progress display: oracle rollouts
    take a while)."""
    splits = {"train": [split] if isinstance(split, str) else list(split),
              "heldout": [heldout] if isinstance(heldout, str) else list(heldout or [])}
    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, dict[str, int]] = {}
    sizes: dict[str, list[int]] = {}
    duplicates: dict[str, int] = {}
    for part, names in splits.items():
        if not names:
            continue
        folder = out / part
        folder.mkdir(exist_ok=True)
        files: dict[str, Any] = {}
        seen: set[str] = set()
        covered: set[str] = set()
        try:
            problems = [p for name in names for p in task.problems(name)[:limit]]
            sizes[part] = sorted({n for p in problems if (n := task.size(p)) is not None})
            for problem in problems:
                if tick:
                    tick(part, len(problems))
                for ex in examples(task, problem, seed=seed, noisy=noisy, epsilon=epsilon, states=states,
                                   covered=covered):
                    if fingerprint(ex) in seen:
                        duplicates[part] = duplicates.get(part, 0) + 1
                        continue
                    seen.add(fingerprint(ex))
                    if ex["module"] not in files:
                        files[ex["module"]] = (folder / f"{ex['module']}.jsonl").open("w", encoding="utf-8")
                    files[ex["module"]].write(json.dumps(ex) + "\n")
                    counts.setdefault(part, {}).setdefault(ex["module"], 0)
                    counts[part][ex["module"]] += 1
        finally:
            for f in files.values():
                f.close()
    manifest = Manifest(task=task.name, train_split=splits["train"], heldout_split=splits["heldout"] or None,
                        states=states, seed=seed, noisy_rollouts=noisy, epsilon=epsilon, sizes=sizes,
                        run_with=RUN_WITH, counts=counts, duplicates=duplicates)
    (out / "manifest.json").write_text(manifest.model_dump_json(indent=2))
    return manifest
