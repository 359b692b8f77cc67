"""Tower of Hanoi in the MAP paper's list formulation.

Three lists A, B, C of digits; 0 is the largest disk and the rightmost digit is the top of a list. A digit may be
moved only from the right end of a list, and only onto a list whose digits are all smaller than it. The goal is
``C = [0, 1, 2]`` (3 disks) or ``C = [0, 1, 2, 3]`` (4 disks). Problem ids are the original code's numbering
(``toh/gen_start_config.py``: 1-26 three disks, 27-106 four disks); splits ``world2``, ``world5`` and ``world6``
add one generated problem of those sizes, so fine-tuning data can cover other worlds and hold four disks out. The
paper tests 24 three-disk problems (ids 3 and 22 are its in-context examples) with N = 10, five runs each, and the
80 four-disk problems with N = 20, one run. Its four-disk in-context ablation (``toh/gpt4_map_toh_4diskicl.py``)
shows four-disk examples (problems 29 and 77) to every module and tests the other 78: split ``test4_icl4``,
prompts in ``prompts/hanoi/icl4/``.

The optimal plan is ground truth (``Problem.hidden``); no prompt states a move limit or an optimal length, as the
original's prompts do not.

>>> from map_agent.tasks import hanoi
>>> p = hanoi.problem(7)
>>> p.start, p.max_actions
({'A': [0, 2], 'B': [1], 'C': []}, 10)
"""

from __future__ import annotations

import itertools
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from map_agent.task import Execution, InvalidProblem, Problem, Task, Verdict, load_json

Peg = Literal["A", "B", "C"]
PEGS: tuple[Peg, ...] = ("A", "B", "C")
Disk = Annotated[int, Field(ge=0, le=9)]
N_THREE_DISKS = 10
N_FOUR_DISKS = 20
ICL_IDS = ("3", "22")
#: the four-disk in-context ablation's examples (the original skips the problems whose start they share)
ICL4_IDS = ("29", "77")
ICL4_PROMPTS = "icl4"
#: worlds of other sizes than the paper's three and four disks, one problem each (every disk from A to C), for
#: fine-tuning data that covers whole worlds (``map-agent distill --states all``) and holds four disks out
WORLD_SIZES = (2, 5, 6)
#: the disk numbers a state can hold (``Disk``): one slot each in ``critic_features``, whatever the size
DISK_SLOTS = 10


class HanoiState(BaseModel):
    """The three lists; the last element of a list is its top."""

    model_config = ConfigDict(frozen=True)

    A: list[Disk] = Field(description="list A, bottom to top")
    B: list[Disk] = Field(description="list B, bottom to top")
    C: list[Disk] = Field(description="list C, bottom to top")

    def peg(self, name: str) -> list[int]:
        return getattr(self, name)

    def disks(self) -> list[int]:
        return sorted(self.A + self.B + self.C)


class HanoiMove(BaseModel):
    """Move the top digit of ``source`` onto ``target``."""

    model_config = ConfigDict(frozen=True)

    disk: Disk = Field(description="the digit being moved")
    source: Peg = Field(description="the list it is taken from")
    target: Peg = Field(description="the list it is put on")

    def __str__(self) -> str:
        return f"Move {self.disk} from {self.source} to {self.target}."


