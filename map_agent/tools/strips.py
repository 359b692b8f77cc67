"""A grounded STRIPS model of a PDDL domain + problem: the symbolic ground truth behind plan checking.

Supported PDDL: ``:strips``, ``:typing`` (with a type hierarchy and domain constants),
``:negative-preconditions`` and ``:equality`` in preconditions and goals (conjunctions of literals only).
Everything else (conditional effects, quantifiers, disjunctions, numeric fluents) is rejected with a
:class:`PDDLError`, because silently ignoring it would make the validator lie.

Names are case-insensitive in PDDL, so every predicate, action and object name is lower-cased: a plan step
``(UNSTACK B A)`` and ``(unstack b a)`` are the same action.

Parsing is a large share of a checker's cost, so the ``pddl`` package's Lark parsers are built once per
process (building the LALR tables takes ~0.3 s, a parse a few ms) and parsed domains and problems are cached
by the hash of their text.

Example:
    >>> domain = parse_domain_text(BLOCKS_DOMAIN)  # doctest: +SKIP
    >>> problem = parse_problem_text(BLOCKS_PROBLEM)  # doctest: +SKIP
    >>> model = Strips.from_pddl(domain, problem)  # doctest: +SKIP
    >>> validate(model, ["(unstack b a)", "(put-down b)"]).valid  # doctest: +SKIP
    True
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import re
import threading
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from pddl.core import Domain, Problem
from pddl.logic.base import And, Not
from pddl.logic.predicates import EqualTo, Predicate
from pddl.logic.terms import Variable
from pydantic import BaseModel, ConfigDict

__all__ = [
    "Atom",
    "GroundAction",
    "PDDLError",
    "PlanValidation",
    "Strips",
    "format_atom",
    "parse_atom",
    "parse_domain_text",
    "parse_problem_text",
    "plan",
    "validate",
]

Atom = tuple[str, ...]
"""A ground proposition: the predicate followed by its arguments, e.g. ``("on", "a", "b")``."""

State = frozenset[Atom]


class PDDLError(ValueError):
    """PDDL that cannot be parsed or is outside the supported fragment; the message names its source."""


# --------------------------------------------------------------------------------------------------- parsing

_PARSE_LOCK = threading.Lock()


@functools.cache
def _parsers():
    """The two Lark parsers, built once: their grammar tables are the expensive part of parsing."""
    from pddl.parser.domain import DomainParser
    from pddl.parser.problem import ProblemParser

    return DomainParser(), ProblemParser()


def _error(source: str, kind: str, exc: Exception) -> PDDLError:
    line = getattr(exc, "line", None)
    where = f"{source}, line {line}" if isinstance(line, int) and line > 0 else source
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return PDDLError(f"{where}: cannot parse PDDL {kind}: {detail}")


def _parse(index: int, text: str, source: str, kind: str):
    parser = _parsers()[index]
    with _PARSE_LOCK:
        # The package's transformers keep state between rules (e.g. the type hierarchy) and only reset it on
        # success; re-initialising them makes a failed parse harmless for the next one.
        parser._transformer.__init__()
        try:
            return parser(text)
        except Exception as exc:  # lark and pddl raise many unrelated exception types
            raise _error(source, kind, exc) from None


@functools.lru_cache(maxsize=256)
def _parse_domain_cached(digest: str, text: str) -> Domain:
    return _parse(0, text, "<cached>", "domain")


@functools.lru_cache(maxsize=4096)
def _parse_problem_cached(digest: str, text: str) -> Problem:
    return _parse(1, text, "<cached>", "problem")


def _digest(text: str, source: str, kind: str) -> str:
    """The cache key of a text, once it is known to be text (lone surrogates from undecodable bytes are not)."""
    if not isinstance(text, str):
        raise PDDLError(f"{source}: the PDDL {kind} must be text, not {type(text).__name__}")
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise PDDLError(f"{source}: the PDDL {kind} is not valid Unicode text ({exc.reason} at character "
                        f"{exc.start}: the file is probably not UTF-8)") from None
    return hashlib.sha256(data).hexdigest()


def parse_domain_text(text: str, source: str = "<string>") -> Domain:
    """Parse a PDDL domain (cached by text hash); raise :class:`PDDLError` naming ``source`` on failure."""
    digest = _digest(text, source, "domain")
    try:
        return _parse_domain_cached(digest, text)
    except PDDLError as exc:
        raise PDDLError(str(exc).replace("<cached>", source, 1)) from None


def parse_problem_text(text: str, source: str = "<string>") -> Problem:
    """Parse a PDDL problem (cached by text hash); raise :class:`PDDLError` naming ``source`` on failure."""
    digest = _digest(text, source, "problem")
    try:
        return _parse_problem_cached(digest, text)
    except PDDLError as exc:
        raise PDDLError(str(exc).replace("<cached>", source, 1)) from None


# ------------------------------------------------------------------------------------------------- atoms

_ATOM_RE = re.compile(r"^\s*\(?\s*([^()\s]+)((?:\s+[^()\s]+)*)\s*\)?\s*$")


def format_atom(atom: Atom) -> str:
    """``("on", "a", "b")`` -> ``"(on a b)"``."""
    return "(" + " ".join(atom) + ")"


def parse_atom(text: str) -> Atom:
    """``"(on a b)"`` or ``"on a b"`` -> ``("on", "a", "b")`` (lower-cased); raise ValueError if malformed."""
    match = _ATOM_RE.match(text)
    if not match:
        raise ValueError(f"not a ground atom or action: {text!r} (expected e.g. '(unstack b a)')")
    return (match.group(1).lower(), *match.group(2).lower().split())


# ------------------------------------------------------------------------------------------- ground model


@dataclass(frozen=True)
class GroundAction:
    """One instantiated action schema. ``pre_pos``/``pre_neg`` keep the domain's order for messages."""

    name: str
    args: tuple[str, ...]
    pre_pos: tuple[Atom, ...] = field(compare=False)
    pre_neg: tuple[Atom, ...] = field(compare=False)
    add: frozenset[Atom] = field(compare=False)
    delete: frozenset[Atom] = field(compare=False)

    def __str__(self) -> str:
        return format_atom((self.name, *self.args))


