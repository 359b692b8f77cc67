"""fullySpecify: the goal propositions true in *every* reachable goal state (Planetarium, Appendix C).

Why this decides equivalence. With a conjunctive goal ``G`` and the set ``S(G)`` of reachable states that satisfy
it, let ``F(G)`` be the intersection of ``S(G)``. Every state of ``S(G)`` contains ``F(G)`` and ``F(G) ⊇ G``, so
``S(F(G)) = S(G)``: two goals have the same goal-state set (Definition 2, condition 3) exactly when their ``F``
are equal. ``F`` is therefore the canonical goal, and equivalence is isomorphism of (initial state, ``F``).

Rather than transcribing the paper's rule list, each domain is modelled as *slots* that every valid state fills
with exactly one value, and a goal fixes some slots. Blocks World: what is below each block (table, a block,
the hand), what is above it (nothing = clear, a block, the hand) and the arm. Gripper: where robby is, where
each ball is (a room or a gripper) and what each gripper holds (nothing = free, or a ball). A proposition is
in ``F`` iff its slot has exactly one value that some valid completion of the goal realises; all valid states
of these domains are reachable from any valid initial state (given at least one gripper), so "valid" is
"reachable". One pass is exact; :func:`fully_specify` still iterates to a fixpoint, as the paper prescribes,
which is a cheap self-check.

Where the paper's Appendix C list and Definition 2 disagree (the definition wins here):

* Blocks World rule 1 only fires when *all* blocks have their top defined. A block's bottom is already forced
  onto the table when the only blocks with a free top are in its own tower (the chain rule 3 hints at): e.g.
  ``{(on a b)}`` with blocks ``a, b`` forces ``(on-table b)``, ``(clear a)`` and ``(arm-empty)``.
* Blocks World rule 4 ("no floating blocks, so the arm is empty") must not fire when the goal holds a block,
  and the only block the arm could hold is one with both its top and its bottom unspecified.
* Gripper rule 1 needs all balls placed, but a ball carried by a gripper is placed too: ``(carry b1 g1)`` and
  ``(at b2 r)`` force ``(free g2)`` for the other gripper.
* Gripper without grippers: balls can never move, so every ball's initial room is forced (no rule covers it).
* Static facts (Gripper's ``room``/``ball``/``gripper`` type predicates) hold in every reachable state, so they
  belong to ``F``; a goal asserting a static fact false initially is unsatisfiable.
* A goal no reachable state satisfies has ``S(G) = ∅``: Definition 2 makes all such problems with isomorphic
  initial states equivalent. :func:`fully_specify` returns None for them and the equivalence check handles it.
"""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from collections.abc import Iterable

from map_agent.tools.strips import Atom, Strips

__all__ = [
    "BLOCKSWORLD_PREDICATES",
    "GRIPPER_PREDICATES",
    "IllFormedState",
    "blocksworld_fully_specify",
    "check_blocksworld_state",
    "check_gripper_state",
    "domain_kind",
    "fully_specify",
    "fully_specify_by_search",
    "gripper_fully_specify",
]

BLOCKSWORLD_PREDICATES = {"clear": 1, "on-table": 1, "arm-empty": 0, "holding": 1, "on": 2}
GRIPPER_PREDICATES = {"room": 1, "ball": 1, "gripper": 1, "at-robby": 1, "at": 2, "free": 1, "carry": 2}
GRIPPER_STATIC = ("room", "ball", "gripper")


class IllFormedState(ValueError):
    """An initial state that is not a valid state of the domain (e.g. a block on two blocks)."""


def domain_kind(predicates: dict[str, int]) -> str | None:
    """"blocksworld" or "gripper" when the predicate signature is that domain's, else None."""
    if predicates == BLOCKSWORLD_PREDICATES:
        return "blocksworld"
    if predicates == GRIPPER_PREDICATES:
        return "gripper"
    return None


# ----------------------------------------------------------------------------------------------- Blocks World

_HELD = "<hand>"
_TABLE = "<table>"
_CLEAR = "<clear>"


def blocks_slots(blocks: Iterable[str], atoms: Iterable[Atom]):
    """below/above slot values fixed by ``atoms``; None if two atoms give one slot different values."""
    below: dict[str, str] = {}
    above: dict[str, str] = {}
    arm_empty = False

    def put(slots: dict[str, str], key: str, value: str) -> bool:
        if slots.setdefault(key, value) != value:
            return False
        return True

    blocks = set(blocks)
    for atom in atoms:
        pred, args = atom[0], atom[1:]
        if any(a not in blocks for a in args):
            return None
        ok = True
        if pred == "on":
            x, y = args
            ok = x != y and put(below, x, y) and put(above, y, x)
        elif pred == "on-table":
            ok = put(below, args[0], _TABLE)
        elif pred == "clear":
            ok = put(above, args[0], _CLEAR)
        elif pred == "holding":
            ok = put(below, args[0], _HELD) and put(above, args[0], _HELD)
        elif pred == "arm-empty":
            arm_empty = True
        else:
            return None
        if not ok:
            return None
    held = [b for b, v in below.items() if v == _HELD]
    if len(held) > 1 or (held and arm_empty):
        return None
    # on-chains must be acyclic: follow "below" pointers, stopping at blocks already known to end on the
    # table, in the hand or unspecified (walking the whole chain from every block would cost n^2 on a tower)
    settled: set[str] = set()
    for start in below:
        path: set[str] = set()
        node = start
        while node in below and node not in settled:
            if node in path:
                return None
            path.add(node)
            node = below[node]
        settled |= path
    return below, above, arm_empty, held


