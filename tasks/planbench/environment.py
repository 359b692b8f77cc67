"""The PDDL environment behind PlanBench's Mystery Blocksworld and Logistics, on ``map_agent.tools.strips``.

A state is the set of true facts (PDDL atoms, sorted), a goal the set of goal facts (a partial state: satisfied
when it is a subset of the state), an action one grounded action. Facts and actions are accepted as PDDL
(``(craves a b)``, ``{"name": "feast", "args": ["b", "c"]}``) or as PlanBench phrases ("object a craves object
b", "feast object b from object c"), and always stored as PDDL.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import cache, cached_property
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from map_agent.task import Execution, InvalidProblem, Problem, Task, Verdict
from map_agent.tasks.planbench.language import Language
from map_agent.tasks.planbench.planner import BFS_STATES, optimal_plan
from map_agent.tasks.planbench.transfer import source_text
from map_agent.tools.strips import Atom, GroundAction, PDDLError, Strips, format_atom, parse_atom, validate

#: N = optimal plan length + 4: the MAP paper's text (Methods) and its code, whose
#: ``len(instance['ground_truth_plan'].split("\n")) + 3`` counts the plan text's trailing newline as a step (every
#: PlanBench ground-truth plan is optimal, see ``optimal_lengths.py``). N is never shown to a model, as in the original.
EXTRA_ACTIONS = 4
DATA = "data"
#: PlanBench's one-shot example instance (not a test instance)
ICL_INSTANCE = "1"


#: Exact distances, shared by every instance of a task in the process (the core builds tasks per call): the
#: ground truth never changes, and a Logistics distance costs a planner call.
_DISTANCES: dict[tuple[str, str, tuple[str, ...], tuple[str, ...]], float] = {}


def data_dir(domain: str) -> Path:
    return Path(str(resources.files("map_agent.tasks") / "planbench" / DATA / domain))


@cache
def language(domain: str) -> Language:
    return Language.from_yaml(data_dir(domain) / "config.yaml")


class _Facts(BaseModel):
    """A set of facts of one domain, normalised to sorted, distinct PDDL atoms."""

    model_config = ConfigDict(frozen=True)
    domain: ClassVar[str]

    facts: tuple[str, ...] = Field(description="the true facts, each a PDDL atom such as '(craves a b)'")

    @field_validator("facts", mode="before")
    @classmethod
    def _normalise(cls, value: Any) -> tuple[str, ...]:
        if isinstance(value, str) or not isinstance(value, Iterable):
            raise ValueError("facts must be a list of facts")
        lang = language(cls.domain)
        atoms = set()
        for item in value:
            if not isinstance(item, str):
                raise ValueError(f"a fact must be a string, got {item!r}")
            atom = lang.parse_fact(item)
            if atom[0] not in lang.predicates:
                raise ValueError(f"unknown predicate in {item!r}; the predicates are {', '.join(lang.predicates)}")
            if atom[0] not in lang.hidden:  # unspoken static facts are implicit (the task adds them back)
                atoms.add((atom[0], *(lang.parse_object(a) for a in atom[1:])))
        return tuple(format_atom(a) for a in sorted(atoms))

    def atoms(self) -> frozenset[Atom]:
        return frozenset(parse_atom(f) for f in self.facts)

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
        """Facts in the JSON schema are PDDL atoms over the domain's spoken predicates, so a grammar-constrained
        model can only write facts the validator accepts."""
        schema = handler.resolve_ref_schema(handler(core_schema))
        lang = language(cls.domain)
        names = "|".join(re.escape(p) for p in lang.predicates if p not in lang.hidden)
        schema["properties"]["facts"]["items"] = {"type": "string", "pattern": rf"^\(({names})( [a-z0-9_-]+)*\)$"}
        return schema


class _Action(BaseModel):
    """One grounded action: its name and its objects, in the domain's parameter order."""

    model_config = ConfigDict(frozen=True)
    domain: ClassVar[str]

    name: str = Field(description="the action's PDDL name, e.g. 'feast'")
    args: tuple[str, ...] = Field(description="its objects in parameter order, e.g. ['b', 'c']")

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
        """Action names in the JSON schema are the domain's, so a grammar-constrained model names real ones."""
        schema = handler.resolve_ref_schema(handler(core_schema))
        schema["properties"]["name"] = {**schema["properties"]["name"], "enum": sorted(language(cls.domain).actions)}
        return schema

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        lang = language(cls.domain)
        if isinstance(value, str):
            readings = lang.parse_action(value)
            if len(readings) > 1:
                raise ValueError(f"{value!r} can be {' or '.join(r[0] for r in readings)}: give name and args")
            value = {"name": readings[0][0], "args": list(readings[0][1:])}
        if isinstance(value, dict) and isinstance(value.get("args"), (list, tuple)):
            value = {**value, "name": str(value.get("name", "")).strip().lower(),
                     "args": [lang.parse_object(str(a)) for a in value["args"]]}
        return value