# A schema term is ("var", parameter index) or ("const", object name).
_Term = tuple[str, object]


@dataclass(frozen=True)
class _Schema:
    """An action schema compiled to index-based terms so grounding is a tuple substitution."""

    name: str
    params: tuple[str, ...]
    types: tuple[str | None, ...]
    pre_pos: tuple[tuple[str, tuple[_Term, ...]], ...]
    pre_neg: tuple[tuple[str, tuple[_Term, ...]], ...]
    equal: tuple[tuple[_Term, _Term], ...]
    not_equal: tuple[tuple[_Term, _Term], ...]
    add: tuple[tuple[str, tuple[_Term, ...]], ...]
    delete: tuple[tuple[str, tuple[_Term, ...]], ...]


def _sub(terms: tuple[_Term, ...], binding: Sequence[str]) -> tuple[str, ...]:
    return tuple(binding[v] if k == "var" else v for k, v in terms)  # type: ignore[index]


def _flatten(formula, where: str) -> list:
    """A precondition/goal/effect as a list of literals; anything beyond a conjunction is unsupported."""
    if formula is None:
        return []
    if isinstance(formula, And):
        return [lit for op in formula.operands for lit in _flatten(op, where)]
    if isinstance(formula, (Predicate, EqualTo)):
        return [formula]
    if isinstance(formula, Not) and isinstance(formula.argument, (Predicate, EqualTo)):
        return [formula]
    raise PDDLError(f"{where}: unsupported formula {formula} (only conjunctions of literals are STRIPS)")


