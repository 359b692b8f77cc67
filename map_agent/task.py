"""The declared interface between MAP and a task.

A task owns its ground truth (pyperplan's ``Task``: goal test and successors, here also legality with a reason
and distance to goal). That is what makes oracle modules, honest scoring and module diagnostics possible, and it
is the only thing the core knows about a task: the core never branches on a task's name.

A task is generic over three pydantic types:

* ``State``  -- a full state of the environment (what the Predictor predicts);
* ``Action`` -- one action (what the Actor proposes and the Monitor judges);
* ``Goal``   -- a (sub)goal; often the same type as ``State``, but partial goals (PDDL goal facts) differ.

Everything crossing the task boundary is a pydantic model, so it serialises into graph state, checkpoints and
JSONL records, and its JSON schema constrains the local model's decoding.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

S = TypeVar("S", bound=BaseModel)
A = TypeVar("A", bound=BaseModel)
G = TypeVar("G", bound=BaseModel)

#: Names of the six MAP modules, in the paper's order.
MODULES = ("TaskDecomposer", "Actor", "Monitor", "Predictor", "Evaluator", "Orchestrator")


class InvalidProblem(ValueError):
    """A problem or data file that does not describe a valid instance; the message names file, field, problem."""


def load_json(text: str, source: str, expected: type, what: str) -> Any:
    """A data file's JSON, checked to be a ``expected`` (list or dict); errors name the file and the problem."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidProblem(f"{source}: not JSON: {e}") from None
    if not isinstance(raw, expected):
        raise InvalidProblem(f"{source}: expected a JSON {'list' if expected is list else 'object'} of {what}")
    return raw


class Problem(BaseModel):
    """One instance of a task: a start state, a goal and the action budget N."""

    model_config = ConfigDict(frozen=True)

    task: str
    id: str
    start: dict[str, Any] = Field(description="the start state, as the task's State model dumps it")
    goal: dict[str, Any] = Field(description="the final goal, as the task's Goal model dumps it")
    max_actions: int = Field(gt=0, description="N: the plan may hold at most this many actions")
    optimal_length: int | None = Field(default=None, ge=0, description="length of an optimal plan, if known")
    info: dict[str, Any] = Field(default_factory=dict, description="task-specific extras (graph text, split)")
    hidden: dict[str, Any] = Field(default_factory=dict,
                                   description="ground truth (target, optimal plan, answer label, decomposition): "
                                               "for scoring and oracles only, never shown to a model")

    def public(self) -> Problem:
        """What a model may see: the problem without its ground truth.

        LLM modules and baselines are built from this view only, so no prompt can be rendered from a hidden
        value; the leak test (``tests/test_no_leak.py``) checks that prompts do not change when the hidden part
        does.
        """
        return self.model_copy(update={"hidden": {}, "optimal_length": None})


#: How a transfer split's in-context examples from another problem read (``Problem.info["transfer_form"]``, which
#: the task's ``describe`` reads): "plans", the bare action lists (the original's ICL and MAP Actor prompts), or
#: "worked", every move with the facts it requires and the state it leads to (the original's CoT prompts).
TRANSFER_FORMS = ("plans", "worked")


def transfer_form(problem: Problem, form: str) -> Problem:
    """``problem`` with its transfer examples asked for in ``form`` (a task without such examples ignores it)."""
    if form not in TRANSFER_FORMS:
        raise ValueError(f"transfer form {form!r}; known: {', '.join(TRANSFER_FORMS)}")
    if problem.info.get("transfer_form", "plans") == form:
        return problem
    return problem.model_copy(update={"info": {**problem.info, "transfer_form": form}})


class Verdict(BaseModel):
    """The ground truth on one action in one state: legal or not, and why not."""

    model_config = ConfigDict(frozen=True)

    valid: bool
    reason: str = ""


