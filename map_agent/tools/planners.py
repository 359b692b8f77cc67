"""Planners that decide solvability for the Planetarium metrics.

A general classical planner cannot reliably solve 60-block or 50-ball problems quickly (the paper says so too),
so Blocks World and Gripper get polynomial, domain-specific planners that solve *every* problem whose initial
state is a valid domain state and whose goal some reachable state satisfies; they are not optimal. Other
domains, and ill-formed initial states (a block on two blocks, two held blocks), fall back to a bounded
breadth-first search on the grounded STRIPS model. Every returned plan has been checked by
:func:`map_agent.tools.strips.validate`.

Example:
    >>> plan = solve(Strips.from_text(domain_text, problem_text))  # doctest: +SKIP
"""

from __future__ import annotations

from map_agent.tools.fully_specify import (
    IllFormedState,
    blocks_slots,
    blocksworld_fully_specify,
    check_blocksworld_state,
    check_gripper_state,
    domain_kind,
    gripper_fully_specify,
    gripper_slots,
)
from map_agent.tools.strips import GroundAction, State, Strips, breadth_first_plan, validate

__all__ = ["blocksworld_plan", "gripper_plan", "solve"]


class _Runner:
    """Grounds, checks and applies steps, so a planner bug surfaces at the step that caused it."""

    def __init__(self, strips: Strips) -> None:
        self.strips = strips
        self.state: State = strips.initial
        self.steps: list[GroundAction] = []

    def do(self, name: str, *args: str) -> None:
        action = self.strips.ground(name, list(args))
        problem = self.strips.check(self.state, action)
        if problem is not None:
            raise AssertionError(f"planner produced an inapplicable step: {problem}")
        self.state = self.strips.apply(self.state, action)
        self.steps.append(action)


def blocksworld_plan(strips: Strips) -> list[GroundAction] | None:
    """Put everything on the table, then build the goal towers bottom-up; None if the goal is unsatisfiable.

    At most ``4n + 1`` steps for ``n`` blocks. Raises :class:`IllFormedState` for an invalid initial state.
    """
    blocks = sorted(strips.objects)
    check_blocksworld_state(blocks, strips.initial)
    if blocksworld_fully_specify(blocks, strips.goal_pos) is None or strips.goal_neg:
        return None
    below, _, _, held_goal = blocks_slots(blocks, strips.goal_pos)
    run = _Runner(strips)
    holding = [a[1] for a in run.state if a[0] == "holding"]
    if holding:
        run.do("putdown", holding[0])
    while True:
        movable = sorted(a for a in run.state if a[0] == "on" and ("clear", a[1]) in run.state)
        if not movable:
            break
        _, top, under = movable[0]
        run.do("unstack", top, under)
        run.do("putdown", top)
    above = {y: x for x, y in below.items() if y in strips.objects}
    for bottom in blocks:
        if bottom in below and below[bottom] in strips.objects or bottom in held_goal:
            continue
        under = bottom
        while under in above:
            block = above[under]
            run.do("pickup", block)
            run.do("stack", block, under)
            under = block
    if held_goal:
        run.do("pickup", held_goal[0])
    return run.steps


def gripper_plan(strips: Strips) -> list[GroundAction] | None:
    """Drop everything, carry each misplaced ball with the first gripper, pick up the balls the goal wants
    carried, then park robby; None if the goal is unsatisfiable. Raises :class:`IllFormedState`."""
    objects = sorted(strips.objects)
    types = check_gripper_state(objects, strips.initial)
    if gripper_fully_specify(objects, strips.initial, strips.goal_pos) is None or strips.goal_neg:
        return None
    robby_goal, ball_goal, _ = gripper_slots(types, strips.goal_pos, strips.initial)
    run = _Runner(strips)

    def robby() -> str:
        return next(a[1] for a in run.state if a[0] == "at-robby")

    def where(ball: str) -> str:
        return next(a[2] for a in run.state if a[0] == "at" and a[1] == ball)

    def go(room: str) -> None:
        if robby() != room:
            run.do("move", robby(), room)

    for atom in sorted(a for a in run.state if a[0] == "carry"):
        run.do("drop", atom[1], robby(), atom[2])
    grippers = sorted(o for o, k in types.items() if k == "gripper")
    for ball, (kind, place) in sorted(ball_goal.items()):
        if kind == "room" and where(ball) != place:
            go(where(ball))
            run.do("pick", ball, robby(), grippers[0])
            go(place)
            run.do("drop", ball, place, grippers[0])
    for ball, (kind, gripper) in sorted(ball_goal.items()):
        if kind == "gripper":
            go(where(ball))
            run.do("pick", ball, robby(), gripper)
    if robby_goal:
        go(next(iter(robby_goal)))
    return run.steps


def solve(strips: Strips, max_states: int = 20_000) -> list[GroundAction] | None:
    """A validated plan, or None when the goal is unreachable (or, outside Blocks World and Gripper's valid
    states, not reached within ``max_states`` states of breadth-first search)."""
    kind = domain_kind(dict(strips.predicates))
    planner = {"blocksworld": blocksworld_plan, "gripper": gripper_plan}.get(kind or "")
    try:
        if planner is None:
            raise IllFormedState("no specialised planner")
        steps = planner(strips)
    except IllFormedState:
        try:
            steps = breadth_first_plan(strips, max_states=max_states)
        except RuntimeError:
            return None
    if steps is not None and not validate(strips, steps).valid:
        raise AssertionError(f"planner returned an invalid plan for {strips.name}: {validate(strips, steps).reason}")
    return steps