class Strips:
    """A grounded STRIPS problem: initial state, goal literals and the domain's action schemas.

    Actions are grounded lazily: :meth:`applicable` joins the positive preconditions against the state (so a
    logistics state with 30 objects does not enumerate 30^4 drive actions) and :meth:`ground` builds one
    action by name. :attr:`actions` grounds every action reachable in the delete relaxation, for planners.
    """

    def __init__(
        self,
        *,
        name: str,
        objects: dict[str, str | None],
        predicates: dict[str, int],
        type_parents: dict[str, str | None],
        schemas: dict[str, _Schema],
        initial: State,
        goal_pos: frozenset[Atom],
        goal_neg: frozenset[Atom],
    ) -> None:
        self.name = name
        self.objects = objects
        self.predicates = predicates
        self.type_parents = type_parents
        self.schemas = schemas
        self.initial: State = initial
        self.goal_pos = goal_pos
        self.goal_neg = goal_neg
        self._objects_of_type: dict[str | None, tuple[str, ...]] = {}

    # ------------------------------------------------------------------------------------- construction
    def with_task(self, initial: Iterable[Atom], goal_pos: Iterable[Atom],
                  goal_neg: Iterable[Atom] = ()) -> Strips:
        """The same domain and objects with another initial state and goal (planning from a mid-plan state, or
        towards a subgoal); the compiled schemas are shared, the grounded-action cache is not."""
        return Strips(name=self.name, objects=self.objects, predicates=self.predicates,
                      type_parents=self.type_parents, schemas=self.schemas, initial=frozenset(initial),
                      goal_pos=frozenset(goal_pos), goal_neg=frozenset(goal_neg))

    @classmethod
    def from_pddl(cls, domain: Domain, problem: Problem, source: str = "<problem>") -> Strips:
        """Build the model; raise :class:`PDDLError` for unsupported features, unknown names, or a problem
        written for another domain (its ``(:domain ...)``)."""
        wanted, actual = str(problem.domain_name).lower(), str(domain.name).lower()
        if wanted != actual:
            raise PDDLError(f"{source}: the problem is for domain {wanted!r} (its :domain), but the domain given "
                            f"is {actual!r}")
        type_parents: dict[str, str | None] = {str(k).lower(): (str(v).lower() if v else None)
                                               for k, v in dict(domain.types).items()}
        objects: dict[str, str | None] = {}
        for const in itertools.chain(domain.constants, problem.objects):
            tags = sorted(str(t).lower() for t in const.type_tags)
            objects[str(const.name).lower()] = tags[0] if tags else None
        predicates = {str(p.name).lower(): p.arity for p in domain.predicates}
        where_goal = f"{source}: goal"

        def atom(pred: Predicate, where: str) -> Atom:
            name = str(pred.name).lower()
            args = tuple(str(t.name).lower() for t in pred.terms)
            if name not in predicates:
                raise PDDLError(f"{where}: unknown predicate {name!r} in {format_atom((name, *args))}")
            if predicates[name] != len(args):
                raise PDDLError(f"{where}: {format_atom((name, *args))} has {len(args)} arguments, "
                                f"predicate {name} takes {predicates[name]}")
            for arg in args:
                if arg not in objects:
                    raise PDDLError(f"{where}: unknown object {arg!r} in {format_atom((name, *args))}")
            return (name, *args)

        initial = frozenset(atom(p, f"{source}: init") for p in problem.init
                            if _require_predicate(p, f"{source}: init"))
        goal_pos: set[Atom] = set()
        goal_neg: set[Atom] = set()
        for lit in _flatten(problem.goal, where_goal):
            if isinstance(lit, Not):
                if isinstance(lit.argument, EqualTo):
                    raise PDDLError(f"{where_goal}: equality goals are not supported")
                goal_neg.add(atom(lit.argument, where_goal))
            elif isinstance(lit, EqualTo):
                raise PDDLError(f"{where_goal}: equality goals are not supported")
            else:
                goal_pos.add(atom(lit, where_goal))
        schemas = {s.name: s for s in (_compile_schema(a, predicates) for a in domain.actions)}
        return cls(name=str(problem.name), objects=objects, predicates=predicates, type_parents=type_parents,
                   schemas=schemas, initial=initial, goal_pos=frozenset(goal_pos), goal_neg=frozenset(goal_neg))

    @classmethod
    def from_text(cls, domain_text: str, problem_text: str, domain_source: str = "<domain>",
                  problem_source: str = "<problem>") -> Strips:
        """Parse both texts (cached) and build the model."""
        return cls.from_pddl(parse_domain_text(domain_text, domain_source),
                             parse_problem_text(problem_text, problem_source), problem_source)

    # ------------------------------------------------------------------------------------------ typing
    def is_of_type(self, obj: str, type_name: str | None) -> bool:
        """Whether ``obj``'s declared type is ``type_name`` or a subtype of it (``None``/object: any)."""
        if type_name is None or type_name == "object":
            return True
        current = self.objects.get(obj)
        seen: set[str] = set()
        while current is not None and current not in seen:
            if current == type_name:
                return True
            seen.add(current)
            current = self.type_parents.get(current)
        return False

    def objects_of_type(self, type_name: str | None) -> tuple[str, ...]:
        if type_name not in self._objects_of_type:
            self._objects_of_type[type_name] = tuple(sorted(o for o in self.objects
                                                            if self.is_of_type(o, type_name)))
        return self._objects_of_type[type_name]

    # ---------------------------------------------------------------------------------------- semantics
    def satisfies(self, state: Iterable[Atom]) -> bool:
        """Whether ``state`` is a goal state (all positive goal atoms true, all negative ones false)."""
        state = state if isinstance(state, (set, frozenset)) else frozenset(state)
        return self.goal_pos <= state and not (self.goal_neg & state)

    def check(self, state: State, action: GroundAction) -> str | None:
        """None if ``action`` is applicable in ``state``, else a text naming its first false precondition."""
        for atom in action.pre_pos:
            if atom not in state:
                return f"precondition {format_atom(atom)} of {action} is false"
        for atom in action.pre_neg:
            if atom in state:
                return f"precondition (not {format_atom(atom)}) of {action} is false"
        return None

    def apply(self, state: State, action: GroundAction) -> State:
        """The successor state (delete effects first, then add effects, as PDDL prescribes); no check."""
        return (state - action.delete) | action.add

    def ground(self, name: str, args: Sequence[str]) -> GroundAction:
        """The ground action ``(name *args)``; raise ValueError on unknown name/object, arity or type."""
        name = name.lower()
        args = tuple(a.lower() for a in args)
        schema = self.schemas.get(name)
        shown = format_atom((name, *args))
        if schema is None:
            known = ", ".join(sorted(self.schemas))
            raise ValueError(f"unknown action {name!r} in {shown}; actions are: {known}")
        if len(args) != len(schema.params):
            raise ValueError(f"{shown}: action {name} takes {len(schema.params)} arguments "
                             f"({' '.join('?' + p for p in schema.params)}), got {len(args)}")
        for param, type_name, arg in zip(schema.params, schema.types, args, strict=True):
            if arg not in self.objects:
                raise ValueError(f"{shown}: unknown object {arg!r}")
            if not self.is_of_type(arg, type_name):
                raise ValueError(f"{shown}: object {arg!r} is not of type {type_name} (parameter ?{param})")
        for left, right in schema.equal:
            a, b = _sub((left, right), args)
            if a != b:
                raise ValueError(f"{shown}: arguments {a!r} and {b!r} must be equal")
        for left, right in schema.not_equal:
            a, b = _sub((left, right), args)
            if a == b:
                raise ValueError(f"{shown}: arguments {a!r} must differ")
        return self._instantiate(schema, args)

    def parse_action(self, text: str) -> GroundAction:
        """``"(unstack b a)"`` -> the ground action (see :meth:`ground`)."""
        atom = parse_atom(text)
        return self.ground(atom[0], list(atom[1:]))

    @staticmethod
    def _instantiate(schema: _Schema, args: tuple[str, ...]) -> GroundAction:
        return GroundAction(
            name=schema.name,
            args=args,
            pre_pos=tuple((p, *_sub(t, args)) for p, t in schema.pre_pos),
            pre_neg=tuple((p, *_sub(t, args)) for p, t in schema.pre_neg),
            add=frozenset((p, *_sub(t, args)) for p, t in schema.add),
            delete=frozenset((p, *_sub(t, args)) for p, t in schema.delete),
        )

    def _bindings(self, schema: _Schema, index: dict[str, list[tuple[str, ...]]]
                  ) -> Iterator[tuple[str, ...]]:
        """All parameter bindings whose positive preconditions are in ``index`` (a join, most-bound first)."""
        n = len(schema.params)
        binding: list[str | None] = [None] * n

        def matches(terms: tuple[_Term, ...], args: tuple[str, ...]) -> list[int] | None:
            newly: list[int] = []
            for (kind, value), arg in zip(terms, args, strict=True):
                if kind == "const":
                    if value != arg:
                        break
                elif binding[value] is None:  # type: ignore[index]
                    if not self.is_of_type(arg, schema.types[value]):  # type: ignore[index]
                        break
                    binding[value] = arg  # type: ignore[index]
                    newly.append(value)  # type: ignore[arg-type]
                elif binding[value] != arg:  # type: ignore[index]
                    break
            else:
                return newly
            for v in newly:
                binding[v] = None
            return None

        def rec(remaining: list[tuple[str, tuple[_Term, ...]]]) -> Iterator[tuple[str, ...]]:
            if not remaining:
                free = [i for i in range(n) if binding[i] is None]
                for values in itertools.product(*(self.objects_of_type(schema.types[i]) for i in free)):
                    for i, v in zip(free, values, strict=True):
                        binding[i] = v
                    yield tuple(binding)  # type: ignore[arg-type]
                for i in free:
                    binding[i] = None
                return
            # Join the precondition with the most bound variables next (fewest candidates).
            best = max(range(len(remaining)), key=lambda k: sum(
                1 for kind, v in remaining[k][1] if kind == "const" or binding[v] is not None))  # type: ignore[index]
            pred, terms = remaining[best]
            rest = remaining[:best] + remaining[best + 1:]
            for args in index.get(pred, ()):
                newly = matches(terms, args)
                if newly is None:
                    continue
                yield from rec(rest)
                for v in newly:
                    binding[v] = None

        yield from rec(list(schema.pre_pos))

    def _index(self, atoms: Iterable[Atom]) -> dict[str, list[tuple[str, ...]]]:
        index: dict[str, list[tuple[str, ...]]] = defaultdict(list)
        for atom in atoms:
            index[atom[0]].append(atom[1:])
        return index

    def _candidates(self, atoms: Iterable[Atom]) -> Iterator[GroundAction]:
        index = self._index(atoms)
        for schema in self.schemas.values():
            seen: set[tuple[str, ...]] = set()
            for args in self._bindings(schema, index):
                if args in seen:
                    continue
                seen.add(args)
                if any(a != b for a, b in (_sub(eq, args) for eq in schema.equal)):
                    continue
                if any(a == b for a, b in (_sub(eq, args) for eq in schema.not_equal)):
                    continue
                yield self._instantiate(schema, args)

    def applicable(self, state: State) -> list[GroundAction]:
        """Every ground action applicable in ``state``, in a deterministic order."""
        result = [a for a in self._candidates(state) if not any(n in state for n in a.pre_neg)]
        result.sort(key=lambda a: (a.name, a.args))
        return result

    @functools.cached_property
    def actions(self) -> tuple[GroundAction, ...]:
        """Every ground action reachable in the delete relaxation from :attr:`initial` (sorted)."""
        reached: set[Atom] = set(self.initial)
        while True:
            found = list(self._candidates(reached))
            new = {atom for a in found for atom in a.add} - reached
            if not new:
                return tuple(sorted(set(found), key=lambda a: (a.name, a.args)))
            reached |= new

    def successors(self, state: State) -> Iterator[tuple[GroundAction, State]]:
        for action in self.applicable(state):
            yield action, self.apply(state, action)


