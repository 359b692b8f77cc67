"""Value iteration on a grid maze as a LangChain tool, so an agent can hand a maze to an exact solver.

The agent passes the maze as the paper writes it (rows of symbols) with its symbol configuration and action
set; the tool answers with the value matrix, the greedy (shortest) path and its moves. A malformed maze comes
back as the error text (``handle_tool_error``), naming the problem and the row and column, so the agent can
fix its call.

>>> walls = ["#", "#", "#", "#"]
>>> out = value_iteration_tool.invoke({"maze": [walls, ["#", "A", "G", "#"], walls]})
>>> out["path"], out["moves"]
([[1, 1], [1, 2]], [[0, 1]])
"""

from __future__ import annotations

import math
from typing import Any

from langchain_core.tools import StructuredTool, ToolException
from pydantic import BaseModel, Field, ValidationError

from map_agent.tools import argument_error
from map_agent.tools.maze import FOUR_WAY, MazeError, SymbolConfig, greedy_path, parse_maze, solve_maze


class ValueIterationInput(BaseModel):
    """A maze in the paper's notation with its symbols, action set, goal reward and MDP parameters."""

    maze: list[list[str]] = Field(description="the maze as a list of rows of symbols, maze[row][col]")
    agent: str = Field(default="A", description="symbol of the agent's start cell")
    goal: str = Field(default="G", description="symbol of the goal cell")
    wall: str = Field(default="#", description="symbol of a wall")
    empty: str = Field(default="-", description="symbol of an empty cell")
    actions: list[tuple[int, int]] = Field(default=list(FOUR_WAY),
                                           description="moves as (d_row, d_col); (0, 1) is one cell right")
    reward: float = Field(default=1.0, gt=0, allow_inf_nan=False, description="reward for entering the goal")
    gamma: float = Field(default=0.9, gt=0, lt=1, description="discount factor")
    slip: float = Field(default=0.0, ge=0, lt=1, description="probability that a move fails (agent stays)")


#: the largest maze (cells) the tool solves: 200 x 200 takes about 1 s
MAX_CELLS = 40_000


def solve(maze: list[list[str]], agent: str = "A", goal: str = "G", wall: str = "#", empty: str = "-",
          actions: list[tuple[int, int]] | None = None, reward: float = 1.0, gamma: float = 0.9,
          slip: float = 0.0) -> dict[str, Any]:
    """Solve the maze MDP by value iteration; return the value matrix, the greedy path and its moves.

    The inputs are an agent's, so a maze over ``MAX_CELLS`` cells (value iteration takes about cells x diameter
    steps: seconds at the cap, minutes at 1000 x 1000) and a reward that is not a finite number are refused in
    one line rather than run or raised."""
    cells = sum(len(row) for row in maze)
    if cells > MAX_CELLS:
        raise ToolException(f"maze: {cells} cells, more than the {MAX_CELLS} this tool solves")
    if not math.isfinite(reward):
        raise ToolException(f"reward: must be a finite number (got {reward})")
    try:
        config = SymbolConfig(name="tool", agent=agent, goal=goal, wall=wall, empty=empty,
                              actions=tuple(tuple(a) for a in (FOUR_WAY if actions is None else actions)),
                              reward=reward)
        parsed = parse_maze(maze, config, source="maze")
    except ValidationError as e:  # the symbols or the action set
        raise ToolException(argument_error(e)) from None
    except (MazeError, ValueError) as e:
        raise ToolException(str(e)) from None
    solution = solve_maze(parsed, config.actions, reward, gamma, slip)
    path = greedy_path(solution.values, parsed, config.actions)
    return {
        "values": [[round(float(v), 6) for v in row] for row in solution.values],
        "path": [list(p) for p in path],
        "moves": [[b[0] - a[0], b[1] - a[1]] for a, b in zip(path, path[1:], strict=False)],
        "optimal_length": len(path) - 1,
        "iterations": solution.iterations,
        "converged": solution.converged,
    }


value_iteration_tool = StructuredTool.from_function(
    func=solve,
    name="maze_value_iteration",
    description=("Solve a grid maze exactly: frames it as an MDP (free cells are states, the action "
                 "set's moves are actions, entering the goal pays the reward) and runs value iteration. "
                 "Returns the value matrix, the shortest path from the agent to the goal as [row, col] "
                 "cells and its moves."),
    args_schema=ValueIterationInput,
    handle_tool_error=True,
    handle_validation_error=argument_error,
)
