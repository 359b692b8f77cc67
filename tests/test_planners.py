"""Specialised Blocks World and Gripper planners: they solve every well-formed problem, with valid plans."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_equivalence import blocks_problem, gripper_problem, model, towers_state

from map_agent.tools.fully_specify import IllFormedState, fully_specify_by_search
from map_agent.tools.planners import blocksworld_plan, gripper_plan, solve
from map_agent.tools.strips import validate

SETTINGS = settings(max_examples=80, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@SETTINGS
@given(st.integers(1, 4).flatmap(blocks_problem))
def test_blocksworld_planner_solves_exactly_the_solvable_problems(problem):
    strips = model("blocksworld", *problem)
    steps = blocksworld_plan(strips)
    solvable = fully_specify_by_search(strips) is not None
    assert (steps is not None) == solvable
    if steps is not None:
        assert validate(strips, steps).valid
        assert len(steps) <= 4 * len(strips.objects) + 1


@SETTINGS
@given(st.tuples(st.integers(1, 2), st.integers(1, 2), st.integers(0, 2)).flatmap(lambda s: gripper_problem(*s)))
def test_gripper_planner_solves_exactly_the_solvable_problems(problem):
    strips = model("gripper", *problem)
    steps = gripper_plan(strips)
    assert (steps is not None) == (fully_specify_by_search(strips) is not None)
    if steps is not None:
        assert validate(strips, steps).valid


def test_large_problems_solve_quickly():
    blocks = [f"b{i}" for i in range(60)]
    strips = model("blocksworld", blocks, towers_state([blocks]),
                   [("on", lower, upper) for lower, upper in zip(blocks, blocks[1:], strict=False)])
    steps = solve(strips)
    assert steps is not None and validate(strips, steps).valid


def test_ill_formed_initial_state_is_rejected_by_specialised_planner_but_solved_by_search():
    # Block a sits on two blocks at once: not a Blocks World state.
    init = [("on", "a", "b"), ("on", "a", "c"), ("on-table", "b"), ("on-table", "c"), ("clear", "a"),
            ("arm-empty",)]
    strips = model("blocksworld", ["a", "b", "c"], init, [("on-table", "a")])
    with pytest.raises(IllFormedState):
        blocksworld_plan(strips)
    steps = solve(strips)
    assert steps is not None and validate(strips, steps).valid