class PlanBenchTask(Task):
    """A PlanBench plan-generation domain as a MAP task (subclasses name the domain and the paper's setup)."""

    domain: ClassVar[str]
    default_search = False
    #: PlanBench's one-shot example instance (the prompt of instance k shows k-1; instance 1 is shown only for
    #: instance 2 and is not itself a test instance); the original's examples start from it (data/SOURCE.md).
    ICL_ID: ClassVar[str] = ICL_INSTANCE
    #: states breadth-first search may visit before the planner hands over to Fast Downward (0: straight there)
    bfs_states: ClassVar[int] = BFS_STATES
    #: the paper's in-context transfer sources for this domain (``transfer.SOURCES``): split ``transfer_<source>``
    #: runs the test problems with that source's examples (prompt set ``prompts/<task>/transfer_<source>/``)
    transfer_sources: ClassVar[tuple[str, ...]] = ()

    # -- data --------------------------------------------------------------------------------------------
    def splits(self) -> dict[str, str]:
        return {
            "test": "PlanBench's plan-generation instances (task_1_plan_generation.json), in its order",
            "icl": f"instance {self.ICL_ID}, PlanBench's one-shot example, not a test instance",
            **{f"transfer_{source}": f"the test instances with in-context examples from {source} instead "
                                     f"(the paper's transfer experiment)" for source in self.transfer_sources},
        }

    def problems(self, split: str) -> list[Problem]:
        if split == "test":
            return list(_problems(self.domain, self.name))
        if split == "icl":
            return [_problem(self.domain, self.name, self.ICL_ID, [], None)]
        source = split.removeprefix("transfer_")
        if source in self.transfer_sources:
            # the same problems (and ids) as the test split; only the prompts' examples differ
            return [p.model_copy(update={"info": {**p.info, "transfer": source, "prompt_set": split}})
                    for p in _problems(self.domain, self.name)]
        raise KeyError(f"{self.name}: unknown split {split!r}; known: {', '.join(self.splits())}")

    def problem(self, problem_id: str | int, split: str | None = None) -> Problem:
        if split is None and str(problem_id) == self.ICL_ID:
            return self.problems("icl")[0]
        return super().problem(problem_id, split or "test")

    # -- the PDDL model ----------------------------------------------------------------------------------------
    @cached_property
    def language(self) -> Language:
        return language(self.domain)

    def strips(self, problem: Problem) -> Strips:
        return instance_model(self.domain, problem.info["instance"])

    def static(self, problem: Problem) -> frozenset[Atom]:
        """The unspoken static facts (Logistics' types) that states leave out and the ground truth needs."""
        return frozenset(a for a in self.strips(problem).initial if a[0] in self.language.hidden)

    def world(self, state: _Facts, problem: Problem) -> frozenset[Atom]:
        return state.atoms() | self.static(problem)

    def ground(self, action: _Action, problem: Problem) -> GroundAction:
        return self.strips(problem).ground(action.name, list(action.args))

    # -- ground truth ------------------------------------------------------------------------------------------
    def check(self, state: _Facts, action: _Action, problem: Problem) -> Verdict:
        """The first failed precondition, in the domain's order and in PlanBench's words (the oracle Monitor's
        feedback); unknown actions or objects are invalid too."""
        try:
            ground = self.ground(action, problem)
        except ValueError as e:
            return Verdict(valid=False, reason=str(e))
        world = self.world(state, problem)
        failed = self.strips(problem).check(world, ground)
        if failed is None:
            return Verdict(valid=True)
        missing = next(a for a in ground.pre_pos if a not in world)
        lang = self.language
        return Verdict(valid=False, reason=f"to {lang.action(ground.name, ground.args)}, "
                                           f"{lang.fact(missing)} must be true and it is not ({failed})")

    def apply(self, state: _Facts, action: _Action, problem: Problem) -> _Facts:
        """The action's effects, applied whether or not its preconditions hold (so a believed state can follow
        an invalid action); ValueError for an action that does not exist."""
        ground = self.ground(action, problem)
        nxt = self.strips(problem).apply(self.world(state, problem), ground)
        return self.State(facts=[format_atom(a) for a in nxt if a[0] not in self.language.hidden])

    def legal_actions(self, state: _Facts, problem: Problem) -> list[_Action]:
        return [self.Action(name=a.name, args=a.args)
                for a in self.strips(problem).applicable(self.world(state, problem))]

    def satisfies(self, state: _Facts, goal: _Facts, problem: Problem) -> bool:
        return set(goal.facts) <= set(state.facts)

    def distance(self, state: _Facts, goal: _Facts, problem: Problem) -> float:
        """Exact: the length of an optimal plan (see ``planner``), cached, with every state on that plan."""
        key = (self.domain, problem.id, state.facts, goal.facts)
        if key not in _DISTANCES:
            path = self.optimal_path(state, goal, problem)
            if path is None:
                _DISTANCES[key] = float("inf")
            else:
                for i, (_, on_path) in enumerate(path):
                    _DISTANCES[(self.domain, problem.id, on_path.facts, goal.facts)] = float(len(path) - i - 1)
        return _DISTANCES[key]

    def optimal_path(self, state: _Facts, goal: _Facts, problem: Problem) -> list[tuple[_Action | None, _Facts]] | None:
        """An optimal plan from ``state`` as (action, state reached) pairs, ``(None, state)`` first; None if the
        goal cannot be reached."""
        strips = self.strips(problem).with_task(self.world(state, problem), goal.atoms())
        steps = optimal_plan(strips, data_dir(self.domain) / "domain.pddl", domain_name(self.domain),
                             self.bfs_states)
        if steps is None:
            return None
        path: list[tuple[_Action | None, _Facts]] = [(None, state)]
        for step in steps:
            action = self.Action(name=step.name, args=step.args)
            path.append((action, self.apply(path[-1][1], action, problem)))
        return path

    def oracle_subgoals(self, state: _Facts, goal: _Facts, n_subgoals: int | None,
                        problem: Problem) -> list[_Facts]:
        """The oracle TaskDecomposer: ``n_subgoals`` (default one) states evenly spaced on an optimal plan (the
        core's rule), found by the planner instead of breadth-first search, which Logistics' state spaces defeat."""
        path = self.optimal_path(state, goal, problem)
        if path is None or len(path) <= 2:
            return [goal]
        n, n_subgoals = len(path) - 1, n_subgoals or 1
        picks = sorted({round(n * (i + 1) / (n_subgoals + 1)) for i in range(n_subgoals)} - {0, n})
        return [self.as_goal(path[i][1]) for i in picks] or [goal]

    def as_goal(self, state: _Facts) -> _Facts:
        return self.Goal(facts=state.facts)

    def leak_probes(self, problem: Problem) -> list[str]:
        """The ground-truth plan's steps (the default), and N or the optimal length where a prompt would state them
        as a budget: the original tells the model neither."""
        probes = super().leak_probes(problem)
        probes.append(rf"\b(at most|within|no more than|up to)\s+{problem.max_actions}\s+(actions|steps|moves)\b")
        if problem.optimal_length is not None:
            probes.append(rf"\b(optimal|shortest|minimum)\b[^.\n]{{0,40}}\b{problem.optimal_length}\s+"
                          rf"(actions|steps|moves)\b")
        return probes

    # -- scoring ---------------------------------------------------------------------------------------------
    def execute(self, problem: Problem, actions: Iterable[_Action]) -> Execution:
        """PlanBench's definition (VAL's): a plan is valid when every step is applicable in turn and the last
        state satisfies the goal; an invalid step makes the whole plan invalid. ``solved`` is that, within N.
        ``n_invalid``/``steps`` count every rejected action (the paper's % invalid), skipping each one."""
        actions = list(actions)
        state, steps = self.replay(problem, actions)
        strips = self.strips(problem)
        try:
            grounded = [self.ground(a, problem) for a in actions]
            validation = validate(strips, grounded)
            valid, reached = validation.valid, validation.reaches_goal
        except ValueError:
            valid, reached = False, False
        return Execution(
            n_actions=len(actions),
            n_invalid=sum(not s.valid for s in steps),
            goal_reached=reached or self.satisfies(state, self.goal(problem), problem),
            solved=valid and len(actions) <= problem.max_actions,
            final_state=state.model_dump(mode="json"),
            steps=steps,
        )

    # -- how it reads in a prompt ------------------------------------------------------------------------------
    def describe(self, problem: Problem) -> str:
        """PlanBench's domain text and the task's notes; in a transfer split, led by the source problem's rules
        and examples (``transfer.source_text``), as the original's transfer prompts were: bare action lists, or
        worked moves where ``info["transfer_form"]`` asks for them (``map_agent.task.transfer_form``)."""
        text = _description(self.domain, self.name)
        source = problem.info.get("transfer")
        if not source:
            return text
        return f"{source_text(source, problem.info['instance'], problem.info.get('transfer_form', 'plans'))}\n\n{text}"

    def prompt_dir(self, problem: Problem | None = None) -> Path:
        """``prompts/<task>/``, or the problem's prompt set (``info["prompt_set"]``: ``transfer_<source>``, whose
        module prompts have no examples of this domain)."""
        root = super().prompt_dir()
        prompt_set = problem.info.get("prompt_set") if problem is not None else None
        return root / prompt_set if prompt_set else root

    def render_state(self, state: _Facts) -> str:  # type: ignore[override]
        return f"As initial conditions I have that, {self.language.facts(list(state.atoms()))}."

    def render_goal(self, goal: _Facts) -> str:  # type: ignore[override]
        return f"My goal is to have that {self.language.facts(list(goal.atoms()))}."

    def render_action(self, action: _Action) -> str:  # type: ignore[override]
        return self.language.action(action.name, action.args)


