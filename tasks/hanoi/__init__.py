"""Tower of Hanoi in the MAP paper's list formulation.

Three lists A, B, C of digits; 0 is the largest disk and the rightmost digit is the top of a list. A digit may be
moved only from the right end of a list, and only onto a list whose digits are all smaller than it. The goal is
``C = [0, 1, 2]`` (3 disks) or ``C = [0, 1, 2, 3]`` (4 disks). The paper tests 24 three-disk problems (ids 3 and
22 are its in-context examples) with N = 10 and 80 four-disk problems with N = 20.

>>> from map_agent.tasks import hanoi
>>> p = hanoi.problem(7)
>>> p.start, p.max_actions
({'A': [0, 2], 'B': [1], 'C': []}, 10)
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from map_agent.task import InvalidProblem, Problem, Task, Verdict, load_json

Peg = Literal["A", "B", "C"]
PEGS: tuple[Peg, ...] = ("A", "B", "C")
Disk = Annotated[int, Field(ge=0, le=9)]
N_THREE_DISKS = 10
N_FOUR_DISKS = 20
ICL_IDS = ("3", "22")


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

    # -- data --------------------------------------------------------------------------------------------
    def splits(self) -> dict[str, str]:
        return {
            "test3": "the 24 three-disk test problems (paper order, in-context examples 3 and 22 left out), N=10",
            "icl3": "the two three-disk in-context examples (ids 3 and 22)",
            "all3": "all 26 three-disk problems, N=10",
            "test4": "the 80 four-disk problems (ids 27-106, out of distribution), N=20",
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
        raise KeyError(f"hanoi: unknown split {split!r}; known: {', '.join(self.splits())}")

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

    # -- how it reads in a prompt ------------------------------------------------------------------------------
    def describe(self, problem: Problem) -> str:
        return _description()

    def render_state(self, state: HanoiState) -> str:  # type: ignore[override]
        return f"A = {state.A}, B = {state.B}, C = {state.C}"

    def render_action(self, action: HanoiMove) -> str:  # type: ignore[override]
        return str(action)


@cache
def _description() -> str:
    return (resources.files("map_agent.prompts") / "hanoi" / "task.md").read_text(encoding="utf-8").strip()


def _problem(raw: dict, pid: str, n: int, source: str, index: int) -> Problem:
    where = f"{source}[{index}]"
    try:
        start = HanoiState(A=raw["A"], B=raw["B"], C=raw["C"])
        goal = HanoiState(**raw["goal"]) if "goal" in raw else HanoiState(A=[], B=[], C=sorted(start.disks()))
        optimal = int(raw["optimal_num_moves"])
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
    return Problem(task="hanoi", id=pid, start=start.model_dump(), goal=goal.model_dump(), max_actions=n,
                   optimal_length=optimal, info={"disks": len(start.disks())})


def load_problems(text: str, source: str, n: int, first_id: int) -> list[Problem]:
    """Parse a problem file's JSON text; ids come from ``map_problem_id`` or count on from ``first_id``."""
    raw = load_json(text, source, list, "problems")
    return [_problem(r, str(r.get("map_problem_id", first_id + i)), n, source, i) for i, r in enumerate(raw)]


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