def _require_predicate(pred, where: str) -> bool:
    if not isinstance(pred, Predicate):
        raise PDDLError(f"{where}: unsupported initial fact {pred} (STRIPS allows ground atoms only)")
    return True


def _compile_schema(action, predicates: dict[str, int]) -> _Schema:
    name = str(action.name).lower()
    where = f"action {name}"
    params = tuple(str(v.name).lower() for v in action.parameters)
    types = []
    for v in action.parameters:
        tags = sorted(str(t).lower() for t in v.type_tags)
        if len(tags) > 1:
            raise PDDLError(f"{where}: parameter ?{v.name} has an either-type, which is not supported")
        types.append(tags[0] if tags else None)
    position = {p: i for i, p in enumerate(params)}

    def term(t) -> _Term:
        if isinstance(t, Variable):
            if str(t.name).lower() not in position:
                raise PDDLError(f"{where}: free variable ?{t.name}")
            return ("var", position[str(t.name).lower()])
        return ("const", str(t.name).lower())

    def literal(pred: Predicate) -> tuple[str, tuple[_Term, ...]]:
        pname = str(pred.name).lower()
        if pname not in predicates:
            raise PDDLError(f"{where}: unknown predicate {pname!r}")
        return pname, tuple(term(t) for t in pred.terms)

    pre_pos, pre_neg, equal, not_equal = [], [], [], []
    for lit in _flatten(action.precondition, f"{where}: precondition"):
        if isinstance(lit, Not):
            if isinstance(lit.argument, EqualTo):
                not_equal.append((term(lit.argument.left), term(lit.argument.right)))
            else:
                pre_neg.append(literal(lit.argument))
        elif isinstance(lit, EqualTo):
            equal.append((term(lit.left), term(lit.right)))
        else:
            pre_pos.append(literal(lit))
    add, delete = [], []
    for lit in _flatten(action.effect, f"{where}: effect"):
        if isinstance(lit, EqualTo) or (isinstance(lit, Not) and isinstance(lit.argument, EqualTo)):
            raise PDDLError(f"{where}: equality in an effect")
        if isinstance(lit, Not):
            delete.append(literal(lit.argument))
        else:
            add.append(literal(lit))
    return _Schema(name=name, params=params, types=tuple(types), pre_pos=tuple(pre_pos),
                   pre_neg=tuple(pre_neg), equal=tuple(equal), not_equal=tuple(not_equal), add=tuple(add),
                   delete=tuple(delete))


