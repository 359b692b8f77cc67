"""All six modules as symbolic oracles: MAP must solve every Hanoi problem, with zero invalid moves.

This is the end-to-end test of the wiring -- ProposeAction, Search, the plan loop and the graph -- since any slip
(a wrong backup, a lost branch, a stale subgoal) shows up as an unsolved or non-optimal plan.
"""

import pytest

from map_agent import MAPAgent
from map_agent.tasks.hanoi import HanoiTask

TASK = HanoiTask()


@pytest.mark.slow
@pytest.mark.parametrize("split, count", [("test3", 24), ("test4", 80)])
def test_all_oracle_map_solves_every_problem_optimally(split, count):
    problems = TASK.problems(split)
    assert len(problems) == count
    for p in problems:
        result = MAPAgent(p, backend="oracle").plan()
        assert result.solved, p.id
        assert result.invalid_moves == 0
        assert len(result.actions) == p.optimal_length, p.id  # exact Evaluator + L = 2 search: optimal
