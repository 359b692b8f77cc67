"""Fuzzing every parser and tool: any input gives a result or one clear line naming what is wrong, never a crash.

One hypothesis test per parser or tool. Inputs are arbitrary (any Unicode text, lone surrogates from undecodable
bytes included; nested lists of anything; huge integers; NaN) or valid inputs mutated at random. The outcome of
each case is recorded as a hypothesis event (``pytest --hypothesis-show-statistics`` prints the tally).
"""

from __future__ import annotations

import itertools
import math
from importlib import resources

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from pydantic import ValidationError

from map_agent.task import InvalidProblem
from map_agent.tools.equivalence import equivalence
from map_agent.tools.maze import FOUR_WAY, MazeError, SymbolConfig, greedy_path, parse_maze, solve_maze
from map_agent.tools.mdp import MDP, value_iteration
from map_agent.tools.pddl_tools import pddl_equivalent, validate_plan
from map_agent.tools.planners import solve
from map_agent.tools.strips import PDDLError, Strips, parse_domain_text, parse_problem_text, validate
from map_agent.tools.value_iteration_tool import value_iteration_tool

FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

BLOCKS = resources.files("map_agent.tasks.planetarium").joinpath("blocksworld.pddl").read_text()
PROBLEM = ("(define (problem p) (:domain blocksworld) (:objects a b c)\n"
           "  (:init (arm-empty) (on-table a) (on b a) (clear b) (on-table c) (clear c))\n"
           "  (:goal (and (on a b) (on b c))))")
CONFIG = SymbolConfig(name="fuzz", agent="A", goal="G", wall="#", empty="-")

#: any code point, lone surrogates (what undecodable bytes become) included
ANY_TEXT = st.text(st.characters(blacklist_categories=()), max_size=40)
#: characters that matter to the PDDL grammar, some letters, and a surrogate
PDDL_PIECES = st.text(st.sampled_from(list("()?:- \n\tabcdefghijklmnopqrstuvwxyzAB0123456789;") + ["\udcff", "é"]),
                      max_size=12)


def one_line(message: str, *names: str) -> None:
    """A clear error: one non-empty line without a traceback, naming what it is about."""
    assert message and "\n" not in message and "Traceback" not in message, message
    assert all(name in message for name in names), (names, message)


@st.composite
def mutated(draw, text: str) -> str:
    """``text`` with up to three spans replaced by random PDDL-ish pieces."""
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 15)))
        text = text[:i] + draw(PDDL_PIECES) + text[j:]
    return text


@FUZZ
@given(st.one_of(ANY_TEXT, mutated(BLOCKS)))
def test_fuzz_domain_parser(text):
    try:
        parse_domain_text(text, "fuzz.pddl")
        event("domain: parsed")
    except PDDLError as exc:
        one_line(str(exc), "fuzz.pddl")
        event("domain: PDDLError")


@FUZZ
@given(st.one_of(ANY_TEXT, mutated(PROBLEM)))
def test_fuzz_problem_parser_and_grounding(text):
    try:
        parse_problem_text(text, "p.pddl")
        Strips.from_text(BLOCKS, text, problem_source="p.pddl")
        event("problem: grounded")
    except PDDLError as exc:
        one_line(str(exc), "p.pddl")
        event("problem: PDDLError")


@pytest.mark.parametrize("text, expected", [
    ("(define (problem p) (:domain \udcff) (:objects a))", "not valid Unicode"),
    (PROBLEM.replace("(:domain blocksworld)", "(:domain nosuch)"), "for domain 'nosuch'"),
    (b"(define (problem p))", "must be text"),
])
def test_problems_the_fuzzer_found_are_refused_in_one_line(text, expected):
    with pytest.raises(PDDLError) as refused:
        Strips.from_text(BLOCKS, text, problem_source="found.pddl")
    one_line(str(refused.value), "found.pddl", expected)


@FUZZ
@given(st.lists(st.one_of(ANY_TEXT, st.sampled_from(["(unstack b a)", "(put-down b)", "(pick-up a)",
                                                     "(stack a b)", "(UNSTACK B A)", "unstack b", "()"])),
                max_size=6))
