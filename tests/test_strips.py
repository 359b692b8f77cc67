"""The grounded STRIPS model: parsing errors, applicability messages, plan validation, planners."""

from __future__ import annotations

import pytest

from map_agent.tools.strips import (
    GroundAction,
    PDDLError,
    Strips,
    breadth_first_plan,
    parse_atom,
    parse_domain_text,
    parse_problem_text,
    plan,
    validate,
)

BLOCKS = """
(define (domain blocksworld-4ops)
  (:requirements :strips)
  (:predicates (clear ?x) (ontable ?x) (handempty) (holding ?x) (on ?x ?y))
  (:action pick-up :parameters (?ob)
    :precondition (and (clear ?ob) (ontable ?ob) (handempty))
    :effect (and (holding ?ob) (not (clear ?ob)) (not (ontable ?ob)) (not (handempty))))
  (:action put-down :parameters (?ob)
    :precondition (holding ?ob)
    :effect (and (clear ?ob) (handempty) (ontable ?ob) (not (holding ?ob))))
  (:action stack :parameters (?ob ?underob)
    :precondition (and (clear ?underob) (holding ?ob))
    :effect (and (handempty) (clear ?ob) (on ?ob ?underob) (not (clear ?underob)) (not (holding ?ob))))
  (:action unstack :parameters (?ob ?underob)
    :precondition (and (on ?ob ?underob) (clear ?ob) (handempty))
    :effect (and (holding ?ob) (clear ?underob) (not (on ?ob ?underob)) (not (clear ?ob)) (not (handempty)))))
"""

# b on a, c on the table; goal: a on b.
TOWER = """
(define (problem p1) (:domain blocksworld-4ops)
  (:objects a b c)
  (:init (handempty) (on b a) (ontable a) (ontable c) (clear b) (clear c))
  (:goal (and (on a b))))
"""

TYPED = """
(define (domain typed-move)
  (:requirements :strips :typing :negative-preconditions)
  (:types room - place robot item - object)
  (:predicates (at ?r - robot ?p - place) (connected ?x ?y - place) (locked ?p - place)
               (has ?i - item ?p - place))
  (:action move :parameters (?r - robot ?from ?to - place)
    :precondition (and (at ?r ?from) (connected ?from ?to) (not (locked ?to)))
    :effect (and (at ?r ?to) (not (at ?r ?from)))))
"""

TYPED_PROBLEM = """
(define (problem t1) (:domain typed-move)
  (:objects r1 - robot k1 k2 k3 - room box - item)
  (:init (at r1 k1) (connected k1 k2) (connected k2 k3) (connected k1 k3) (locked k3) (connected k2 k1))
  (:goal (and (at r1 k2) (not (at r1 k1)))))
"""


@pytest.fixture
def tower() -> Strips:
    return Strips.from_text(BLOCKS, TOWER)


def test_parse_errors_name_the_source_and_line():
    with pytest.raises(PDDLError, match=r"gen\.pddl, line 2"):
        parse_problem_text("(define (problem x)\n (:domain d) (:objects a ))) (:init", source="gen.pddl")
    with pytest.raises(PDDLError, match=r"dom\.pddl"):
        parse_domain_text("(define (domain", source="dom.pddl")
    # A failed parse must not poison the shared parser.
    assert parse_problem_text(TOWER).name == "p1"


def test_parse_is_cached_by_text():
    assert parse_domain_text(BLOCKS) is parse_domain_text(BLOCKS)


def test_unknown_predicate_or_object_in_problem_is_rejected():
    bad = TOWER.replace("(ontable c)", "(on-table c)")
    with pytest.raises(PDDLError, match="unknown predicate 'on-table'"):
        Strips.from_text(BLOCKS, bad, problem_source="gen.pddl")
    with pytest.raises(PDDLError, match="unknown object 'd'"):
        Strips.from_text(BLOCKS, TOWER.replace("(clear c)", "(clear d)"))


def test_initial_goal_and_applicable(tower: Strips):
    assert ("on", "b", "a") in tower.initial
    assert tower.goal_pos == {("on", "a", "b")} and not tower.goal_neg
    names = [str(a) for a in tower.applicable(tower.initial)]
    assert names == ["(pick-up c)", "(unstack b a)"]


