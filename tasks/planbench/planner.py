"""Optimal plans for PlanBench states: breadth-first search where state spaces are small, else Fast Downward.

The oracle Evaluator and Actor need the exact distance from many states, and N = optimal length + 4 needs the
optimal length of every instance. Breadth-first search (``map_agent.tools.strips``) is exact and fast on Mystery
Blocksworld; Logistics' state spaces are too large for it (and for pyperplan's A*, ~50 s on a 28-step instance),
so those go to Fast Downward's A* with the admissible LM-cut heuristic (``up-fast-downward`` ships the binary):
optimal, ~0.5 s a call, mostly the translator.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

from map_agent.tools.strips import GroundAction, Strips, breadth_first_plan, format_atom

#: breadth-first search gives up past this many states and hands the problem to Fast Downward
BFS_STATES = 50_000
FD_SEARCH = "astar(lmcut())"


class PlannerError(RuntimeError):
    """The planner failed (not: the goal is unreachable, which is ``None``)."""


def problem_text(strips: Strips, domain_name: str) -> str:
    """A PDDL problem for ``strips``' initial state and goal (what Fast Downward reads)."""
    objects = " ".join(sorted(strips.objects))
    init = "\n    ".join(format_atom(a) for a in sorted(strips.initial))
    goal = " ".join(format_atom(a) for a in sorted(strips.goal_pos))
    return (f"(define (problem {strips.name})\n  (:domain {domain_name})\n  (:objects {objects})\n"
            f"  (:init\n    {init})\n  (:goal (and {goal})))\n")


def fast_downward_driver() -> Path:
    """The Fast Downward driver script shipped inside the up-fast-downward wheel.

    Found without importing the package: its ``__init__`` imports unified-planning, which we never use (we run
    the driver as a subprocess), so importing it would add a dependency and seconds of start-up for nothing.
    """
    spec = importlib.util.find_spec("up_fast_downward")
    driver = (Path(next(iter(spec.submodule_search_locations))) / "downward" / "fast-downward.py"
              if spec and spec.submodule_search_locations else None)
    if driver is None or not driver.is_file():
        raise PlannerError("Fast Downward is not installed: pip install up-fast-downward")
    return driver


def fast_downward(strips: Strips, domain_file: Path, domain_name: str, timeout: float = 300) -> list[str] | None:
    """An optimal plan (action texts) by Fast Downward's A*/LM-cut; None if the goal is unreachable."""
    driver = fast_downward_driver()
    with tempfile.TemporaryDirectory(prefix="map-fd-") as tmp:
        problem = Path(tmp) / "problem.pddl"
        problem.write_text(problem_text(strips, domain_name), encoding="utf-8")
        plan_file = Path(tmp) / "plan"
        run = subprocess.run([sys.executable, str(driver), "--plan-file", str(plan_file), str(domain_file),
                              str(problem), "--search", FD_SEARCH], cwd=tmp, capture_output=True, text=True,
                             timeout=timeout)
        # exit codes (driver/returncodes.py): 0 plan found, 11/12 unsolvable
        if run.returncode in (11, 12):
            return None
        if run.returncode != 0 or not plan_file.exists():
            raise PlannerError(f"Fast Downward failed (exit {run.returncode}) on {strips.name}: "
                               f"{(run.stdout + run.stderr)[-800:]}")
        return [line.strip() for line in plan_file.read_text().splitlines()
                if line.strip() and not line.startswith(";")]


def optimal_plan(strips: Strips, domain_file: Path, domain_name: str,
                 bfs_states: int = BFS_STATES) -> list[GroundAction] | None:
    """A shortest plan from ``strips.initial`` to its goal, or None when there is none: breadth-first search
    up to ``bfs_states`` states (0: none), then Fast Downward."""
    if bfs_states > 0:
        try:
            return breadth_first_plan(strips, max_states=bfs_states)
        except RuntimeError:
            pass
    steps = fast_downward(strips, domain_file, domain_name)
    return None if steps is None else [strips.parse_action(s) for s in steps]