# ---------------------------------------------------------------------------------------------- loading


@cache
def _domain_text(domain: str) -> str:
    return (data_dir(domain) / "domain.pddl").read_text(encoding="utf-8")


@cache
def domain_name(domain: str) -> str:
    from map_agent.tools.strips import parse_domain_text

    return str(parse_domain_text(_domain_text(domain), f"{domain}/domain.pddl").name)


@cache
def instance_model(domain: str, instance: str) -> Strips:
    path = data_dir(domain) / "instances" / f"instance-{instance}.pddl"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidProblem(f"{domain}/instances/{path.name}: missing instance file") from None
    return parse_instance(_domain_text(domain), text, f"{domain}/domain.pddl", f"{domain}/instances/{path.name}")


def parse_instance(domain_text: str, problem_text: str, domain_source: str, problem_source: str) -> Strips:
    """The STRIPS model of a PDDL domain and problem; ``InvalidProblem`` names file, line and problem."""
    try:
        return Strips.from_text(domain_text, problem_text, domain_source, problem_source)
    except PDDLError as e:
        raise InvalidProblem(str(e)) from None


@cache
def optimal_lengths(domain: str) -> dict[str, int]:
    """The cached table of optimal plan lengths (``optimal_lengths.py`` writes it)."""
    path = data_dir(domain) / "optimal_lengths.json"
    source = f"{domain}/{path.name}"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidProblem(f"{source}: missing; run python -m map_agent.tasks.planbench.optimal_lengths") from None
    except json.JSONDecodeError as e:
        raise InvalidProblem(f"{source}: not JSON: {e}") from None
    lengths = raw.get("lengths") if isinstance(raw, dict) else None
    if not isinstance(lengths, dict) or not all(isinstance(v, int) and v >= 0 for v in lengths.values()):
        raise InvalidProblem(f"{source}: field 'lengths' must map instance ids to non-negative integers")
    return lengths


