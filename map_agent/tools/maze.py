"""Grid mazes as MDPs: parsing and rendering with symbol configurations, generation, solving, greedy paths.

Conventions (the paper's): a maze is a Python list of rows, ``maze[row][col]``; positions are ``(row, col)``;
an action is an offset ``(d_row, d_col)`` from the action set of the maze's symbol configuration, so ``(0,
1)`` moves one cell right and ``(2, 0)`` jumps two rows down. A jump lands on its target cell only (it may
pass over walls, as a knight does); a move is legal when the target is inside the grid and not a wall.

As an MDP the free cells are the states; a legal move goes to its target (with probability ``1 - slip``,
staying put otherwise), an illegal one leaves the agent in place; entering the goal pays the goal reward and
the goal is absorbing. With ``0 < gamma < 1`` a cell ``d`` moves from the goal is worth ``reward *
gamma**(d-1)``, so the greedy path on the values is a shortest path.

>>> maze = parse_maze([["#", "#", "#", "#"], ["#", "A", "G", "#"], ["#", "#", "#", "#"]],
...                   SymbolConfig(name="tiny", agent="A", goal="G", wall="#", empty="-"))
>>> greedy_path(solve_maze(maze, FOUR_WAY).values, maze, FOUR_WAY)
[(1, 1), (1, 2)]
"""

from __future__ import annotations

import ast
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from map_agent.task import InvalidProblem
from map_agent.tools.mdp import MDP, value_iteration

if TYPE_CHECKING:  # networkx and scipy (half a second together) are imported by what searches or solves a maze,
    import networkx as nx  # not when `map-agent tasks` lists the maze task

Position = tuple[int, int]
Offset = tuple[int, int]

FOUR_WAY: tuple[Offset, ...] = ((0, 1), (1, 0), (0, -1), (-1, 0))
DIAGONALS: tuple[Offset, ...] = ((1, 1), (1, -1), (-1, 1), (-1, -1))
JUMP2: tuple[Offset, ...] = ((0, 2), (2, 0), (0, -2), (-2, 0))
JUMP3: tuple[Offset, ...] = ((0, 3), (3, 0), (0, -3), (-3, 0))
KNIGHT: tuple[Offset, ...] = ((1, 2), (2, 1), (2, -1), (1, -2), (-1, -2), (-2, -1), (-2, 1), (-1, 2))

#: Named action sets. The paper's training sets always hold the four basic directions, optionally with
#: diagonals or 2-jumps; test sets #3/#4 add 3-jumps and knight moves.
ACTION_SETS: dict[str, tuple[Offset, ...]] = {
    "four_way": FOUR_WAY,
    "diagonal": FOUR_WAY + DIAGONALS,
    "jump2": FOUR_WAY + JUMP2,
    "jump3": FOUR_WAY + JUMP3,
    "knight": FOUR_WAY + KNIGHT,
}

#: the paper places width x height x 0.2 random walls
WALL_FRACTION = 0.2


class MazeError(InvalidProblem):
    """A malformed maze; the message names the problem and, where there is one, the row and column."""


class SymbolConfig(BaseModel):
    """One of the paper's maze configurations: the symbols, the action set and the goal reward."""

    model_config = ConfigDict(frozen=True)

    name: str
    agent: str = Field(min_length=1)
    goal: str = Field(min_length=1)
    wall: str = Field(min_length=1)
    empty: str = Field(min_length=1)
    actions: tuple[Offset, ...] = FOUR_WAY
    reward: float = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _distinct(self) -> SymbolConfig:
        symbols = [self.agent, self.goal, self.wall, self.empty]
        if len(set(symbols)) != 4:
            raise ValueError(f"config {self.name!r}: agent/goal/wall/empty symbols must differ: {symbols}")
        if not self.actions or len(set(self.actions)) != len(self.actions) or (0, 0) in self.actions:
            raise ValueError(f"config {self.name!r}: actions must be distinct non-zero offsets")
        return self


class Maze(BaseModel):
    """A maze independent of its symbols: size, wall cells, agent and goal positions."""

    model_config = ConfigDict(frozen=True)

    height: int = Field(ge=1)
    width: int = Field(ge=1)
    walls: frozenset[Position]
    agent: Position
    goal: Position

    @property
    def wall_mask(self) -> np.ndarray:
        """Walls as a boolean ``height x width`` array (built on demand: a frozen model stays comparable)."""
        mask = np.zeros((self.height, self.width), dtype=bool)
        if self.walls:
            rows, cols = zip(*self.walls, strict=True)
            mask[list(rows), list(cols)] = True
        return mask

    def inside(self, pos: Position) -> bool:
        return 0 <= pos[0] < self.height and 0 <= pos[1] < self.width

    def free(self, pos: Position) -> bool:
        return self.inside(pos) and pos not in self.walls