def test_fuzz_plan_validation(plan):
    strips = Strips.from_text(BLOCKS, PROBLEM)
    result = validate(strips, plan)
    event(f"plan: valid={result.valid}, failed_step={'none' if result.failed_step is None else 'some'}")
    if result.failed_step is not None:
        one_line(result.reason, f"step {result.failed_step}")


@st.composite
def blocks_problem(draw) -> str:
    """A Blocks World problem over up to four blocks: any facts, well-formed or not."""
    blocks = ["a", "b", "c", "d"][: draw(st.integers(1, 4))]
    facts = [("arm-empty",)] + [(p, x) for p in ("on-table", "clear", "holding") for x in blocks] + \
            [("on", x, y) for x, y in itertools.permutations(blocks, 2)]
    init = draw(st.lists(st.sampled_from(facts), max_size=8, unique=True))
    goal = draw(st.lists(st.sampled_from(facts), min_size=1, max_size=4, unique=True))
    show = " ".join
    return (f"(define (problem p) (:domain blocksworld) (:objects {show(blocks)}) "
            f"(:init {show('(' + ' '.join(f) + ')' for f in init)}) "
            f"(:goal (and {show('(' + ' '.join(f) + ')' for f in goal)})))")


@FUZZ
@given(blocks_problem(), blocks_problem(), st.booleans())
def test_fuzz_equivalence(first, second, placeholder):
    verdict = equivalence(Strips.from_text(BLOCKS, first), Strips.from_text(BLOCKS, second),
                          is_placeholder=placeholder)
    event(f"equivalence: {verdict.stage}, {verdict.equivalent}")
    assert verdict.reason and "\n" not in verdict.reason


@FUZZ
@given(blocks_problem())
def test_fuzz_planner(text):
    strips = Strips.from_text(BLOCKS, text)
    plan = solve(strips)
    event(f"planner: {'plan' if plan is not None else 'unsolvable'}")
    if plan is not None:
        assert validate(strips, plan).valid


@FUZZ
@given(st.one_of(mutated(BLOCKS), ANY_TEXT), st.one_of(mutated(PROBLEM), blocks_problem(), ANY_TEXT),
       st.one_of(mutated(PROBLEM), blocks_problem()), st.lists(ANY_TEXT, max_size=3))
def test_fuzz_pddl_tools_answer_instead_of_raising(domain, reference, candidate, plan):
    answer = pddl_equivalent.invoke({"domain": domain, "reference": reference, "candidate": candidate})
    event(f"pddl_equivalent: {'error' if 'error' in answer else answer['stage']}")
    if "error" in answer:
        one_line(answer["error"])
    checked = validate_plan.invoke({"domain": domain, "problem": reference, "plan": plan})
    event(f"validate_plan: {'error' if 'error' in checked else 'valid' if checked['valid'] else 'invalid'}")
    one_line(checked["reason"]) if not checked["valid"] else None


def test_pddl_tools_answer_bad_arguments_in_one_line():
    answer = validate_plan.invoke({"domain": 3, "plan": "not a list"})
    one_line(answer, "domain", "problem", "plan")


#: a cell of a fuzzed maze: the config's symbols, other strings, or things that are no symbol at all
CELLS = st.one_of(st.sampled_from(["A", "G", "#", "-", " - "]), ANY_TEXT, st.integers(), st.none(),
                  st.lists(st.sampled_from(["A", "-"]), max_size=2), st.floats(allow_nan=True))


@st.composite
def plausible_grid(draw) -> list[list[str]]:
    """Walls and empty cells with the agent in one corner and the goal in the other: often a valid maze."""
    height, width = draw(st.integers(1, 5)), draw(st.integers(2, 5))
    grid = [[draw(st.sampled_from(["-", "-", "#"])) for _ in range(width)] for _ in range(height)]
    grid[0][0], grid[-1][-1] = "A", "G"
    return grid


@FUZZ
@given(st.one_of(st.lists(st.lists(CELLS, max_size=5), max_size=5), ANY_TEXT, plausible_grid(),
                 plausible_grid().map(repr), plausible_grid().map(lambda g: [*g, g[0][:1]])))