class HanoiTask(Task[HanoiState, HanoiMove, HanoiState]):
    """Ground truth, data and prompt rendering for the list-formulation Tower of Hanoi."""

    name = "hanoi"
    State = HanoiState
    Action = HanoiMove
    Goal = HanoiState
    #: the original's runs: ``range(1, 6)`` over the three-disk problems, one run of the four-disk sets
    paper_runs = {"test3": 5, "test4": 1, "test4_icl4": 1}
    grammars = {"Actor": ("legal_source",), "Predictor": ("configurations",)}

    # -- data --------------------------------------------------------------------------------------------
    def splits(self) -> dict[str, str]:
        return {
            "test3": "the 24 three-disk test problems (paper order, in-context examples 3 and 22 left out), N=10",
            "icl3": "the two three-disk in-context examples (ids 3 and 22)",
            "all3": "all 26 three-disk problems, N=10",
            "test4": "the 80 four-disk problems (ids 27-106, out of distribution), N=20",
            "test4_icl4": "the 78 four-disk problems other than 29 and 77, with the four-disk in-context examples "
                          "(29 and 77) in every module's prompt, N=20",
            "icl4": "the two four-disk in-context examples (ids 29 and 77)",
            **{f"world{n}": f"the {n}-disk world as one problem, every disk from A to C (fine-tuning data, with "
                            f"`distill --states all` every state of it)" for n in WORLD_SIZES},
        }

    def problems(self, split: str) -> list[Problem]:
        three, four = _load()
        if split == "test3":
            return [p for p in three if p.id not in ICL_IDS]
        if split == "icl3":
            return [p for p in three if p.id in ICL_IDS]
        if split == "all3":
            return list(three)
        if split == "test4":
            return list(four)
        if split in ("test4_icl4", "icl4"):
            chosen = [p for p in four if (p.id in ICL4_IDS) == (split == "icl4")]
            return [p.model_copy(update={"info": {**p.info, "prompt_set": ICL4_PROMPTS}}) for p in chosen]
        if split in {f"world{n}" for n in WORLD_SIZES}:
            return [_world(int(split.removeprefix("world")))]
        raise KeyError(f"hanoi: unknown split {split!r}; known: {', '.join(self.splits())}")

    def size(self, problem: Problem) -> int:
        return len(self.start(problem).disks())

    # -- the paper's protocol --------------------------------------------------------------------------------
    def evaluator_fallback(self, problem: Problem) -> tuple[int, int]:
        """The original draws ``np.random.randint(1, 2**n)`` for an Evaluator reply it cannot read: 1-7 with
        three disks, 1-15 with four (the optimal length from the worst start)."""
        return 1, 2 ** len(self.start(problem).disks()) - 1

    def paper_metrics(self, problem: Problem, execution: Execution,
                      predicted: list[dict[str, Any]]) -> dict[str, float | bool]:
        """The original's score (``toh/gpt4_map_toh_eval.py``), beside the environment's replay.

        The original scores the transcript MAP keeps, in which the state after each move is the Predictor's
        prediction: a move is invalid when, in the state before it (the start, then the previous prediction),
        its number is not in the source list, is not at that list's right end, or is smaller than the largest
        number of the target list; at most N moves count; a problem is solved when the state after the last
        counted move is the goal and no counted move was invalid. A Predictor that hallucinates a solved state
        therefore scores solved here but not in ``execution``. The paper's % invalid pools moves over problems:
        ``mean(paper_invalid_moves) / mean(paper_moves)`` of a run's records.
        """
        moves = [step.action for step in execution.steps][: problem.max_actions]
        states = [problem.start, *predicted][: len(moves) + 1]
        invalid = sum(not _original_valid(state, move) for state, move in zip(states, moves, strict=False))
        final = states[len(moves)] if len(states) > len(moves) else None
        solved = final is not None and _lists(final) == _lists(problem.goal) and not invalid
        return {"paper_solved": solved, "paper_moves": float(len(moves)), "paper_invalid_moves": float(invalid)}

    def summarise_metrics(self, per_problem: list[dict[str, float | bool]]) -> dict[str, float]:
        """Means, plus the paper's % invalid: invalid moves over all moves of the run (pooled, as its eval)."""
        out = super().summarise_metrics(per_problem)
        moves = sum(float(m.get("paper_moves", 0)) for m in per_problem)
        invalid = sum(float(m.get("paper_invalid_moves", 0)) for m in per_problem)
        out["paper_pct_invalid"] = 100 * invalid / moves if moves else 0.0
        return out

    def leak_probes(self, problem: Problem) -> list[str]:
        """Beside the hidden optimal plan: the optimal length stated as a number of moves. Not N: the original's
        MAP prompts never state it, but its baselines do ("limit your answer to a maximum of 10 steps"), so the
        MAP module prompts are checked for N separately (tests/test_hanoi.py)."""
        extra = move_count_phrasings(problem.optimal_length) if problem.optimal_length is not None else []
        return [*super().leak_probes(problem), *extra]

    # -- ground truth ------------------------------------------------------------------------------------------
    def check(self, state: HanoiState, action: HanoiMove, problem: Problem) -> Verdict:
        if action.source == action.target:
            return Verdict(valid=False, reason=f"source and target are both list {action.source}")
        source = state.peg(action.source)
        if action.disk not in source:
            return Verdict(valid=False, reason=f"{action.disk} is not in list {action.source}")
        if source[-1] != action.disk:
            return Verdict(valid=False, reason=f"{action.disk} is not at the right end of list {action.source} "
                                               f"({source[-1]} is)")
        target = state.peg(action.target)
        larger = [d for d in target if d >= action.disk]
        if larger:
            return Verdict(valid=False, reason=f"{action.disk} can't be placed on list {action.target}: it is not "
                                               f"larger than {larger[0]} already there")
        return Verdict(valid=True)

    def explain(self, state: HanoiState, action: HanoiMove, problem: Problem) -> str:
        """Each rule checked on the two lists, e.g. ``A = [0, 2], right end 2: Rule 1 holds. C = [1], 2 > 1:
        Rule 2 holds.`` -- copying the lists and comparing two numbers, which a small model can learn."""
        if action.source == action.target:
            return f"source and target are both {action.source}: not a move."
        source, target, disk = state.peg(action.source), state.peg(action.target), action.disk
        if not source:
            return f"{action.source} = []: nothing to move, Rule 1 fails."
        if source[-1] != disk:
            return f"{action.source} = {source}, right end {source[-1]}, not {disk}: Rule 1 fails."
        steps = f"{action.source} = {source}, right end {disk}: Rule 1 holds. "
        if not target:
            return steps + f"{action.target} = []: Rule 2 holds."
        top = max(target)
        if disk > top:
            return steps + f"{action.target} = {target}, {disk} > {top}: Rule 2 holds."
        return steps + f"{action.target} = {target}, {disk} < {top}: Rule 2 fails."

    def apply(self, state: HanoiState, action: HanoiMove, problem: Problem) -> HanoiState:
        lists = {p: list(state.peg(p)) for p in PEGS}
        lists[action.source].pop()
        lists[action.target].append(action.disk)
        return HanoiState(**lists)

    def legal_actions(self, state: HanoiState, problem: Problem) -> list[HanoiMove]:
        moves = []
        for s in PEGS:
            if not state.peg(s):
                continue
            for t in PEGS:
                move = HanoiMove(disk=state.peg(s)[-1], source=s, target=t)
                if self.check(state, move, problem).valid:
                    moves.append(move)
        return moves

    def satisfies(self, state: HanoiState, goal: HanoiState, problem: Problem) -> bool:
        return state == goal

    def reply_schema(self, module: str, grammar: str, state: HanoiState, problem: Problem) -> dict[str, Any] | None:
        """The Actor's moves that take the top number of a non-empty list (``legal_source``), or the Predictor's
        well-formed states of the same numbers (``configurations``)."""
        if (module, grammar) == ("Actor", "legal_source"):
            return legal_source_schema(state)
        if (module, grammar) == ("Predictor", "configurations"):
            return configurations_schema(state)
        return None

    def critic_features(self, value: HanoiState | HanoiMove, goal: HanoiState) -> list[float]:  # type: ignore
        """Per disk number, one slot of eight for each number a state can hold (zeros for an absent one): present,
        the list it is on (one-hot), the list the goal puts it on (one-hot), and whether the two agree. A move's row
        is the change it makes to its state's row (-1 at the source list, +1 at the target, the change in
        agreement), so Q sees what the move does. Slots go by number, 0 the largest disk in every size, so the
        two-, three- and five-disk worlds train every slot a four-disk state uses.

        >>> HanoiTask().critic_features(HanoiState(A=[0], B=[], C=[1]), HanoiState(A=[], B=[], C=[0, 1]))[:16]
        [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0]
        """
        target = {d: p for p in PEGS for d in goal.peg(p)}
        row = [0.0] * (8 * DISK_SLOTS)
        if isinstance(value, HanoiMove):
            at = 8 * value.disk
            row[at + 1 + PEGS.index(value.source)] -= 1.0
            row[at + 1 + PEGS.index(value.target)] += 1.0
            row[at + 7] = float(value.target == target.get(value.disk)) - float(value.source == target.get(value.disk))
            return row
        for peg in PEGS:
            for disk in value.peg(peg):
                at = 8 * disk
                row[at] = 1.0
                row[at + 1 + PEGS.index(peg)] = 1.0
                if disk in target:
                    row[at + 4 + PEGS.index(target[disk])] = 1.0
                row[at + 7] = float(target.get(disk) == peg)
        return row

    # -- how it reads in a prompt ------------------------------------------------------------------------------
    def describe(self, problem: Problem) -> str:
        return _description()

    def render_state(self, state: HanoiState) -> str:  # type: ignore[override]
        return f"A = {state.A}, B = {state.B}, C = {state.C}"

    def render_action(self, action: HanoiMove) -> str:  # type: ignore[override]
        return str(action)

    def prompt_dir(self, problem: Problem | None = None) -> Path:
        """``prompts/hanoi/`` (the original's three-disk examples), or the subfolder named by the problem's
        ``info["prompt_set"]`` (``icl4``: the four-disk in-context ablation's examples)."""
        root = super().prompt_dir()
        prompt_set = problem.info.get("prompt_set") if problem is not None else None
        return root / prompt_set if prompt_set else root