# ------------------------------------------------------------------------------------------ validation


class PlanValidation(BaseModel):
    """The result of executing a plan from the initial state.

    ``valid``: every step applicable and the final state satisfies the goal (VAL's notion). ``reaches_goal``:
    some state along the executable prefix (the initial one included) satisfies the goal, e.g. a plan that
    reaches the goal and then breaks.
    ``failed_step``: 0-based index of the first step that cannot be parsed, grounded or applied (None if all
    are executable). ``reason``: why it is invalid ("" when valid).
    """

    model_config = ConfigDict(frozen=True)

    valid: bool
    reaches_goal: bool
    failed_step: int | None
    reason: str
    final_state: tuple[Atom, ...] = ()


def validate(strips: Strips, plan: Sequence[GroundAction | str], state: State | None = None
             ) -> PlanValidation:
    """Execute ``plan`` (actions or texts like ``"(unstack b a)"``) from ``state`` (default: initial)."""
    state = strips.initial if state is None else frozenset(state)
    reached_goal = strips.satisfies(state)
    for step, item in enumerate(plan):
        try:
            action = strips.parse_action(item) if isinstance(item, str) else item
        except ValueError as exc:
            return PlanValidation(valid=False, reaches_goal=reached_goal, failed_step=step,
                                  reason=f"step {step}: {exc}", final_state=tuple(sorted(state)))
        problem = strips.check(state, action)
        if problem is not None:
            return PlanValidation(valid=False, reaches_goal=reached_goal, failed_step=step,
                                  reason=f"step {step}: {problem}", final_state=tuple(sorted(state)))
        state = strips.apply(state, action)
        reached_goal = reached_goal or strips.satisfies(state)
    at_goal = strips.satisfies(state)
    missing = sorted(strips.goal_pos - state)
    violated = sorted(strips.goal_neg & state)
    reason = "" if at_goal else "goal not reached: " + ", ".join(
        [f"{format_atom(a)} is false" for a in missing] + [f"{format_atom(a)} is true" for a in violated])
    return PlanValidation(valid=at_goal, reaches_goal=reached_goal, failed_step=None, reason=reason,
                          final_state=tuple(sorted(state)))