def _problem(domain: str, task: str, instance: str, plan: list[str], examples: list[int] | None) -> Problem:
    strips = instance_model(domain, instance)
    hidden = language(domain).hidden
    source = f"{domain}/optimal_lengths.json"
    if instance not in optimal_lengths(domain):
        raise InvalidProblem(f"{source}: no optimal length for instance {instance}; re-run the script")
    optimal = optimal_lengths(domain)[instance]
    return Problem(task=task, id=instance,
                   start={"facts": sorted(format_atom(a) for a in strips.initial if a[0] not in hidden)},
                   goal={"facts": sorted(format_atom(a) for a in strips.goal_pos)},
                   max_actions=optimal + EXTRA_ACTIONS, optimal_length=optimal,
                   info={"instance": instance, "example_instance_ids": examples or []},
                   hidden={"ground_truth_plan": plan})


def load_plans(text: str, source: str) -> list[tuple[str, list[str], list[int]]]:
    """PlanBench's ``task_1_plan_generation.json``: (instance id, ground-truth plan steps, example ids)."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidProblem(f"{source}: not JSON: {e}") from None
    instances = raw.get("instances") if isinstance(raw, dict) else None
    if not isinstance(instances, list):
        raise InvalidProblem(f"{source}: expected an object with a list 'instances'")
    out = []
    for i, item in enumerate(instances):
        where = f"{source}: instances[{i}]"
        if not isinstance(item, dict):
            raise InvalidProblem(f"{where}: expected an object")
        for name, kind in (("instance_id", int), ("ground_truth_plan", str), ("example_instance_ids", list)):
            if not isinstance(item.get(name), kind):
                raise InvalidProblem(f"{where}: field {name!r} missing or not {kind.__name__}")
        steps = [s.strip() for s in item["ground_truth_plan"].splitlines() if s.strip()]
        out.append((str(item["instance_id"]), steps, item["example_instance_ids"]))
    return out


@cache
def _problems(domain: str, task: str) -> tuple[Problem, ...]:
    path = data_dir(domain) / "task_1_plan_generation.json"
    plans = load_plans(path.read_text(encoding="utf-8"), f"{domain}/{path.name}")
    return tuple(_problem(domain, task, instance, steps, examples) for instance, steps, examples in plans)


@cache
def _description(domain: str, task: str) -> str:
    raw = (data_dir(domain) / "config.yaml").read_text(encoding="utf-8")
    intro = yaml.safe_load(raw)["domain_intro"]
    notes = (resources.files("map_agent.prompts") / task / "task.md").read_text(encoding="utf-8")
    return "\n".join(line.strip() for line in intro.strip().splitlines()) + "\n\n" + notes.strip()
