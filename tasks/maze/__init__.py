"""Grid mazes (the value-iteration paper's data) as a MAP task.

The state is the agent's cell, an action is one offset of the maze's action set, the goal is the goal cell.
The problems are the paper's four test sets (``test1``..``test4``, 100 mazes each, generated from the seed in
:mod:`map_agent.tasks.maze.data`). The action budget is ``N = optimal length + MARGIN``: the paper poses no
budget, and a margin of four moves lets an LLM-driven plan recover from a detour or two while still ruling out
wandering. Running MAP on mazes is this project's (neither paper does it); as for the MAP paper's tasks, a
shortest plan is ground truth (``Problem.hidden``) and no prompt states N or the optimal length, which would
give the optimal length away.

Ground truth: legality (the oracle Monitor) rejects moves outside the action set, off the grid or onto a wall;
``distance`` (the oracle Evaluator) reads the fewest moves off the optimal values of value iteration on the
maze's MDP, not off a breadth-first search.

>>> from map_agent.task import get_task
>>> task = get_task("maze")
>>> p = task.problems("test1")[0]
>>> task.distance(task.start(p), task.goal(p), p) == p.optimal_length
True
"""

from __future__ import annotations

import json
import math
from collections import deque
from functools import cache, lru_cache
from importlib import resources

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from map_agent.task import InvalidProblem, Problem, Task, Verdict
from map_agent.tasks.maze.data import TEST_SETS, MazeProblem, load_test_set
from map_agent.tools.maze import (
    Maze,
    Offset,
    SymbolConfig,
    distances_to,
    grid_literal,
    move_error,
    parse_maze,
)

#: moves allowed beyond the optimal plan length (N = optimal + MARGIN)
MARGIN = 4


class MazeState(BaseModel):
    """The agent's cell: ``row`` counts from the top (0), ``col`` from the left (0)."""

    model_config = ConfigDict(frozen=True)

    row: int = Field(description="row index, 0 is the top row")
    col: int = Field(description="column index, 0 is the leftmost column")


class MazeMove(BaseModel):
    """A move by an offset of the action set: ``d_row`` rows down, ``d_col`` columns right."""

    model_config = ConfigDict(frozen=True)

    d_row: int = Field(description="rows to move down (negative: up)")
    d_col: int = Field(description="columns to move right (negative: left)")

    @property
    def offset(self) -> tuple[int, int]:
        return (self.d_row, self.d_col)


def optimal_plan(maze: Maze, actions: tuple[Offset, ...]) -> list[Offset]:
    """A shortest plan from the agent to the goal: breadth-first distances to the goal, then from the start the
    first move of the action set that brings the agent one move closer (the reference solver's tie rule)."""
    dist = {maze.goal: 0}
    frontier = deque([maze.goal])
    while frontier:  # backwards: the cells one legal move before each reached cell
        cell = frontier.popleft()
        for dr, dc in actions:
            before = (cell[0] - dr, cell[1] - dc)
            if before not in dist and maze.free(before):
                dist[before] = dist[cell] + 1
                frontier.append(before)
    plan, pos = [], maze.agent
    while pos != maze.goal:
        move = next((dr, dc) for dr, dc in actions if dist.get((pos[0] + dr, pos[1] + dc)) == dist[pos] - 1)
        plan.append(move)
        pos = (pos[0] + move[0], pos[1] + move[1])
    return plan


def to_problem(p: MazeProblem) -> Problem:
    """A generated maze as a MAP problem; the grid and symbol configuration travel in ``info``, a shortest plan
    in ``hidden``."""
    maze = p.maze
    plan = [MazeMove(d_row=dr, d_col=dc).model_dump() for dr, dc in optimal_plan(maze, p.config.actions)]
    return Problem(task="maze", id=p.id, start=MazeState(row=maze.agent[0], col=maze.agent[1]).model_dump(),
                   goal=MazeState(row=maze.goal[0], col=maze.goal[1]).model_dump(),
                   max_actions=p.optimal_length + MARGIN, optimal_length=p.optimal_length,
                   info={"test_set": p.test_set, "grid": p.grid, "config": p.config.model_dump(mode="json")},
                   hidden={"optimal_plan": plan})


@lru_cache(maxsize=256)
def _environment(info_json: str, source: str) -> tuple[Maze, SymbolConfig]:
    info = json.loads(info_json)
    try:
        config = SymbolConfig.model_validate(info["config"])
        grid = info["grid"]
    except KeyError as e:
        raise InvalidProblem(f"{source}: missing field info.{e.args[0]}") from None
    except ValidationError as e:
        raise InvalidProblem(f"{source}: field info.config: {e}") from None
    return parse_maze(grid, config, source=source), config


@lru_cache(maxsize=1024)
def _distances(info_json: str, source: str, target: tuple[int, int]):
    maze, config = _environment(info_json, source)
    return distances_to(maze, config.actions, target)