# -------------------------------------------------------------------------------------------- planning


def reachable_states(strips: Strips) -> set[State]:
    """Every state reachable from the initial one (exhaustive: for small problems, e.g. brute-force references)."""
    seen = {strips.initial}
    frontier = deque([strips.initial])
    while frontier:
        for _, nxt in strips.successors(frontier.popleft()):
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    return seen


def breadth_first_plan(strips: Strips, max_states: int = 200_000) -> list[GroundAction] | None:
    """An optimal (shortest) plan by breadth-first search over lazily generated successors.

    Returns None when the goal is unreachable; raises RuntimeError when more than ``max_states`` states would
    be explored (so a caller never mistakes "too big" for "unsolvable").
    """
    start = strips.initial
    if strips.satisfies(start):
        return []
    parent: dict[State, tuple[State, GroundAction] | None] = {start: None}
    frontier = deque([start])
    while frontier:
        state = frontier.popleft()
        for action, nxt in strips.successors(state):
            if nxt in parent:
                continue
            parent[nxt] = (state, action)
            if strips.satisfies(nxt):
                steps = []
                node: State = nxt
                while parent[node] is not None:
                    prev, act = parent[node]  # type: ignore[misc]
                    steps.append(act)
                    node = prev
                return steps[::-1]
            if len(parent) > max_states:
                raise RuntimeError(f"breadth-first search exceeded {max_states} states on {strips.name}")
            frontier.append(nxt)
    return None