def legal_source_schema(state: HanoiState) -> dict[str, Any]:
    """The moves whose number is the top of a non-empty list, to another list: Rule 1 as a grammar. Which number
    is on top can be read off the state alone; Rule 2 (the target's numbers) is left to the Monitor, which still
    has something to judge.

    >>> [m["properties"]["disk"] for m in legal_source_schema(HanoiState(A=[0, 2], B=[1], C=[]))["anyOf"]]
    [{'const': 2}, {'const': 1}]
    """
    return {"anyOf": [
        {"type": "object", "properties": {"disk": {"const": state.peg(source)[-1]}, "source": {"const": source},
                                          "target": {"enum": [t for t in PEGS if t != source]}},
         "required": ["disk", "source", "target"], "additionalProperties": False}
        for source in PEGS if state.peg(source)]}


def configurations_schema(state: HanoiState) -> dict[str, Any]:
    """Every well-formed state of ``state``'s numbers: each number on exactly one list, every list increasing
    (3^n states: 81 with four disks). Each list is spelled as ``prefixItems`` of constants rather than an enum of
    whole values, which llama.cpp would turn into literal JSON text with fixed spacing; ``uniqueItems``, which
    would say "each number once" directly, is silently dropped by llama.cpp's converter.

    >>> len(configurations_schema(HanoiState(A=[0, 1], B=[], C=[2]))["anyOf"])
    27
    """
    disks = state.disks()

    def peg(numbers: list[int]) -> dict[str, Any]:
        return {"type": "array", "prefixItems": [{"const": d} for d in numbers], "items": False,
                "minItems": len(numbers), "maxItems": len(numbers)}

    return {"anyOf": [
        {"type": "object", "properties": {p: peg([d for d, at in zip(disks, where, strict=True) if at == p])
                                          for p in PEGS},
         "required": list(PEGS), "additionalProperties": False}
        for where in itertools.product(PEGS, repeat=len(disks))]}