def test_fuzz_maze_parser(grid):
    try:
        maze = parse_maze(grid, CONFIG, source="fuzz maze")
        event("maze: parsed")
    except MazeError as exc:
        one_line(str(exc), "fuzz maze")
        event("maze: MazeError")
        return
    path = greedy_path(solve_maze(maze, FOUR_WAY).values, maze, FOUR_WAY)
    assert path[-1] == maze.goal


OFFSETS = st.tuples(st.one_of(st.integers(-3, 3), st.integers()), st.one_of(st.integers(-3, 3), st.integers()))


@FUZZ
@given(st.one_of(st.lists(OFFSETS, max_size=4), st.lists(OFFSETS, max_size=3).map(lambda a: [*FOUR_WAY, *a])))
def test_fuzz_maze_action_sets(actions):
    grid = [["#", "#", "#", "#"], ["#", "A", "-", "#"], ["#", "-", "G", "#"], ["#", "#", "#", "#"]]
    try:
        config = CONFIG.model_copy(update={"actions": tuple(actions)})
        SymbolConfig.model_validate(config.model_dump())
        maze = parse_maze(grid, config)
        event("actions: solvable")
    except ValidationError:
        event("actions: invalid set")
        return
    except MazeError as exc:
        one_line(str(exc), "unreachable")
        event("actions: goal unreachable")
        return
    values = solve_maze(maze, config.actions).values
    assert np.isfinite(values).all()


SHAPES = st.tuples(st.integers(1, 3), st.integers(1, 4)).map(lambda s: (s[0], s[1], s[1]))
ANY_ARRAY = hnp.arrays(float, st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4)),
                       elements=st.one_of(st.sampled_from([0.0, 0.5, 1.0]), st.floats(allow_nan=True)))
#: row-stochastic arrays: what a valid MDP has
STOCHASTIC = SHAPES.flatmap(lambda shape: hnp.arrays(float, shape, elements=st.floats(0.01, 1))).map(
    lambda t: t / t.sum(axis=2, keepdims=True))


@FUZZ
@given(st.one_of(ANY_ARRAY, STOCHASTIC), st.one_of(st.floats(-10, 10), st.floats(allow_nan=True)),
       st.one_of(st.floats(0, 0.99), st.floats(-2, 2)))
def test_fuzz_mdp(transitions, reward, gamma):
    rewards = np.full((transitions.shape[0], transitions.shape[1]), reward)
    try:
        mdp = MDP.from_dense(transitions, rewards, gamma)
    except ValueError as exc:
        one_line(str(exc), "MDP")
        event("mdp: refused")
        return
    result = value_iteration(mdp, max_iter=10_000)
    event(f"mdp: solved, converged={result.converged}")
    assert np.isfinite(result.values).all()


@FUZZ
@given(st.fixed_dictionaries({"maze": st.one_of(st.lists(st.lists(CELLS, max_size=4), max_size=4), CELLS,
                                                plausible_grid())},
                             optional={"actions": st.lists(OFFSETS, max_size=3),
                                       "gamma": st.floats(allow_nan=True), "reward": st.floats(allow_nan=True),
                                       "slip": st.floats(allow_nan=True), "agent": ANY_TEXT}))
def test_fuzz_value_iteration_tool(arguments):
    answer = value_iteration_tool.invoke(arguments)
    if isinstance(answer, str):
        one_line(answer)
        event("value_iteration_tool: error answer")
        return
    event("value_iteration_tool: solved")
    assert all(math.isfinite(v) for row in answer["values"] for v in row)


def test_the_empty_action_list_is_refused_not_replaced_by_four_way_moves():
    answer = value_iteration_tool.invoke({"maze": [["A", "G"]], "actions": []})
    one_line(answer, "actions")


def test_a_huge_jump_is_just_illegal():
    config = CONFIG.model_copy(update={"actions": ((10 ** 30, 0), (0, 1))})
    maze = parse_maze([["A", "G"]], config)
    assert greedy_path(solve_maze(maze, config.actions).values, maze, config.actions) == [(0, 0), (0, 1)]


def test_a_list_in_a_cell_is_named():
    with pytest.raises(InvalidProblem) as refused:
        parse_maze([["A", ["G"]]], CONFIG, source="m.json")
    one_line(str(refused.value), "m.json", "row 0, column 1", "list")