def _pyperplan_task(strips: Strips):
    """The grounded task in pyperplan's form, with static facts (never added or deleted) compiled away."""
    from pyperplan.task import Operator, Task

    actions = strips.actions
    changing = {atom for a in actions for atom in a.add | a.delete}
    facts = (set(strips.initial) | strips.goal_pos) & changing | (strips.goal_pos - strips.initial)
    for a in actions:
        facts |= {p for p in a.pre_pos if p in changing} | a.add | a.delete
    operators = [Operator(str(a), frozenset(format_atom(p) for p in a.pre_pos if p in changing),
                          frozenset(map(format_atom, a.add)), frozenset(map(format_atom, a.delete - a.add)))
                 for a in actions]
    task = Task(strips.name, frozenset(map(format_atom, facts)),
                frozenset(format_atom(p) for p in strips.initial if p in changing),
                frozenset(format_atom(p) for p in strips.goal_pos
                          if p not in strips.initial or p in changing),
                operators)
    return task, {str(a): a for a in actions}


def plan(strips: Strips, optimal: bool | None = None, optimal_max_facts: int = 60
         ) -> list[GroundAction] | None:
    """A plan reaching the goal, or None if the goal is unreachable.

    ``optimal=True``: A* with the admissible LM-cut heuristic (pyperplan), so the plan is shortest;
    ``optimal=False``: greedy best-first search with h_FF (pyperplan), fast and usually short but not optimal.
    ``optimal=None`` (default) picks A*/LM-cut when the grounded task has at most ``optimal_max_facts`` facts,
    else the greedy search. Domains with negative preconditions or negative goals (which pyperplan does not
    model) use :func:`breadth_first_plan`, which is optimal.
    """
    if strips.goal_neg or any(s.pre_neg for s in strips.schemas.values()):
        return breadth_first_plan(strips)
    from pyperplan.heuristics.lm_cut import LmCutHeuristic
    from pyperplan.heuristics.relaxation import hFFHeuristic
    from pyperplan.search import astar_search, greedy_best_first_search

    task, by_name = _pyperplan_task(strips)
    if optimal is None:
        optimal = len(task.facts) <= optimal_max_facts
    if optimal:
        solution = astar_search(task, LmCutHeuristic(task))
    else:
        solution = greedy_best_first_search(task, hFFHeuristic(task))
    return None if solution is None else [by_name[op.name] for op in solution]