def test_check_names_first_failed_precondition(tower: Strips):
    act = tower.ground("unstack", ["a", "b"])
    assert tower.check(tower.initial, act) == "precondition (on a b) of (unstack a b) is false"
    assert tower.check(tower.initial, tower.ground("unstack", ["b", "a"])) is None
    state = tower.apply(tower.initial, tower.ground("unstack", ["b", "a"]))
    message = tower.check(state, tower.ground("pick-up", ["c"]))
    assert message == "precondition (handempty) of (pick-up c) is false"


def test_apply_deletes_then_adds(tower: Strips):
    state = tower.apply(tower.initial, tower.ground("unstack", ["b", "a"]))
    assert ("holding", "b") in state and ("clear", "a") in state
    assert ("on", "b", "a") not in state and ("handempty",) not in state


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("fly", ["a"], "unknown action 'fly'"),
        ("stack", ["a"], "takes 2 arguments"),
        ("pick-up", ["z"], "unknown object 'z'"),
    ],
)
def test_ground_rejects_bad_actions(tower: Strips, name, args, message):
    with pytest.raises(ValueError, match=message):
        tower.ground(name, args)


def test_ground_is_case_insensitive(tower: Strips):
    assert tower.parse_action("(UNSTACK B A)") == tower.ground("unstack", ["b", "a"])
    assert parse_atom("on a b") == ("on", "a", "b")


def test_validate_valid_and_invalid_plans(tower: Strips):
    good = ["(unstack b a)", "(put-down b)", "(pick-up a)", "(stack a b)"]
    result = validate(tower, good)
    assert result.valid and result.reaches_goal and result.failed_step is None and result.reason == ""

    broken = validate(tower, ["(unstack b a)", "(pick-up a)"])
    assert not broken.valid and broken.failed_step == 1
    assert "precondition (handempty) of (pick-up a) is false" in broken.reason

    short = validate(tower, good[:2])
    assert not short.valid and short.failed_step is None and "(on a b) is false" in short.reason

    garbage = validate(tower, ["(unstack b a)", "(teleport a)"])
    assert garbage.failed_step == 1 and "unknown action" in garbage.reason


def test_validate_accepts_ground_actions(tower: Strips):
    steps: list[GroundAction | str] = [tower.ground("unstack", ["b", "a"]), "(put-down b)"]
    assert validate(tower, steps).failed_step is None


def test_typing_and_negative_preconditions():
    model = Strips.from_text(TYPED, TYPED_PROBLEM)
    assert [str(a) for a in model.applicable(model.initial)] == ["(move r1 k1 k2)"]  # k3 is locked
    move = model.ground("move", ["r1", "k1", "k3"])
    assert model.check(model.initial, move) == "precondition (not (locked k3)) of (move r1 k1 k3) is false"
    with pytest.raises(ValueError, match="not of type robot"):
        model.ground("move", ["box", "k1", "k2"])
    assert model.goal_neg == {("at", "r1", "k1")}
    found = plan(model)
    assert [str(a) for a in found] == ["(move r1 k1 k2)"]


def test_planners_find_optimal_and_valid_plans(tower: Strips):
    optimal = plan(tower, optimal=True)
    assert optimal is not None and len(optimal) == 4 and validate(tower, optimal).valid
    assert len(breadth_first_plan(tower)) == 4
    greedy = plan(tower, optimal=False)
    assert greedy is not None and validate(tower, greedy).valid


def test_unsolvable_problem_has_no_plan():
    model = Strips.from_text(BLOCKS, TOWER.replace("(on a b)", "(on a a)"))
    assert plan(model, optimal=True) is None
    assert breadth_first_plan(model) is None


def test_grounds_only_reachable_actions(tower: Strips):
    # In the delete relaxation all 3 pick-up, 3 put-down, 9 stack and 9 unstack (self-stacking included) are
    # reachable; no real state makes a self-stack applicable.
    assert len(tower.actions) == 24
    assert all(a.args[0] != a.args[-1] or a.name in {"pick-up", "put-down"}
               for s in [tower.initial] for a in tower.applicable(s))