def move_count_phrasings(n: int) -> list[str]:
    """Regular expressions for a prompt that states ``n`` as a number of moves or as a limit ("in 7 moves",
    "at most 7"), but not for the number ``n`` being moved ("2 moves from A")."""
    return [rf"\b{n}\s+(?:valid\s+)?moves?\b(?!\s+from)",
            rf"(?i)\b(?:at most|no more than|within|limit of|budget of|maximum of|optimal)\s+(?:[a-z]+\s+){{0,3}}{n}\b"]


def _lists(state: dict[str, Any]) -> list[list[int]]:
    return [list(state.get(peg, [])) for peg in PEGS]


def _original_valid(state: dict[str, Any], move: dict[str, Any]) -> bool:
    """The original evaluation's move check, kept as it is: it never asks whether source and target differ."""
    source, target = state.get(move["source"], []), state.get(move["target"], [])
    return move["disk"] in source and source[-1] == move["disk"] and not (target and move["disk"] < max(target))


@cache
def _description() -> str:
    return (resources.files("map_agent.prompts") / "hanoi" / "task.md").read_text(encoding="utf-8").strip()


def _problem(raw: dict, pid: str, n: int, source: str, index: int) -> Problem:
    where = f"{source}[{index}]"
    try:
        start = HanoiState(A=raw["A"], B=raw["B"], C=raw["C"])
        goal = HanoiState(**raw["goal"]) if "goal" in raw else HanoiState(A=[], B=[], C=sorted(start.disks()))
        optimal = int(raw["optimal_num_moves"])
        plan = [_parse_move(m).model_dump() for m in raw.get("optimal_moves", [])]
    except KeyError as e:
        raise InvalidProblem(f"{where}: missing field {e.args[0]!r}") from None
    except (ValidationError, TypeError, ValueError) as e:
        raise InvalidProblem(f"{where}: {e}") from None
    if start.disks() != goal.disks():
        raise InvalidProblem(f"{where}: field 'goal' holds disks {goal.disks()} but the start holds {start.disks()}")
    if len(set(start.disks())) != len(start.disks()):
        raise InvalidProblem(f"{where}: a disk appears twice in A/B/C")
    for peg in PEGS:
        lst = start.peg(peg)
        if lst != sorted(lst):
            raise InvalidProblem(f"{where}: field {peg!r} = {lst} has a smaller digit under a larger one")
    if plan and len(plan) != optimal:
        raise InvalidProblem(f"{where}: 'optimal_moves' holds {len(plan)} moves but 'optimal_num_moves' is {optimal}")
    return Problem(task="hanoi", id=pid, start=start.model_dump(), goal=goal.model_dump(), max_actions=n,
                   optimal_length=optimal, info={"disks": len(start.disks())},
                   hidden={"optimal_plan": plan} if plan else {})


