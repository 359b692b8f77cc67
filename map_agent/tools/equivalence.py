"""PDDL problem equivalence (Planetarium, Algorithm 1 and Definition 2).

Two problems over the same domain are equivalent when a bijection of objects maps one initial state onto the
other and one set of reachable goal states onto the other. With object identity (``is_placeholder=False``) this
is isomorphism of the problem graphs built from the initial state and the *fully specified* goal
(:mod:`map_agent.tools.fully_specify`). In placeholder mode (``is_placeholder=True``, for abstract descriptions
where any permutation of the goal's objects is acceptable) the initial scenes and the fully specified goal
scenes are compared separately.

Fast paths come first, as in the paper: different object counts, non-isomorphic initial scenes, and
isomorphic *unspecified* problem graphs (which imply equivalence). In placeholder mode the unspecified goal
scenes carry the initial state's static facts (e.g. Gripper's ``(ball b1)``) so that a goal cannot be matched
by swapping a ball with a room.

Example:
    >>> equivalent_texts(problem_a, problem_b, domain_text)  # doctest: +SKIP
    True
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from map_agent.tools.fully_specify import IllFormedState, domain_kind, fully_specify, fully_specify_by_search
from map_agent.tools.scene_graph import is_isomorphic, problem_graph, scene_graph
from map_agent.tools.strips import Atom, PDDLError, Strips

__all__ = ["Equivalence", "equivalence", "equivalent_texts", "static_facts"]


class Equivalence(BaseModel):
    """The verdict and the stage of Algorithm 1 that decided it (for diagnostics and benchmarks)."""

    model_config = ConfigDict(frozen=True)

    equivalent: bool
    stage: str
    reason: str


def static_facts(strips: Strips) -> frozenset[Atom]:
    """Initial facts whose predicate no action adds or deletes: they hold in every reachable state."""
    changing = {p for s in strips.schemas.values() for p, _ in (*s.add, *s.delete)}
    return frozenset(a for a in strips.initial if a[0] not in changing)


def _goal_of(strips: Strips, source: str) -> frozenset[Atom]:
    if strips.goal_neg:
        raise PDDLError(f"{source}: negative goals are not STRIPS and have no scene graph")
    return strips.goal_pos


def _specify(strips: Strips, goal: frozenset[Atom], max_states: int) -> frozenset[Atom] | None:
    if domain_kind(dict(strips.predicates)) is not None:
        try:
            return fully_specify(strips, goal)
        except IllFormedState:
            pass  # not a valid domain state: the rules do not apply, fall back to enumerating states
    return fully_specify_by_search(strips, goal, max_states=max_states)


def equivalence(reference: Strips, candidate: Strips, *, is_placeholder: bool = False,
                max_states: int = 50_000) -> Equivalence:
    """Decide whether ``candidate`` is equivalent to ``reference`` (both grounded on the same domain).

    ``max_states`` bounds the reachable-state enumeration used only for domains without fullySpecify rules
    (or ill-formed initial states); beyond it a RuntimeError is raised rather than a guess returned, as is
    :class:`~map_agent.tools.scene_graph.ProblemTooLarge` (a RuntimeError) for graphs past the isomorphism
    search's documented size (about 1600 Blocks World blocks) or symmetric enough to exhaust its work budget.
    """
    goal_a, goal_b = _goal_of(reference, "reference"), _goal_of(candidate, "candidate")
    if len(reference.objects) != len(candidate.objects):
        return Equivalence(equivalent=False, stage="object-count",
                           reason=f"{len(reference.objects)} objects vs {len(candidate.objects)}")
    init_a = scene_graph(reference.objects, reference.initial, "init")
    init_b = scene_graph(candidate.objects, candidate.initial, "init")
    if not is_isomorphic(init_a, init_b):
        return Equivalence(equivalent=False, stage="initial-scene", reason="initial states differ")

    def goal_scene(strips: Strips, goal: frozenset[Atom]):
        extra = static_facts(strips) if is_placeholder else frozenset()
        return scene_graph(strips.objects, goal | extra, "goal")

    def same(goal_1: frozenset[Atom], goal_2: frozenset[Atom]) -> bool:
        scene_1, scene_2 = goal_scene(reference, goal_1), goal_scene(candidate, goal_2)
        if is_placeholder:
            return is_isomorphic(scene_1, scene_2)
        return is_isomorphic(problem_graph(init_a, scene_1), problem_graph(init_b, scene_2))

    if same(goal_a, goal_b):
        return Equivalence(equivalent=True, stage="problem-graph", reason="goals match as written")
    full_a = _specify(reference, goal_a, max_states)
    full_b = _specify(candidate, goal_b, max_states)
    if full_a is None or full_b is None:
        both = full_a is None and full_b is None
        return Equivalence(equivalent=both, stage="unsatisfiable",
                           reason="both goals are unreachable" if both else
                           f"only the {'reference' if full_a is None else 'candidate'} goal is unreachable")
    if same(full_a, full_b):
        return Equivalence(equivalent=True, stage="fully-specified", reason="fully specified goals match")
    return Equivalence(equivalent=False, stage="fully-specified", reason="fully specified goals differ")


def equivalent_texts(reference: str, candidate: str, domain: str, *, is_placeholder: bool = False) -> bool:
    """:func:`equivalence` on PDDL texts (parsed with the cached parsers); PDDLError if one does not parse."""
    ref = Strips.from_text(domain, reference, problem_source="reference problem")
    cand = Strips.from_text(domain, candidate, problem_source="candidate problem")
    return equivalence(ref, cand, is_placeholder=is_placeholder).equivalent