# -- legality ------------------------------------------------------------------------------------------------
def move_error(maze: Maze, pos: Position, action: Offset, actions: Sequence[Offset]) -> str | None:
    """Why ``action`` is illegal at ``pos`` (``None`` if legal): not in the action set, off the grid, wall."""
    if tuple(action) not in {tuple(a) for a in actions}:
        return f"({action[0]}, {action[1]}) is not in the action set {[tuple(a) for a in actions]}"
    target = (pos[0] + action[0], pos[1] + action[1])
    if not maze.inside(target):
        return (f"moving ({action[0]}, {action[1]}) from {pos} leads to {target}, outside the "
                f"{maze.height}x{maze.width} grid")
    if target in maze.walls:
        return f"moving ({action[0]}, {action[1]}) from {pos} leads to {target}, which is a wall"
    return None


def maze_graph(maze: Maze, actions: Sequence[Offset]) -> nx.DiGraph:
    """The free cells with an edge for every legal move (directed: a jump need not be reversible)."""
    import networkx as nx

    g = nx.DiGraph()
    free = [(r, c) for r in range(maze.height) for c in range(maze.width) if (r, c) not in maze.walls]
    g.add_nodes_from(free)
    for r, c in free:
        for dr, dc in actions:
            target = (r + dr, c + dc)
            if maze.free(target):
                g.add_edge((r, c), target)
    return g


def shortest_length(maze: Maze, actions: Sequence[Offset]) -> float:
    """Fewest moves from agent to goal by breadth-first search (``inf`` when the goal is unreachable)."""
    import networkx as nx

    try:
        return float(nx.shortest_path_length(maze_graph(maze, actions), maze.agent, maze.goal))
    except nx.NetworkXNoPath:
        return math.inf


# -- parsing and rendering -----------------------------------------------------------------------------------
def parse_maze(grid: Sequence[Sequence[str]] | str, config: SymbolConfig, source: str = "maze") -> Maze:
    """Read a symbol grid (a list of rows, or its Python literal text) into a :class:`Maze`.

    Raises :class:`MazeError` naming ``source`` and the problem: ragged rows, an unknown symbol, no or several
    agents/goals (with their row and column), or a goal the agent cannot reach with the config's action set.
    """
    if isinstance(grid, str):
        text = grid.strip().removeprefix("maze").lstrip(" =")
        try:
            grid = ast.literal_eval(text)
        except (ValueError, SyntaxError) as e:
            raise MazeError(f"{source}: not a Python list of rows: {e}") from None
    if not isinstance(grid, (list, tuple)) or not grid or not all(isinstance(r, (list, tuple)) for r in grid):
        raise MazeError(f"{source}: expected a non-empty list of rows (lists of symbols)")
    width = len(grid[0])
    if width == 0:
        raise MazeError(f"{source}: row 0 is empty")
    for r, row in enumerate(grid):
        if len(row) != width:
            raise MazeError(f"{source}: ragged rows: row {r} has {len(row)} cells but row 0 has {width}")
    known = {config.agent: "agent", config.goal: "goal", config.wall: "wall", config.empty: "empty"}
    walls: set[Position] = set()
    agents: list[Position] = []
    goals: list[Position] = []
    for r, row in enumerate(grid):
        for c, cell in enumerate(row):
            if not isinstance(cell, str):
                raise MazeError(f"{source}: the cell at row {r}, column {c} is {type(cell).__name__} {cell!r}, "
                                "not a symbol (a string)")
            kind = known.get(cell.strip())
            if kind is None:
                raise MazeError(f"{source}: unknown symbol {cell!r} at row {r}, column {c}; known symbols: "
                                + ", ".join(f"{s!r} ({k})" for s, k in known.items()))
            if kind == "wall":
                walls.add((r, c))
            elif kind == "agent":
                agents.append((r, c))
            elif kind == "goal":
                goals.append((r, c))
    for what, symbol, found in (("agent", config.agent, agents), ("goal", config.goal, goals)):
        if not found:
            raise MazeError(f"{source}: no {what} ({symbol!r}) in the maze")
        if len(found) > 1:
            where = ", ".join(f"row {r} column {c}" for r, c in found)
            raise MazeError(f"{source}: {len(found)} {what}s ({symbol!r}) at {where}; expected exactly one")
    maze = Maze(height=len(grid), width=width, walls=frozenset(walls), agent=agents[0], goal=goals[0])
    if math.isinf(shortest_length(maze, config.actions)):
        raise MazeError(f"{source}: the goal at row {maze.goal[0]}, column {maze.goal[1]} is unreachable "
                        f"from the agent at row {maze.agent[0]}, column {maze.agent[1]} with actions "
                        f"{list(config.actions)}")
    return maze