def canonical(model: BaseModel) -> str:
    """A stable string key for a pydantic value: memo tables in the search and cache keys use it."""
    return json.dumps(model.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


class Task(ABC, Generic[S, A, G]):
    """A planning task: its types, its ground truth, its data and how it reads in a prompt.

    Subclasses set the class variables and implement the abstract methods. ``prompt_dir`` is where the module
    prompts live (``prompts/<name>/<module>.md`` plus ``<module>.examples.json``).
    """

    name: ClassVar[str]
    State: ClassVar[type[BaseModel]]
    Action: ClassVar[type[BaseModel]]
    Goal: ClassVar[type[BaseModel]]
    #: modules this task runs by default, following the paper's per-task setup; others are "off"
    default_modules: ClassVar[dict[str, str]] = {m: "llm" for m in MODULES}
    #: search defaults for the task (the paper's B=2, L=2 unless it says otherwise)
    default_search: ClassVar[bool] = True
    #: TaskDecomposer subgoals K; ``None`` lets the model write as many as it needs (up to ``max_subgoals``)
    default_subgoals: ClassVar[int | None] = 1
    max_subgoals: ClassVar[int] = 4
    #: the paper's number of runs per split (``map-agent eval``'s default ``--runs``); unlisted splits run once
    paper_runs: ClassVar[dict[str, int]] = {}
    #: with the Orchestrator off, each (sub)goal gets exactly this many actions, then the plan moves on
    #: (StrategyQA: one answer per question); ``None`` plans to N
    actions_per_goal: ClassVar[int | None] = None
    #: the final goal's actions skip the Monitor (StrategyQA's final answer, as the original)
    unmonitored_final: ClassVar[bool] = False
    #: where the original's script for this task differs from ``toh/gpt4_map_toh.py``: MAPConfig field -> the
    #: original's value here (StrategyQA: 5 Actor/Monitor tries, no move history); applied unless the user sets it
    protocol: ClassVar[dict[str, Any]] = {}
    #: modules whose replies reason before their verdict in the original (a ``reasoning`` field first)
    reasoning_modules: ClassVar[frozenset[str]] = frozenset({"TaskDecomposer", "Monitor", "Evaluator"})
    #: the state-dependent reply grammars ``reply_schema`` writes: module -> grammar names, as the MAPConfig fields
    #: ``actor_grammar`` and ``predictor_grammar`` take them (none: every module keeps its static schema)
    grammars: ClassVar[dict[str, tuple[str, ...]]] = {}

    # -- data --------------------------------------------------------------------------------------------
    @abstractmethod
    def splits(self) -> dict[str, str]:
        """Names of the evaluation splits with a one-line description each."""

    @abstractmethod
    def problems(self, split: str) -> list[Problem]:
        """The problems of a split, in the data's order; raises ``InvalidProblem`` on malformed data."""

    def problem(self, problem_id: str | int, split: str | None = None) -> Problem:
        """Look one problem up by id across the splits (or within ``split``)."""
        for name in [split] if split else list(self.splits()):
            for p in self.problems(name):
                if p.id == str(problem_id):
                    return p
        raise KeyError(f"{self.name}: no problem with id {problem_id!r}")

    def size(self, problem: Problem) -> int | None:
        """How large the problem's world is (Hanoi: its disks), so a fine-tuned model's card can say which sizes
        it was trained on and which it was tested on unseen; ``None`` for a task without one measure of size."""
        return None

    # -- typed views ---------------------------------------------------------------------------------------
    def start(self, problem: Problem) -> S:
        return self.State.model_validate(problem.start)  # type: ignore[return-value]

    def goal(self, problem: Problem) -> G:
        return self.Goal.model_validate(problem.goal)  # type: ignore[return-value]

    # -- ground truth ------------------------------------------------------------------------------------------
    @abstractmethod
    def check(self, state: S, action: A, problem: Problem) -> Verdict:
        """Whether the environment accepts ``action`` in ``state``; the reason names the broken rule."""

    def explain(self, state: S, action: A, problem: Problem) -> str:
        """The legality check spelled out step by step, written before the verdict: the oracle Monitor's
        reasoning, so a distilled Monitor learns to check each rule on the lists in front of it rather than to
        guess a bare verdict. The default states the verdict's reason."""
        return self.check(state, action, problem).reason or "the environment accepts it"

    @abstractmethod
    def apply(self, state: S, action: A, problem: Problem) -> S:
        """The successor of a valid action (callers check validity first)."""

    @abstractmethod
    def legal_actions(self, state: S, problem: Problem) -> list[A]:
        """Every action the environment accepts in ``state``, in a deterministic order."""

    @abstractmethod
    def satisfies(self, state: S, goal: G, problem: Problem) -> bool:
        """Goal test: does ``state`` achieve ``goal`` (a subgoal or the final goal)?"""

    def distance(self, state: S, goal: G, problem: Problem) -> float:
        """Fewest actions from ``state`` to any state satisfying ``goal``; ``inf`` if unreachable.

        The default is breadth-first search over ``legal_actions``/``apply``; tasks with large state spaces
        override it with a planner or a closed form.
        """
        return shortest_path(self, state, goal, problem).distance

    def oracle_subgoals(self, state: S, goal: G, n_subgoals: int, problem: Problem) -> list[G] | None:
        """The subgoals a perfect TaskDecomposer sets, when the task knows them (StrategyQA's annotated
        decomposition; a planner's landmarks). ``None`` lets the oracle take states evenly spaced on
        ``shortest_path``."""
        return None

    def as_goal(self, state: S) -> G:
        """A full state used as a (sub)goal: the oracle TaskDecomposer's subgoals are states on an optimal path."""
        return self.Goal.model_validate(state.model_dump())  # type: ignore[return-value]

    def reply_schema(self, module: str, grammar: str, state: S, problem: Problem) -> dict[str, Any] | None:
        """The JSON schema of the task value ``module`` writes in ``state`` -- its Action for the Actor, its State
        for the Predictor -- restricted by ``grammar`` (one of ``grammars[module]``); ``None`` keeps the module's
        static schema. A grammar-constrained model cannot write what the schema leaves out, so a grammar built
        from the state itself takes a whole class of mistakes away from a model that misreads the state."""
        return None

    def critic_features(self, value: BaseModel, goal: BaseModel) -> list[float]:
        """Numbers describing a state, action or goal (``value``) relative to ``goal``, in one layout for every
        problem size of the task: the structural feature kind of a learned critic (``map-agent train-critic
        --features structural``), which then carries from the sizes it was trained on to others."""
        raise NotImplementedError(f"{self.name} has no structural critic features; use --features embedding")

    # -- the paper's protocol -------------------------------------------------------------------------------
    def default_runs(self, split: str) -> int:
        """Runs per problem the paper made on ``split``."""
        return self.paper_runs.get(split, 1)

    def evaluator_fallback(self, problem: Problem) -> tuple[int, int]:
        """Inclusive range of the seeded random value that replaces an Evaluator reply that does not parse
        (the original's fallback; Hanoi uses 1..2**n - 1)."""
        return 1, problem.max_actions

    def phases(self, problem: Problem) -> list[Problem]:
        """Problems one run solves in sequence (CogEval Detour / Reward Revaluation: solve, then re-plan after a
        change). Each keeps the problem's id; ``info["phase"]`` is its index. The last phase is scored."""
        return [problem]

    def transcript(self, problem: Problem, actions: list[BaseModel], states: list[BaseModel]) -> str:
        """The previous phase as the next phase's model sees it: the moves made and the states they led to."""
        lines = [f"Move {i + 1}: {self.render_action(a)} -> {self.render_state(s)}"
                 for i, (a, s) in enumerate(zip(actions, states, strict=False))]
        return "\n".join(lines) or "(no moves)"

    def paper_metrics(self, problem: Problem, execution: Execution,
                      predicted: list[dict[str, Any]]) -> dict[str, float | bool]:
        """Per-problem metrics beside the primary ones, e.g. the original's own scoring (Hanoi: from the
        Predictor's states) or a stricter one (CogEval: optimal paths); averaged in ``summary.json``."""
        return {}

    def visible_terminal(self, state: S, goal: G, problem: Problem) -> bool:
        """Whether a method that sees only ``problem.public()`` stops searching at ``state``: the goal test it
        can make without ground truth. By default ``satisfies`` (the goal is visible); a task whose goal is
        hidden overrides it (CogEval's Valuepath: any chest room ends a path, as the original's tree of thoughts
        stopped there). Search control flow uses this, never ``satisfies``, which may read ``problem.hidden``."""
        return self.satisfies(state, goal, problem)

    def summarise_metrics(self, per_problem: list[dict[str, float | bool]]) -> dict[str, float]:
        """One run's ``paper_metrics`` over its problems: by default each one's mean (a yes/no one as a
        percentage); a task whose paper pools counts (moves over all problems) overrides it."""
        values: dict[str, list[float]] = {}
        for metrics in per_problem:
            for name, v in metrics.items():
                values.setdefault(name, []).append(100.0 * v if isinstance(v, bool) else float(v))
        return {name: sum(vs) / len(vs) for name, vs in values.items()}

    def leak_probes(self, problem: Problem) -> list[str]:
        """Regular expressions whose match in any rendered prompt proves that ground truth leaked.

        The default escapes every hidden value that is distinctive as text (lists and objects as JSON, strings
        of 8 characters or more); tasks add the phrasings in which a short value would leak (a goal naming the
        target room)."""
        probes = []
        for value in problem.hidden.values():
            if isinstance(value, (list, dict)) and value:
                probes.append(re.escape(json.dumps(value)))
                items = value if isinstance(value, list) else list(value.values())
                probes += [re.escape(v) for v in items if isinstance(v, str) and len(v) >= 8]
            elif isinstance(value, str) and len(value) >= 8:
                probes.append(re.escape(value))
        return probes

    # -- how it reads in a prompt ------------------------------------------------------------------------------
    @abstractmethod
    def describe(self, problem: Problem) -> str:
        """The environment and task description every module receives (the paper's task prompt)."""

    def render_state(self, state: BaseModel) -> str:
        return json.dumps(state.model_dump(mode="json"))

    def render_action(self, action: BaseModel) -> str:
        return json.dumps(action.model_dump(mode="json"))

    def render_goal(self, goal: BaseModel) -> str:
        return self.render_state(goal)

    def prompt_dir(self, problem: Problem | None = None) -> Path:
        """Where the module prompts for ``problem`` live; tasks whose conditions need different in-context
        examples (CogEval's Steppath, transfer settings) choose a subfolder per problem."""
        from map_agent.prompts import PROMPT_ROOT

        return PROMPT_ROOT / self.name

    # -- scoring ---------------------------------------------------------------------------------------------
    def execute(self, problem: Problem, actions: Iterable[A]) -> Execution:
        """Run a plan in the environment: count invalid actions (skipped, state unchanged) and test the goal.

        An invalid action is one the environment rejects, whatever the Monitor said. The paper's "% solved" is
        ``solved``: the final state achieves the goal within N actions and no action was invalid.
        """
        actions = list(actions)
        state, steps = self.replay(problem, actions)
        reached = self.satisfies(state, self.goal(problem), problem)
        n_invalid = sum(not s.valid for s in steps)
        return Execution(
            n_actions=len(actions),
            n_invalid=n_invalid,
            goal_reached=reached,
            solved=reached and len(actions) <= problem.max_actions and not n_invalid,
            final_state=state.model_dump(mode="json"),
            steps=steps,
        )

    def replay(self, problem: Problem, actions: Iterable[A]) -> tuple[S, list[StepCheck]]:
        """Apply a plan from the start state, the environment judging each action; an invalid one is skipped
        (the state stays as it was). Tasks with their own metric build it on this."""
        state = self.start(problem)
        steps: list[StepCheck] = []
        for i, action in enumerate(actions):
            verdict = self.check(state, action, problem)
            steps.append(StepCheck(index=i, action=action.model_dump(mode="json"), valid=verdict.valid,
                                   reason=verdict.reason))
            state = self.apply(state, action, problem) if verdict.valid else self.after_invalid(state, action, problem)
        return state, steps

    def after_invalid(self, state: S, action: A, problem: Problem) -> S:
        """Where an invalid action leaves the environment when a plan is scored: by default nowhere new."""
        return state


class StepCheck(BaseModel):
    index: int
    action: dict[str, Any]
    valid: bool
    reason: str = ""


class Execution(BaseModel):
    """The environment's account of a plan: the ground truth behind every reported metric."""

    n_actions: int
    n_invalid: int
    goal_reached: bool
    solved: bool
    final_state: dict[str, Any]
    steps: list[StepCheck]


class Path_(BaseModel):
    """A shortest path found by ``shortest_path``: the states visited and the actions between them."""

    distance: float
    states: list[dict[str, Any]] = Field(default_factory=list)
    actions: list[dict[str, Any]] = Field(default_factory=list)


def shortest_path(task: Task, state: BaseModel, goal: BaseModel, problem: Problem,
                  limit: int = 200_000) -> Path_:
    """Breadth-first search from ``state`` to the nearest state satisfying ``goal`` (``limit`` states at most).

    networkx wants an explicit graph; the tasks' graphs are implicit (successors on demand), hence this loop.
    """
    start_key = canonical(state)
    parents: dict[str, tuple[str, BaseModel, BaseModel] | None] = {start_key: None}
    found: tuple[str, BaseModel] | None = (start_key, state) if task.satisfies(state, goal, problem) else None
    frontier: deque[tuple[str, BaseModel]] = deque([(start_key, state)])
    while frontier and found is None and len(parents) < limit:
        key, current = frontier.popleft()
        for action in task.legal_actions(current, problem):
            nxt = task.apply(current, action, problem)
            nkey = canonical(nxt)
            if nkey in parents:
                continue
            parents[nkey] = (key, current, action)
            if task.satisfies(nxt, goal, problem):
                found = (nkey, nxt)
                break
            frontier.append((nkey, nxt))
    if found is None:
        return Path_(distance=float("inf"))
    states: list[BaseModel] = [found[1]]
    actions: list[BaseModel] = []
    key = found[0]
    while parents[key] is not None:
        key, prev, action = parents[key]  # type: ignore[misc]
        states.append(prev)
        actions.append(action)
    states.reverse()
    actions.reverse()
    return Path_(distance=len(actions), states=[s.model_dump(mode="json") for s in states],
                 actions=[a.model_dump(mode="json") for a in actions])


#: Registry of tasks: name -> "module:Class", imported lazily (explicit, no directory scanning).
TASKS: dict[str, str] = {
    "hanoi": "map_agent.tasks.hanoi:HanoiTask",
    "cogeval": "map_agent.tasks.cogeval:CogEvalTask",
    "mystery_blocksworld": "map_agent.tasks.planbench:MysteryBlocksworldTask",
    "logistics": "map_agent.tasks.planbench:LogisticsTask",
    "strategyqa": "map_agent.tasks.strategyqa:StrategyQATask",
    "maze": "map_agent.tasks.maze:MazeTask",
}


@cache
def get_task(name: str) -> Task:
    """The registered task of that name (tasks are immutable, so one instance is shared)."""
    import importlib

    try:
        target = TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known: {', '.join(sorted(TASKS))}") from None
    module_name, _, cls_name = target.partition(":")
    cls: Callable[[], Task] = getattr(importlib.import_module(module_name), cls_name)
    return cls()