def check_blocksworld_state(blocks: Iterable[str], state: Iterable[Atom]) -> None:
    """Raise :class:`IllFormedState` unless ``state`` is a complete, valid Blocks World state."""
    blocks = set(blocks)
    slots = blocks_slots(blocks, state)
    if slots is None:
        raise IllFormedState("contradictory Blocks World state (a block in two places, a cycle, two held blocks)")
    below, above, arm_empty, held = slots
    missing = sorted(b for b in blocks if b not in below or b not in above)
    if missing:
        raise IllFormedState(f"Blocks World state leaves the position of {', '.join(missing)} unspecified")
    if not held and not arm_empty:
        raise IllFormedState("Blocks World state has neither (arm-empty) nor a held block")


def _chain_bottoms(blocks: Iterable[str], below: dict[str, str]) -> dict[str, str]:
    """The lowest block of each block's (acyclic) on-chain, each chain walked once rather than from every block."""
    bottom: dict[str, str] = {}
    for block in blocks:
        path = []
        while block not in bottom and below.get(block) not in (None, _TABLE, _HELD):
            path.append(block)
            block = below[block]
        base = bottom.setdefault(block, block)
        bottom.update(dict.fromkeys(path, base))
    return bottom


def blocksworld_fully_specify(blocks: Iterable[str], goal: Iterable[Atom]) -> frozenset[Atom] | None:
    """``F(goal)`` for Blocks World (any valid initial state with these blocks); None if unsatisfiable."""
    blocks = sorted(set(blocks))
    goal = frozenset(goal)
    slots = blocks_slots(blocks, goal)
    if slots is None:
        return None
    below, above, arm_empty, held = slots
    # A block's "tower" is identified by the bottom of its on-chain; joining two towers is only possible
    # when they differ (otherwise it would make a cycle).
    tower = _chain_bottoms(blocks, below)
    free_top = [b for b in blocks if b not in above]
    free_bottom = [b for b in blocks if b not in below]
    hand_free = not held and not arm_empty
    can_be_held = {b for b in blocks if hand_free and b not in below and b not in above}
    forced = set(goal)
    # "every free top other than x is in x's tower", by counts per tower instead of comparing all pairs
    tops_in, bottoms_in = Counter(tower[y] for y in free_top), Counter(tower[x] for x in free_bottom)
    for x in free_bottom:  # table is always possible: forced iff no other realisable value
        if x not in can_be_held and tops_in[tower[x]] == len(free_top):
            forced.add(("on-table", x))
    for y in free_top:  # clear is always possible
        if y not in can_be_held and bottoms_in[tower[y]] == len(free_bottom):
            forced.add(("clear", y))
    if hand_free and not can_be_held:
        forced.add(("arm-empty",))
    return frozenset(forced)


# ---------------------------------------------------------------------------------------------------- Gripper


def _gripper_types(objects: Iterable[str], init: Iterable[Atom]) -> dict[str, str]:
    types: dict[str, str] = {}
    for atom in init:
        if atom[0] in GRIPPER_STATIC:
            if types.setdefault(atom[1], atom[0]) != atom[0]:
                raise IllFormedState(f"object {atom[1]} has two types ({types[atom[1]]}, {atom[0]})")
    untyped = sorted(set(objects) - set(types))
    if untyped:
        raise IllFormedState(f"Gripper objects without a type (room/ball/gripper): {', '.join(untyped)}")
    return types


def gripper_slots(types: dict[str, str], atoms: Iterable[Atom], init: frozenset[Atom]):
    """robby/ball/gripper slot values fixed by ``atoms``; None if inconsistent or ill-typed."""
    robby: set[str] = set()
    ball: dict[str, tuple[str, str]] = {}
    grip: dict[str, str] = {}

    def put(slots: dict, key, value) -> bool:
        return slots.setdefault(key, value) == value

    for atom in atoms:
        pred, args = atom[0], atom[1:]
        if any(a not in types for a in args):
            return None
        if pred in GRIPPER_STATIC:
            if atom not in init:
                return None
            continue
        kinds = tuple(types[a] for a in args)
        if pred == "at-robby" and kinds == ("room",):
            robby.add(args[0])
        elif pred == "at" and kinds == ("ball", "room"):
            ok = put(ball, args[0], ("room", args[1]))
        elif pred == "carry" and kinds == ("ball", "gripper"):
            ok = put(ball, args[0], ("gripper", args[1])) and put(grip, args[1], args[0])
        elif pred == "free" and kinds == ("gripper",):
            ok = put(grip, args[0], _CLEAR)
        else:
            return None
        if pred != "at-robby" and not ok:
            return None
    if len(robby) > 1:
        return None
    return robby, ball, grip