def _key(problem: Problem) -> tuple[str, str]:
    return json.dumps({"grid": problem.info.get("grid"), "config": problem.info.get("config")},
                      sort_keys=True), problem.id


class MazeTask(Task[MazeState, MazeMove, MazeState]):
    """Ground truth, data and prompt rendering for grid mazes with configurable symbols and action sets."""

    name = "maze"
    State = MazeState
    Action = MazeMove
    Goal = MazeState

    # -- data --------------------------------------------------------------------------------------------
    def splits(self) -> dict[str, str]:
        return {
            "test1": "test set #1: training symbols and action sets (100 mazes)",
            "test2": "test set #2: new symbols, training action sets (100 mazes)",
            "test3": "test set #3: training symbols, new action sets: 3-jumps, knight moves (100 mazes)",
            "test4": "test set #4: new symbols and new action sets (100 mazes)",
        }

    def problems(self, split: str) -> list[Problem]:
        if split not in self.splits():
            raise KeyError(f"maze: unknown split {split!r}; known: {', '.join(self.splits())}")
        return list(_split(int(split.removeprefix("test"))))

    def environment(self, problem: Problem) -> tuple[Maze, SymbolConfig]:
        """The maze and its symbol configuration (parsed once per problem; malformed data ->
        InvalidProblem)."""
        return _environment(*_key(problem))

    # -- ground truth ----------------------------------------------------------------------------------------
    def check(self, state: MazeState, action: MazeMove, problem: Problem) -> Verdict:
        maze, config = self.environment(problem)
        reason = move_error(maze, (state.row, state.col), action.offset, config.actions)
        return Verdict(valid=reason is None, reason=reason or "")

    def apply(self, state: MazeState, action: MazeMove, problem: Problem) -> MazeState:
        """The target cell; total inside the grid (a believed state may follow a move into a wall)."""
        maze, _ = self.environment(problem)
        target = (state.row + action.d_row, state.col + action.d_col)
        if not maze.inside(target):
            raise ValueError(f"moving ({action.d_row}, {action.d_col}) from ({state.row}, {state.col}) "
                             f"leaves the {maze.height}x{maze.width} grid")
        return MazeState(row=target[0], col=target[1])

    def legal_actions(self, state: MazeState, problem: Problem) -> list[MazeMove]:
        maze, config = self.environment(problem)
        return [MazeMove(d_row=dr, d_col=dc) for dr, dc in config.actions
                if move_error(maze, (state.row, state.col), (dr, dc), config.actions) is None]

    def satisfies(self, state: MazeState, goal: MazeState, problem: Problem) -> bool:
        return state.row == goal.row and state.col == goal.col

    def leak_probes(self, problem: Problem) -> list[str]:
        """Beside the hidden shortest plan: N or the optimal length stated as a limit or as the optimum."""
        numbers = {problem.max_actions} | ({problem.optimal_length} if problem.optimal_length is not None else set())
        phrasings = [rf"(?i)\b(?:at most|no more than|within|limit of|budget of|optimal)\s+(?:[a-z]+\s+){{0,3}}{n}\b"
                     for n in sorted(numbers)]
        return [*super().leak_probes(problem), *phrasings]

    def distance(self, state: MazeState, goal: MazeState, problem: Problem) -> float:
        """Fewest moves, read off value iteration's optimal values for a reward at ``goal`` (cached)."""
        maze, _ = self.environment(problem)
        if not (maze.free((state.row, state.col)) and maze.free((goal.row, goal.col))):
            return math.inf
        return float(_distances(*_key(problem), (goal.row, goal.col))[state.row, state.col])

    # -- how it reads in a prompt ----------------------------------------------------------------------------
    def describe(self, problem: Problem) -> str:
        return _description() + "\n\n" + self.environment_text(problem)

    def environment_text(self, problem: Problem) -> str:
        """The maze itself: grid, symbols, start, goal and action set (examples carry theirs); no budget, which
        would state the optimal length."""
        maze, config = self.environment(problem)
        actions = ", ".join(f"(d_row={dr}, d_col={dc})" for dr, dc in config.actions)
        return "\n".join([
            f"The maze has {maze.height} rows and {maze.width} columns:",
            grid_literal(problem.info["grid"]),
            f'Symbols: "{config.agent}" agent (start), "{config.goal}" goal, "{config.wall}" wall, '
            f'"{config.empty}" empty cell.',
            f"The agent starts at row {maze.agent[0]}, column {maze.agent[1]}; the goal is at row "
            f"{maze.goal[0]}, column {maze.goal[1]}.",
            f"Action set: {actions}.",
        ])


@cache
def _split(number: int) -> tuple[Problem, ...]:
    return tuple(to_problem(p) for p in load_test_set(number))


@cache
def _description() -> str:
    return (resources.files("map_agent.prompts") / "maze" / "task.md").read_text(encoding="utf-8").strip()


__all__ = ["MARGIN", "TEST_SETS", "MazeMove", "MazeState", "MazeTask", "optimal_plan", "to_problem"]