def render_grid(maze: Maze, config: SymbolConfig) -> list[list[str]]:
    """The maze as a list of rows of the config's symbols."""
    rows = [[config.wall if (r, c) in maze.walls else config.empty for c in range(maze.width)]
            for r in range(maze.height)]
    rows[maze.agent[0]][maze.agent[1]] = config.agent
    rows[maze.goal[0]][maze.goal[1]] = config.goal
    return rows


def grid_literal(grid: Sequence[Sequence[str]], name: str = "maze") -> str:
    """``maze=[[...],\\n      [...]]``: the Python literal the paper's prompt shows, one row per line."""
    indent = " " * (len(name) + 2)
    rows = [repr(list(row)) for row in grid]
    return f"{name}=[" + (",\n" + indent).join(rows) + "]"


# -- generation ----------------------------------------------------------------------------------------------
def generate_maze(rng: random.Random, width: int, height: int, actions: Sequence[Offset],
                  wall_fraction: float = WALL_FRACTION, max_tries: int = 1000) -> Maze:
    """The paper's construction: border walls, ``int(width*height*wall_fraction)`` random walls inside, agent
    at (1, 1), goal at (height-2, width-2); resampled until the goal is reachable with ``actions``.
    """
    if width < 4 or height < 4:
        raise ValueError(f"maze must be at least 4x4 to have an inside, got {width}x{height}")
    border = {(r, c) for r in range(height) for c in range(width)
              if r in (0, height - 1) or c in (0, width - 1)}
    agent, goal = (1, 1), (height - 2, width - 2)
    inside = [(r, c) for r in range(1, height - 1) for c in range(1, width - 1)
              if (r, c) not in (agent, goal)]
    n_walls = min(int(width * height * wall_fraction), len(inside))
    for _ in range(max_tries):
        walls = frozenset(border | set(rng.sample(inside, n_walls)))
        maze = Maze(height=height, width=width, walls=walls, agent=agent, goal=goal)
        if reachable(maze, actions):
            return maze
    raise ValueError(f"no solvable {width}x{height} maze in {max_tries} tries (walls: {wall_fraction})")


def _move_targets(maze: Maze, actions: Sequence[Offset]) -> tuple[np.ndarray, list[np.ndarray]]:
    """State index of every cell (-1: wall) and, per action, each state's target state (-1: illegal)."""
    free = ~maze.wall_mask
    index = np.full((maze.height, maze.width), -1, dtype=np.int64)
    rows, cols = np.nonzero(free)
    index[rows, cols] = np.arange(rows.size)
    targets = []
    for dr, dc in actions:
        target = np.full(rows.size, -1, dtype=np.int64)
        if abs(dr) < maze.height and abs(dc) < maze.width:  # a longer jump leaves the grid (and int64)
            tr, tc = rows + dr, cols + dc
            ok = (tr >= 0) & (tr < maze.height) & (tc >= 0) & (tc < maze.width)
            target[ok] = index[tr[ok], tc[ok]]
        targets.append(target)
    return index, targets


def reachable(maze: Maze, actions: Sequence[Offset]) -> bool:
    """Whether the goal can be reached from the agent (sparse breadth-first search; fast on huge grids)."""
    from scipy import sparse
    from scipy.sparse import csgraph

    index, targets = _move_targets(maze, actions)
    n = int(index.max()) + 1
    src = np.concatenate([np.flatnonzero(t >= 0) for t in targets])
    dst = np.concatenate([t[t >= 0] for t in targets])
    graph = sparse.csr_matrix((np.ones(src.size), (src, dst)), shape=(n, n))
    order = csgraph.breadth_first_order(graph, int(index[maze.agent]), directed=True,
                                        return_predecessors=False)
    return bool(np.isin(index[maze.goal], order))