def _parse_move(text: str) -> HanoiMove:
    """``"Move 2 from A to C."`` -> the move (the data files write plans as the prompts write moves)."""
    words = text.rstrip(".").split()
    if len(words) != 6 or words[0] != "Move" or words[2] != "from" or words[4] != "to":
        raise ValueError(f"not a move: {text!r}")
    return HanoiMove(disk=int(words[1]), source=words[3], target=words[5])


def load_problems(text: str, source: str, n: int, first_id: int) -> list[Problem]:
    """Parse a problem file's JSON text; ids come from ``map_problem_id`` or count on from ``first_id``."""
    raw = load_json(text, source, list, "problems")
    return [_problem(r, str(r.get("map_problem_id", first_id + i)), n, source, i) for i, r in enumerate(raw)]


@cache
def _world(n: int) -> Problem:
    """The ``n``-disk world's standard problem: every disk on A, moved to C (optimal: 2^n - 1 moves; N twice
    that). Its start reaches every state of the world, so it is all ``distill --states all`` needs."""
    optimal = 2**n - 1
    return Problem(task="hanoi", id=f"world{n}", start=HanoiState(A=list(range(n)), B=[], C=[]).model_dump(),
                   goal=HanoiState(A=[], B=[], C=list(range(n))).model_dump(), max_actions=2 * optimal,
                   optimal_length=optimal, info={"disks": n})


@cache
def _load() -> tuple[tuple[Problem, ...], tuple[Problem, ...]]:
    data = resources.files("map_agent.tasks") / "hanoi" / "data"
    three = load_problems((data / "hanoi3_map_order.json").read_text(), "hanoi3_map_order.json", N_THREE_DISKS, 1)
    four = load_problems((data / "hanoi4_all_problems.json").read_text(), "hanoi4_all_problems.json",
                         N_FOUR_DISKS, 27)
    return tuple(three), tuple(four)


def problem(problem_id: int | str) -> Problem:
    """A Hanoi problem by its paper id (1-26 three disks, 27-106 four disks)."""
    return HanoiTask().problem(str(problem_id), split=None)
