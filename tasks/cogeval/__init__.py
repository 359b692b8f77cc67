"""CogEval graph navigation as the MAP paper runs it: the 15-room n15star castle, N = 6.

Conditions (splits):

* ``steppath2``/``3``/``4`` -- the shortest path of 2, 3 or 4 steps from a start room to a named target room;
  MAP runs them without tree search (``Problem.info["search"] = False``);
* ``valuepath`` -- from a start room to the chest that yields the most reward ("if you enter a room with a
  chest, you must collect its reward, and you cannot collect any more");
* ``detour`` -- two phases, as the MAP script: solve the Valuepath problem, then the door 1-11 is locked and a
  door 13-11 opens, and the agent re-plans from the start with its first attempt in context;
* ``reward_revaluation`` -- two phases likewise, the rewards change after the first (the other chest wins).

**The target room is never shown.** The original only ever says "the room that yields the most reward" (its
Orchestrator only asks whether the current room holds a chest): which room that is, is the problem. Valuepath-
family goals are ``Target(room=None)``; the room lives in ``Problem.hidden["target"]``, which only scoring and the
oracles read, and ``leak_probes`` catch a goal line that names it. Steppath names its target room, as the
original does.

Valuepath's in-context problems (start rooms 1 and 6) are left out of its test split and kept in
``icl_valuepath``; Detour and Reward Revaluation run on all 13 start rooms, as the MAP scripts do. Steppath pairs
9->4, 2->10, 7->3 are in-context only (``icl_steppath``). The zero-shot scripts, which show no examples, ran every
problem: ``valuepath_all`` (13 start rooms) and ``steppath2_all``... (20 pairs a length). The state is the
current room plus the chest collected so far; an action names the next room. There is no Predictor (the action
names the next state) and no TaskDecomposer in the paper's setup.

Scoring (``execute``): ``solved`` is the MAP evaluation scripts' rule -- after at most 6 moves the agent stands in
the target room and none of those moves was invalid. ``paper_metrics`` adds the stricter ``optimal`` (an optimal
path that collects no other chest, no invalid move) and ``pct_invalid_per_problem`` (the scripts' % invalid: a
per-problem fraction, then averaged).

CogEval's own templates give more graphs (``<graph>:valuepath``, ``<graph>:steppath2`` ... for n7tree,
n15star, n16cluster, n21star) and the paper's transfer setting, in-context examples from n7tree and test
problems on the castle (``transfer_n7tree:valuepath``; ``Problem.info["icl"]`` names the example graph).

>>> from map_agent.tasks.cogeval import CogEvalTask
>>> task = CogEvalTask()
>>> p = task.problem("valuepath-4")
>>> p.start, p.goal, p.hidden["target"], p.optimal_length
({'room': 4, 'collected': None}, {'room': None}, 8, 5)
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from map_agent.task import Execution, InvalidProblem, Problem, Task, Verdict

from .graph import RoomGraph
from .templates import GRAPH_SOURCES, template_graph

N_ACTIONS = 6
DATA_FILE = "map_cogeval_n15star_problems.json"
STEPPATH_LENGTHS = (2, 3, 4)
VALUE_CONDITIONS = ("valuepath", "detour", "reward_revaluation")
#: The MAP paper's runs per split (``map-agent eval``'s default ``--runs``).
PAPER_RUNS = {
    "valuepath": 10,
    "detour": 10,
    "reward_revaluation": 5,
    **{f"steppath{k}": 1 for k in STEPPATH_LENGTHS},
    "transfer_n7tree:valuepath": 3,  # the transfer script's three runs
}
#: The transfer experiment's chest placements on the castle (``transfer expts/
#: gpt4_map_n15star_valuepath_n7tree_icl.py``): (room of the 50 reward, room of the 10 reward), each run from
#: every other start room.
TRANSFER_PLACEMENTS = ((11, 8), (8, 11), (8, 15), (15, 8), (1, 8), (8, 1))
TRANSFER_REWARDS = (50.0, 10.0)
ONCE = "- You can collect the reward only once and only from one chest."
MUST = (
    "- If you enter a room with a chest, then you must collect the reward from that chest, and you cannot "
    "collect anymore rewards."
)
#: The task statement as each MAP script words it: (goal sentence, chest rules). None names a target chest.
WORDINGS: dict[str, tuple[str, tuple[str, ...]]] = {
    "steppath": ("Goal: The goal is to find the shortest path from the starting room to the target room.", ()),
    # gpt4_map_valuepath.py and gpt4_map_detour.py
    "valuepath": (
        "Goal: The goal is to find the shortest path from the starting room that yields the most reward.",
        (ONCE,),
    ),
    # gpt4_map_reward_reval.py and the n7tree transfer script
    "highest_reward": (
        "Goal: The goal is to find the shortest path from the starting room to the room with a chest with "
        "the highest reward.",
        (ONCE, MUST),
    ),
}
#: How a goal that names no room reads in a module's prompt.
BEST_CHEST = "the room with the chest that yields the most reward"


class Room(BaseModel):
    """Where the agent is, and which chest it has collected (entering a chest room collects it, once)."""

    model_config = ConfigDict(frozen=True)

    room: int = Field(description="the current room")
    collected: int | None = Field(default=None, description="the room whose chest was collected, if any")


class Move(BaseModel):
    """Go to ``room`` (through a door from the current room, if there is one)."""

    model_config = ConfigDict(frozen=True)

    room: int = Field(description="the next room")


class Target(BaseModel):
    """The room to reach, having collected no other chest on the way.

    Valuepath-family goals leave ``room`` unset: the original only says "the room that yields the most reward";
    which room that is stays ground truth (``Problem.hidden["target"]``), read by scoring and oracles only.
    """

    model_config = ConfigDict(frozen=True)

    room: int | None = Field(
        default=None, description="the target room; unset: the room whose chest yields the most reward"
    )


class CogEvalTask(Task[Room, Move, Target]):
    """Ground truth, data and prompt rendering for CogEval navigation."""

    name = "cogeval"
    State = Room
    Action = Move
    Goal = Target
    default_modules = {
        "TaskDecomposer": "off",
        "Actor": "llm",
        "Monitor": "llm",
        "Predictor": "off",
        "Evaluator": "llm",
        "Orchestrator": "llm",
    }
    default_search = True  # Steppath problems turn it off through Problem.info["search"]
    default_subgoals = 1
    paper_runs = PAPER_RUNS
    #: the CogEval scripts' Orchestrator examples reason (where the chests are, what the current room holds)
    #: before their "Hence yes/no", as do the Monitor's and the Evaluator's
    reasoning_modules = frozenset({"TaskDecomposer", "Monitor", "Evaluator", "Orchestrator"})

    # -- data --------------------------------------------------------------------------------------------
    def splits(self) -> dict[str, str]:
        out = {
            f"steppath{k}": f"{k}-step shortest paths on the castle, the paper's pairs (no tree search)"
            for k in STEPPATH_LENGTHS
        }
        out |= {
            "valuepath": "start room -> larger-reward chest, avoiding the other chest (11 starts)",
            "detour": "valuepath, then door 1-11 locked and door 13-11 opened: re-plan (13 starts, 2 phases)",
            "reward_revaluation": "valuepath, then the chests' rewards change: re-plan (13 starts, 2 phases)",
            "icl_steppath": "the paper's three Steppath in-context problems (9->4, 2->10, 7->3)",
            # the zero-shot scripts have no in-context examples to leave out: they run every problem
            "valuepath_all": "all 13 Valuepath start rooms, the in-context 1 and 6 included (the zero-shot script's)",
            **{f"steppath{k}_all": f"all 20 {k}-step pairs, the in-context pair included (the zero-shot script's)"
               for k in STEPPATH_LENGTHS},
            "icl_valuepath": "the paper's two Valuepath in-context problems (start rooms 1 and 6)",
            "transfer_n7tree:valuepath": (
                "the transfer experiment: 6 chest placements x 13 start rooms on the castle, the Monitor's "
                "examples from the n7tree graph"
            ),
        }
        for graph in GRAPH_SOURCES:
            out[f"{graph}:valuepath"] = (
                f"CogEval {graph}: every non-chest room -> the best chest, avoiding the others"
            )
            out |= {
                f"{graph}:steppath{k}": f"CogEval {graph}: every pair of rooms {k} steps apart"
                for k in STEPPATH_LENGTHS
            }
        return out

    def problems(self, split: str) -> list[Problem]:
        if split not in self.splits():
            raise KeyError(f"cogeval: unknown split {split!r}; known: {', '.join(self.splits())}")
        return list(_split(split))

    # -- ground truth ----------------------------------------------------------------------------------------
    def check(self, state: Room, action: Move, problem: Problem) -> Verdict:
        graph = graph_of(problem)
        if action.room not in graph.rooms:
            return Verdict(
                valid=False,
                reason=f"there is no room {action.room} (the rooms are {graph.rooms[0]}-{graph.rooms[-1]})",
            )
        if action.room == state.room:
            return Verdict(valid=False, reason=f"the agent is already in room {state.room}")
        if not graph.connected(state.room, action.room):
            doors = ", ".join(str(r) for r in graph.neighbours(state.room))
            return Verdict(
                valid=False,
                reason=f"room {state.room} is not connected to room {action.room} "
                f"(missing edge {state.room}-{action.room}; room {state.room} "
                f"connects to {doors})",
            )
        return Verdict(valid=True)

    def apply(self, state: Room, action: Move, problem: Problem) -> Room:
        """Total: the agent ends in the named room even through a missing door (the believed state follows an
        invalid move, as MAP's CogEval scoring does), and collects the chest there if it has none yet."""
        graph = graph_of(problem)
        if action.room not in graph.rooms:
            raise ValueError(f"there is no room {action.room}")
        chest = action.room if action.room in graph.rewards else None
        return Room(room=action.room, collected=state.collected if state.collected is not None else chest)

    def legal_actions(self, state: Room, problem: Problem) -> list[Move]:
        return [Move(room=r) for r in graph_of(problem).neighbours(state.room)]

    def satisfies(self, state: Room, goal: Target, problem: Problem) -> bool:
        target = target_room(goal, problem)
        return state.room == target and state.collected in (None, target)

    def distance(self, state: Room, goal: Target, problem: Problem) -> float:
        """Shortest path on the graph, entering no chest room but the target's; ``inf`` once a wrong chest is
        collected (no reward can be collected after it)."""
        target = target_room(goal, problem)
        if state.collected is not None and state.collected != target:
            return float("inf")
        if state.room == target:
            return 0.0
        avoid = frozenset(problem_chests(problem) - {target})
        paths = graph_of(problem).shortest_paths(state.room, target, avoid)
        return float(len(paths[0]) - 1) if paths else float("inf")

    def as_goal(self, state: Room) -> Target:
        return Target(room=state.room)

    def visible_terminal(self, state: Room, goal: Target, problem: Problem) -> bool:
        """Where a search on the public problem stops: a goal that names its room (Steppath) at that room; a
        Valuepath-family goal, which hides its room, at any room holding a chest (entering one collects it and
        ends the collecting), as the original's tree-of-thoughts scripts stopped at either chest."""
        if goal.room is not None:
            return state.room == goal.room
        return state.room in graph_of(problem).rewards

    # -- scoring ---------------------------------------------------------------------------------------------
    def after_invalid(self, state: Room, action: Move, problem: Problem) -> Room:
        """MAP's scoring walks the plan through the rooms it names: a move along a missing door still moves."""
        return self.apply(state, action, problem) if action.room in graph_of(problem).rooms else state

    def execute(self, problem: Problem, actions: Iterable[Move]) -> Execution:
        """``solved`` is the MAP evaluation scripts' rule (``gpt4_map_*_eval.py``): after the first
        ``min(n, 6)`` moves the agent stands in the target room, and none of those moves was invalid. Like the
        scripts, it does not check the chest rule or the path's length; ``paper_metrics``'s ``optimal`` does."""
        actions = list(actions)
        execution = super().execute(problem, actions)
        counted = min(len(actions), problem.max_actions)
        state, steps = self.replay(problem, actions[:counted])
        solved = counted > 0 and state.room == target_room(self.goal(problem), problem)
        return execution.model_copy(update={"solved": solved and all(s.valid for s in steps)})

    def paper_metrics(
        self, problem: Problem, execution: Execution, predicted: list[dict[str, Any]]
    ) -> dict[str, float | bool]:
        """Beside the scripts' ``solved``:

        * ``optimal`` -- the stricter rule: no invalid move, the target reached without collecting another chest,
          in exactly the optimal number of moves;
        * ``pct_invalid_per_problem`` -- the scripts' % invalid: invalid moves among this problem's first
          ``min(n, 6)`` moves, as a percentage of them (the scripts average it over problems, not over moves).
        """
        optimal = problem.optimal_length is None or execution.n_actions == problem.optimal_length
        counted = execution.steps[: problem.max_actions]
        invalid = 100 * sum(not s.valid for s in counted) / len(counted) if counted else 0.0
        return {
            "optimal": execution.goal_reached and execution.n_invalid == 0 and optimal,
            "pct_invalid_per_problem": invalid,
        }

    def optimal_paths(self, problem: Problem) -> list[list[int]]:
        """Every optimal room sequence for a problem, by the environment's rules (not the data file's)."""
        target = target_room(self.goal(problem), problem)
        avoid = frozenset(problem_chests(problem) - {target})
        return graph_of(problem).shortest_paths(problem.start["room"], target, avoid)

    # -- the paper's protocol ----------------------------------------------------------------------------
    def phases(self, problem: Problem) -> list[Problem]:
        """Detour and Reward Revaluation as the MAP scripts run them: first the Valuepath problem on the graph
        and rewards as first described, then (this problem, ``info["phase"] == 1``) the change announced and a new
        plan from the start room. Other problems have one phase."""
        if not problem.info.get("change"):
            return [problem]
        described = RoomGraph.model_validate(problem.info["described_graph"])
        first = _make(
            problem.id,
            described,
            problem.start["room"],
            described.best_chest(),
            {**problem.info, "graph": described.model_dump(mode="json"), "change": "", "phase": 0},
            named=False,
            file_answers=problem.hidden.get("file_answers_before"),
        )
        return [first, problem]

    def leak_probes(self, problem: Problem) -> list[str]:
        """Besides the hidden values themselves: any line that starts "Goal" or "Target" and names the hidden
        target room, and a JSON goal naming it (the phrasings in which the best chest's room would leak)."""
        probes = super().leak_probes(problem)
        target = problem.hidden.get("target")
        if target is not None:
            probes += [
                rf"(?im)^[\s\-*#]*(?:final\s+)?(?:goal|target)\b[^\n]*\broom\s*{target}\b",
                rf'"goal"\s*:\s*\{{\s*"room"\s*:\s*{target}\b',
            ]
        return probes

    # -- how it reads in a prompt ----------------------------------------------------------------------------
    def describe(self, problem: Problem) -> str:
        """The castle, its chests and rules, and the goal, as the condition's MAP script words them (never naming
        the best chest's room). A second phase adds the first attempt's moves (``info["history"]``), then the
        announced change and the goal again, as the script appends them to its prompt."""
        info = problem.info
        goal, rules = WORDINGS[info["wording"]]
        described = RoomGraph.model_validate(info["described_graph"])
        lines = ["Consider the following puzzle problem:", "", "Problem description:", described.describe()]
        if described.rewards:
            lines += [described.describe_rewards(), *rules]
        lines += ["", goal]
        if info.get("icl"):
            icl = icl_graph(info["icl"], info["family"])
            lines += [
                "",
                f"The examples that follow were solved in a different environment ({info['icl']}):",
                icl.describe(),
                *([icl.describe_rewards()] if icl.rewards else []),
            ]
        if info.get("change"):
            if info.get("history"):
                lines += ["", "Your moves in the first attempt, before the change below:", info["history"]]
            lines += ["", info["change"], *rules, "", goal, "Plan again from the starting room."]
        return "\n".join(lines)

    def render_state(self, state: Room) -> str:  # type: ignore[override]
        if state.collected is None:
            return f"room {state.room}"
        return f"room {state.room} (the chest in room {state.collected} has been collected)"

    def render_action(self, action: Move) -> str:  # type: ignore[override]
        return f"Go to room {action.room}."

    def render_goal(self, goal: Target) -> str:  # type: ignore[override]
        return BEST_CHEST if goal.room is None else f"room {goal.room}"

    def prompt_dir(self, problem: Problem | None = None) -> Path:
        """Where a problem's module prompts live.

        ``prompts/cogeval/`` holds the Valuepath family (Valuepath, Detour and Reward Revaluation share the
        paper's Valuepath examples); ``prompts/cogeval/<set>/`` the others (``steppath`` with the paper's three
        Steppath sequences; ``n7tree_valuepath`` for transfer, where as in the transfer script only the Monitor
        has examples, from the n7tree graph, and the other modules are zero-shot), named by
        ``Problem.info["prompt_set"]``. The argument is optional so the base signature still works; without it
        the Valuepath set is returned.
        """
        root = super().prompt_dir()
        prompt_set = problem.info.get("prompt_set") if problem is not None else None
        return root / prompt_set if prompt_set else root


# -- problems ------------------------------------------------------------------------------------------------
def graph_of(problem: Problem) -> RoomGraph:
    """The graph the environment uses for a problem (after any Detour or Reward Revaluation change)."""
    return _graph_from_json(json.dumps(problem.info["graph"], sort_keys=True))


@cache
def _graph_from_json(text: str) -> RoomGraph:
    return RoomGraph.model_validate_json(text)


def problem_chests(problem: Problem) -> set[int]:
    return set(graph_of(problem).rewards)


def target_room(goal: Target, problem: Problem) -> int:
    """The room a goal means: its own, or for a goal that names none the best chest's room, which only the full
    problem's ground truth holds (a model's view, ``problem.public()``, cannot answer this)."""
    if goal.room is not None:
        return goal.room
    try:
        return int(problem.hidden["target"])
    except KeyError:
        raise ValueError(
            f"cogeval {problem.id}: the best chest's room is ground truth (Problem.hidden['target']); "
            "scoring and oracles need the full problem, not problem.public()"
        ) from None


def _info(
    graph: RoomGraph,
    family: str,
    condition: str,
    described: RoomGraph | None = None,
    change: str = "",
    wording: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "condition": condition,
        "family": family,
        "wording": wording or ("steppath" if family == "steppath" else "highest_reward"),
        "search": family != "steppath",
        "prompt_set": "steppath" if family == "steppath" else None,
        "graph": graph.model_dump(mode="json"),
        "described_graph": (described or graph).model_dump(mode="json"),
        "change": change,
        **({"phase": 1} if change else {}),
        **extra,
    }


def _make(
    pid: str,
    graph: RoomGraph,
    start: int,
    target: int,
    info: dict[str, Any],
    *,
    named: bool,
    **hidden: Any,
) -> Problem:
    """A problem from start to target; ``named`` says whether the goal names the target room (Steppath) or
    leaves it to be worked out from the rewards (the Valuepath family: the room goes to ``hidden``)."""
    avoid = frozenset(set(graph.rewards) - {target})
    paths = graph.shortest_paths(start, target, avoid)
    if not paths:
        raise InvalidProblem(f"{pid}: room {target} cannot be reached from room {start}")
    return Problem(
        task="cogeval",
        id=pid,
        start=Room(room=start).model_dump(),
        goal=Target(room=target if named else None).model_dump(),
        max_actions=N_ACTIONS,
        optimal_length=len(paths[0]) - 1,
        info=info,
        hidden={**({} if named else {"target": target}), **{k: v for k, v in hidden.items() if v is not None}},
    )


def _field(raw: dict, key: str, where: str) -> Any:
    if not isinstance(raw, dict) or key not in raw:
        raise InvalidProblem(f"{where}: missing field {key!r}")
    return raw[key]


def _int(raw: dict, key: str, where: str) -> int:
    value = _field(raw, key, where)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidProblem(f"{where}: field {key!r}: expected a room number, got {value!r}")
    return value


def _rewards(raw: Any, where: str) -> dict[int, float]:
    try:
        return {int(k): float(v) for k, v in raw.items()}
    except (AttributeError, TypeError, ValueError):
        raise InvalidProblem(f"{where}: expected an object of room -> reward") from None


_CHANGE = re.compile(r"^remove edge (\d+)-(\d+), add edge (\d+)-(\d+)$")


def load_map_problems(text: str, source: str) -> dict[str, list[Problem]]:
    """Parse the MAP castle file into its splits; the file's answers are kept in ``hidden["file_answers"]``
    (they were computed by BFS without the chest rule, so the environment, not the file, scores plans)."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidProblem(f"{source}: not JSON: {e}") from None
    g = _field(raw, "graph", source)
    try:
        base = RoomGraph.from_edges(
            _field(g, "edges", f"{source}: field 'graph'"),
            rooms=list(range(1, _int(g, "n_rooms", f"{source}: field 'graph'") + 1)),
        )
    except ValidationError as e:
        raise InvalidProblem(f"{source}: field 'graph.edges': {e.errors()[0]['msg']}") from None
    except (TypeError, ValueError) as e:
        raise InvalidProblem(f"{source}: field 'graph.edges': expected [room, room] pairs ({e})") from None
    out: dict[str, list[Problem]] = {f"steppath{k}": [] for k in STEPPATH_LENGTHS}
    out |= {"icl_steppath": [], "icl_valuepath": [], "transfer": [], **{c: [] for c in VALUE_CONDITIONS}}

    sp = _field(raw, "stepPath", source)
    for i, p in enumerate(_field(sp, "problems", f"{source}: field 'stepPath'")):
        where = f"{source}: field 'stepPath.problems[{i}]'"
        start, target, k = (_int(p, f, where) for f in ("start", "target", "n_steps"))
        icl = bool(p.get("map_icl", False))
        pid = f"{'icl-' if icl else ''}steppath{k}-{start}-{target}"
        problem = _make(
            pid,
            base,
            start,
            target,
            _info(base, "steppath", f"steppath{k}"),
            named=True,
            file_answers=_field(p, "answers", where),
        )
        if problem.optimal_length != k:
            raise InvalidProblem(
                f"{where}: n_steps is {k} but the shortest path is {problem.optimal_length} steps"
            )
        out["icl_steppath" if icl else f"steppath{k}"].append(problem)

    vp = _field(raw, "valuePath", source)
    rewards = _rewards(
        _field(vp, "rewards", f"{source}: field 'valuePath'"), f"{source}: field 'valuePath.rewards'"
    )
    valued = base.with_rewards(rewards)
    icl_starts = {int(s) for s in _field(vp, "map_icl_start_rooms", f"{source}: field 'valuePath'")}
    for i, p in enumerate(_field(vp, "problems", f"{source}: field 'valuePath'")):
        where = f"{source}: field 'valuePath.problems[{i}]'"
        start = _int(p, "start", where)
        icl = start in icl_starts
        problem = _make(
            f"{'icl-' if icl else ''}valuepath-{start}",
            valued,
            start,
            valued.best_chest(),
            _info(valued, "valuepath", "valuepath", wording="valuepath"),
            named=False,
            file_answers=_field(p, "answers", where),
        )
        out["icl_valuepath" if icl else "valuepath"].append(problem)

    dt = _field(raw, "detour", source)
    change = _field(dt, "change", f"{source}: field 'detour'")
    m = _CHANGE.match(str(change))
    if not m:
        raise InvalidProblem(
            f"{source}: field 'detour.change': {change!r} is not 'remove edge A-B, add edge C-D'"
        )
    a, b, c, d = map(int, m.groups())
    dgraph = base.with_rewards(
        _rewards(_field(dt, "rewards", f"{source}: field 'detour'"), f"{source}: field 'detour.rewards'")
    )
    try:
        after = dgraph.edited(remove=[(a, b)], add=[(c, d)])
    except ValueError as e:
        raise InvalidProblem(f"{source}: field 'detour.change': {e}") from None
    sentence = f"The door from room {a} to room {b} is locked and now room {c} is connected to room {d}."
    for i, p in enumerate(_field(dt, "problems", f"{source}: field 'detour'")):
        where = f"{source}: field 'detour.problems[{i}]'"
        start = _int(p, "start", where)
        out["detour"].append(
            _make(
                f"detour-{start}",
                after,
                start,
                after.best_chest(),
                _info(
                    after,
                    "valuepath",
                    "detour",
                    described=dgraph,
                    change=sentence,
                    wording="valuepath",
                ),
                named=False,
                file_answers=_field(p, "answers_after", where),
                file_answers_before=_field(p, "answers_before", where),
            )
        )

    rr = _field(raw, "rewardReval", source)
    before = _rewards(
        _field(rr, "rewards_before", f"{source}: field 'rewardReval'"),
        f"{source}: field 'rewardReval.rewards_before'",
    )
    later = _rewards(
        _field(rr, "rewards_after", f"{source}: field 'rewardReval'"),
        f"{source}: field 'rewardReval.rewards_after'",
    )
    if set(before) != set(later):
        raise InvalidProblem(
            f"{source}: field 'rewardReval.rewards_after': chests {sorted(later)} differ from "
            f"rewards_before's {sorted(before)}"
        )
    sentence = (
        "Now you have been told that "
        + " and ".join(
            f"the reward of the chest in room {r} has been changed to {int(v) if v.is_integer() else v}"
            for r, v in later.items()
        )
        + "."
    )
    described, revalued = base.with_rewards(before), base.with_rewards(later)
    for i, p in enumerate(_field(rr, "problems", f"{source}: field 'rewardReval'")):
        where = f"{source}: field 'rewardReval.problems[{i}]'"
        start = _int(p, "start", where)
        out["reward_revaluation"].append(
            _make(
                f"reward_revaluation-{start}",
                revalued,
                start,
                revalued.best_chest(),
                _info(
                    revalued,
                    "valuepath",
                    "reward_revaluation",
                    described=described,
                    change=sentence,
                    # its script's Actor examples name the best chest and reason about the way there
                    prompt_variant="reward_revaluation",
                ),
                named=False,
                file_answers=_field(p, "answers_after", where),
                file_answers_before=_field(p, "answers_before", where),
            )
        )
    for high, low in TRANSFER_PLACEMENTS:
        placed = base.with_rewards(dict(zip((high, low), TRANSFER_REWARDS, strict=True)))
        out["transfer"] += [
            _make(
                f"valuepath-{high}-{low}-{start}",
                placed,
                start,
                high,
                _info(placed, "valuepath", "transfer", wording="highest_reward"),
                named=False,
            )
            for start in base.rooms
            if start not in (high, low)
        ]
    return out


def template_problems(graph_name: str, condition: str) -> list[Problem]:
    """Problems on a CogEval template graph: Valuepath from every non-chest room to the best chest, or every
    ordered pair of rooms ``k`` steps apart (``steppathK``), avoiding chest rooms other than the target."""
    graph = template_graph(graph_name)
    split = f"{graph_name}:{condition}"
    if condition == "valuepath":
        target = graph.best_chest()
        return [
            _make(
                f"{split}-{s}", graph, s, target, _info(graph, "valuepath", split, template=graph_name), named=False
            )
            for s in graph.rooms
            if s not in graph.rewards
            and graph.shortest_paths(s, target, frozenset(set(graph.rewards) - {target}))
        ]
    k = int(condition.removeprefix("steppath"))
    plain = graph.with_rewards({})
    from networkx import all_pairs_shortest_path_length  # networkx: imported when problems are built

    lengths = dict(all_pairs_shortest_path_length(plain.nx()))
    return [
        _make(f"{split}-{s}-{t}", plain, s, t, _info(plain, "steppath", split, template=graph_name), named=True)
        for s in plain.rooms
        for t in plain.rooms
        if lengths[s].get(t) == k
    ]


def icl_graph(name: str, family: str) -> RoomGraph:
    graph = template_graph(name)
    return graph if family == "valuepath" else graph.with_rewards({})


@cache
def _map_splits() -> dict[str, tuple[Problem, ...]]:
    path = resources.files("map_agent.tasks") / "cogeval" / "data" / DATA_FILE
    return {k: tuple(v) for k, v in load_map_problems(path.read_text(encoding="utf-8"), DATA_FILE).items()}


@cache
def _split(split: str) -> tuple[Problem, ...]:
    if split.startswith("transfer_"):
        # the transfer script: its own chest placements on the castle, in-context examples from another graph
        icl, _, condition = split.removeprefix("transfer_").partition(":")
        return tuple(
            p.model_copy(
                update={
                    "id": f"{icl}>{p.id}",
                    # the transfer script's Actor sees the current room only, not the moves so far
                    "info": {**p.info, "icl": icl, "prompt_set": f"{icl}_{p.info['family']}",
                             "protocol": {"actor_history": False}},
                }
            )
            for p in _map_splits()["transfer" if condition == "valuepath" else condition]
        )
    if ":" in split:
        graph, _, condition = split.partition(":")
        return tuple(template_problems(graph, condition))
    if split.endswith("_all"):  # the split with its in-context problems, as the zero-shot scripts ran them
        condition = split.removesuffix("_all")
        icl = _map_splits()[f"icl_{condition.rstrip('234')}"]
        return (*(p for p in icl if p.id.startswith(f"icl-{condition}-")), *_map_splits()[condition])
    return _map_splits()[split]


def path_moves(path: list[int]) -> list[Move]:
    """A room sequence as moves (the start room is dropped)."""
    return [Move(room=r) for r in path[1:]]