# -- the maze as an MDP --------------------------------------------------------------------------------------
def maze_mdp(maze: Maze, actions: Sequence[Offset], reward: float = 1.0, gamma: float = 0.9,
             slip: float = 0.0) -> tuple[MDP, np.ndarray]:
    """The maze's MDP and the state index of every cell (``-1`` for walls), built with array operations.

    ``slip`` is the probability that a legal move fails and the agent stays put (0 gives the deterministic
    maze).
    """
    from scipy import sparse

    if not 0.0 <= slip < 1.0:
        raise ValueError(f"slip={slip} must lie in [0, 1)")
    index, targets = _move_targets(maze, actions)
    n = int(index.max()) + 1
    states = np.arange(n)
    goal = index[maze.goal]
    transitions, rewards = [], np.zeros((len(actions), n))
    for a, legal in enumerate(targets):
        target = np.where(legal >= 0, legal, states)
        target[goal] = goal
        moved = target != states
        p_move = np.where(moved, 1.0 - slip, 0.0)
        t = sparse.coo_matrix((np.concatenate([p_move, 1.0 - p_move]), (np.concatenate([states, states]),
                                                                         np.concatenate([target, states]))),
                              shape=(n, n)).tocsr()
        t.eliminate_zeros()
        transitions.append(t)
        rewards[a] = np.where(target == goal, reward * p_move, 0.0)
    return MDP(tuple(transitions), rewards, gamma), index


@dataclass(frozen=True)
class MazeSolution:
    """The value matrix of a maze (``values[row][col]``; walls and the absorbing goal hold 0)."""

    values: np.ndarray
    iterations: int
    converged: bool


def solve_maze(maze: Maze, actions: Sequence[Offset], reward: float = 1.0, gamma: float = 0.9,
               slip: float = 0.0, tol: float = 1e-12, max_iter: int = 100_000) -> MazeSolution:
    """Value iteration on the maze's MDP, laid back onto the grid."""
    mdp, index = maze_mdp(maze, actions, reward, gamma, slip)
    result = value_iteration(mdp, tol=tol, max_iter=max_iter)
    values = np.zeros((maze.height, maze.width))
    free = index >= 0
    values[free] = result.values[index[free]]
    return MazeSolution(values, result.iterations, result.converged)


def distances_to(maze: Maze, actions: Sequence[Offset], target: Position, gamma: float = 0.99) -> np.ndarray:
    """Fewest moves from every cell to ``target`` (``inf`` if unreachable), read off the optimal values.

    With goal reward 1 a cell ``d >= 1`` moves away is worth ``gamma**(d-1)``; inverting that gives ``d``.
    ``gamma`` close to 1 keeps neighbouring distances far apart in floating point for any grid that fits in
    memory.
    """
    solved = solve_maze(maze.model_copy(update={"goal": target}), actions, 1.0, gamma)
    with np.errstate(divide="ignore"):
        steps = 1.0 + np.rint(np.log(solved.values) / math.log(gamma))
    steps[solved.values <= 0] = math.inf
    steps[target] = 0.0
    return steps


def greedy_path(values: np.ndarray | Sequence[Sequence[float]], maze: Maze, actions: Sequence[Offset],
                max_steps: int | None = None) -> list[Position]:
    """The agent's path when it always takes the legal move to the best-valued cell.

    The goal counts as the best cell whenever one move reaches it (so a script may give the absorbing goal any
    value); otherwise the highest value wins, and values within 1e-9 (relative) of the best are a tie broken
    by the action order of the set. The path stops at the goal, at a cell with no legal move, on revisiting a
    cell (a loop) or after ``max_steps`` moves (default: the number of cells).
    """
    v = np.nan_to_num(np.asarray(values, dtype=float), nan=-np.inf)
    limit = maze.height * maze.width if max_steps is None else max_steps
    path = [maze.agent]
    seen = {maze.agent}
    pos = maze.agent
    while pos != maze.goal and len(path) <= limit:
        options = [(pos[0] + dr, pos[1] + dc) for dr, dc in actions]
        options = [t for t in options if maze.free(t)]
        if not options:
            break
        if maze.goal in options:
            nxt = maze.goal
        else:
            best = max(v[t] for t in options)
            nxt = next(t for t in options if v[t] >= best - 1e-9 * max(1.0, abs(best)))
        path.append(nxt)
        if nxt in seen:
            break
        seen.add(nxt)
        pos = nxt
    return path