def check_gripper_state(objects: Iterable[str], state: Iterable[Atom]) -> dict[str, str]:
    """Raise :class:`IllFormedState` unless ``state`` is a complete valid Gripper state; return object types."""
    state = frozenset(state)
    types = _gripper_types(objects, state)
    slots = gripper_slots(types, state, state)
    if slots is None:
        raise IllFormedState("contradictory or ill-typed Gripper state (a ball in two places, robby in two rooms)")
    robby, ball, grip = slots
    of = defaultdict(list)
    for name, kind in types.items():
        of[kind].append(name)
    problems = []
    if not robby:
        problems.append("robby is in no room")
    problems += [f"ball {b} is nowhere" for b in sorted(of["ball"]) if b not in ball]
    problems += [f"gripper {g} is neither free nor carrying" for g in sorted(of["gripper"]) if g not in grip]
    if problems:
        raise IllFormedState("Gripper state: " + "; ".join(problems))
    return types


def gripper_fully_specify(objects: Iterable[str], init: Iterable[Atom], goal: Iterable[Atom]
                          ) -> frozenset[Atom] | None:
    """``F(goal)`` for Gripper from a valid ``init``; None if no reachable state satisfies ``goal``."""
    init = frozenset(init)
    types = check_gripper_state(objects, init)
    slots = gripper_slots(types, goal, init)
    if slots is None:
        return None
    robby, ball, grip = slots
    rooms = sorted(o for o, k in types.items() if k == "room")
    balls = sorted(o for o, k in types.items() if k == "ball")
    grippers = sorted(o for o, k in types.items() if k == "gripper")
    forced = set(goal) | {a for a in init if a[0] in GRIPPER_STATIC}
    if not grippers:  # nothing can move a ball: each stays where it starts
        start = {a[1]: a[2] for a in init if a[0] == "at"}
        if any(value != ("room", start.get(b)) for b, value in ball.items()):
            return None
        forced |= {("at", b, r) for b, r in start.items()}
    else:
        free_balls = [b for b in balls if b not in ball]
        free_grippers = [g for g in grippers if g not in grip]
        if len(rooms) == 1 and not free_grippers:
            forced |= {("at", b, rooms[0]) for b in free_balls}
        if not free_balls:
            forced |= {("free", g) for g in free_grippers}
    if not robby and len(rooms) == 1:
        forced.add(("at-robby", rooms[0]))
    return frozenset(forced)


# ------------------------------------------------------------------------------------------------- dispatch


def fully_specify(strips: Strips, goal: Iterable[Atom] | None = None) -> frozenset[Atom] | None:
    """``F(goal)`` (default: the problem's goal) for Blocks World or Gripper, iterated to a fixpoint.

    Raises :class:`IllFormedState` if the initial state is not a valid domain state and ValueError for other
    domains (use :func:`fully_specify_by_search` there).
    """
    predicates = dict(strips.predicates)
    kind = domain_kind(predicates)
    current = frozenset(strips.goal_pos if goal is None else goal)
    objects = list(strips.objects)
    while True:
        if kind == "blocksworld":
            check_blocksworld_state(objects, strips.initial)
            nxt = blocksworld_fully_specify(objects, current)
        elif kind == "gripper":
            nxt = gripper_fully_specify(objects, strips.initial, current)
        else:
            raise ValueError(f"no fullySpecify rules for the domain of {strips.name} (predicates {predicates})")
        if nxt is None or nxt == current:
            return nxt
        current = nxt


def fully_specify_by_search(strips: Strips, goal: Iterable[Atom] | None = None, max_states: int = 50_000
                            ) -> frozenset[Atom] | None:
    """The reference ``F(goal)``: intersect every reachable state satisfying the goal (small problems only).

    Raises RuntimeError beyond ``max_states`` reachable states.
    """
    goal = frozenset(strips.goal_pos if goal is None else goal)
    seen = {strips.initial}
    frontier = deque([strips.initial])
    result: frozenset[Atom] | None = None
    while frontier:
        state = frontier.popleft()
        if goal <= state:
            result = state if result is None else result & state
        for _, nxt in strips.successors(state):
            if nxt not in seen:
                seen.add(nxt)
                if len(seen) > max_states:
                    raise RuntimeError(f"more than {max_states} reachable states in {strips.name}")
                frontier.append(nxt)
    return result
