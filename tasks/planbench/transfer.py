"""In-context transfer (the MAP paper's transfer experiments): Mystery Blocksworld problems solved with in-context
examples from another problem, plain Blocksworld or the Tower of Hanoi puzzle, instead of Mystery Blocksworld's own.

The original (``transfer expts/gpt4_map_mystery_blocksworld_plan_generation_{blocksworld_icl,tohicl}.py`` for MAP,
``gpt4_mystery_blocksworld_plan_generation_{blocksworld,toh}_{icl,coticl}.py`` for the ICL and CoT baselines) put
the source problem's rules and worked examples at the head of every prompt, then "Here is the task" and the
Mystery Blocksworld rules. Here the source's rules and examples lead the task description every module and
baseline receives (``PlanBenchTask.describe``); the transfer prompt sets (``prompts/mystery_blocksworld/
transfer_<source>/``) hold no Mystery Blocksworld examples of their own.

The examples are facts (``data/transfer/examples.json``), checked when loaded: each Blocksworld plan is executed
with ``map_agent.tools.strips`` on PlanBench's Blocksworld domain (``data/blocksworld/domain.pddl``) and must reach
its goal, and each example must be, under Blocksworld's names, the Mystery Blocksworld instance it names (PlanBench
instances 1-3): that example is left out of the instance's own prompt. Each Tower of Hanoi plan must solve its
problem (3 and 22 of the Hanoi set) in the Hanoi environment.

A Blocksworld example is shown in one of two forms (``FORMS``; ``Problem.info["transfer_form"]``, "plans" when
unset). "plans", the original's ICL prompt and MAP Actor prompt: the start, the goal and the bare action list.
"worked", the original's CoT prompt (``blocksworld_plan_generation_fewshot_cot_examples.py``): every move with the
facts it requires and the state it leads to. The ICL baseline and the MAP Actor read "plans" (``transfer_examples:
worked`` for ICL, ``MAPConfig.transfer_examples="worked"`` for the Actor, are this project's worked form); CoT reads
"worked". Deviation: the original's MAP script gave its Monitor, Predictor and Orchestrator their own Blocksworld
examples (single states and moves, with the facts checked or changed); here they read the three worked problems,
the nearest form this task description has. The Hanoi examples show the lists after each move in either form, as
the original's (``toh_two_shot_examples.py``).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import yaml

from map_agent.task import InvalidProblem, get_task
from map_agent.tools.strips import Atom, Strips, parse_atom, validate

#: the source problems of the paper's transfer experiments, by split suffix (``transfer_<source>``)
SOURCES = ("blocksworld", "hanoi")
#: Blocksworld's predicates -> Mystery Blocksworld's (PlanBench's ``generated_domain.pddl`` of each)
MYSTERY_NAMES = {"clear": "province", "ontable": "planet", "handempty": "harmony", "holding": "pain", "on": "craves"}
EXAMPLES = "examples.json"
#: how a Blocksworld example reads: the bare action list, or each move with its preconditions and resulting state
FORMS = ("plans", "worked")


@cache
def _raw() -> dict[str, Any]:
    path = resources.files("map_agent.tasks") / "planbench" / "data" / "transfer" / EXAMPLES
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InvalidProblem(f"transfer/{EXAMPLES}: not JSON: {e}") from None
    missing = [s for s in SOURCES if not isinstance(raw.get(s), dict) or not raw[s].get("examples")]
    if missing:
        raise InvalidProblem(f"transfer/{EXAMPLES}: no examples for {', '.join(missing)}")
    return raw


def blocksworld_model(init: list[str], goal: list[str]) -> Strips:
    """The STRIPS model of one Blocksworld example on PlanBench's domain (its objects are those its facts name)."""
    from map_agent.tasks.planbench.environment import _domain_text, domain_name

    atoms = [parse_atom(f) for f in [*init, *goal]]
    objects = sorted({arg for atom in atoms for arg in atom[1:]})
    problem = (f"(define (problem transfer-example) (:domain {domain_name('blocksworld')})\n"
               f"(:objects {' '.join(objects)})\n(:init {' '.join(init)})\n(:goal (and {' '.join(goal)})))")
    return Strips.from_text(_domain_text("blocksworld"), problem, "blocksworld/domain.pddl", f"transfer/{EXAMPLES}")


def mystery_form(atoms: frozenset[Atom]) -> frozenset[Atom]:
    """Blocksworld facts in Mystery Blocksworld's names (PlanBench's Mystery domain is Blocksworld renamed)."""
    return frozenset((MYSTERY_NAMES[a[0]], *a[1:]) for a in atoms)


def _blocksworld(instance: str | None, form: str) -> str:
    from map_agent.tasks.planbench.environment import data_dir, instance_model, language

    lang = language("blocksworld")
    intro = yaml.safe_load((data_dir("blocksworld") / "config.yaml").read_text(encoding="utf-8"))["domain_intro"]
    lines = ["\n".join(line.strip() for line in intro.strip().splitlines())]
    shown = 0
    for k, shot in enumerate(_raw()["blocksworld"]["examples"], 1):
        where = f"transfer/{EXAMPLES}: blocksworld example {k}"
        strips = blocksworld_model(shot["init"], shot["goal"])
        result = validate(strips, shot["plan"])
        if not result.valid:
            raise InvalidProblem(f"{where}: its plan does not solve it ({result.reason})")
        twin = instance_model("mystery_blocksworld", shot["instance"])
        if (mystery_form(strips.initial), mystery_form(strips.goal_pos)) != (twin.initial, twin.goal_pos):
            raise InvalidProblem(f"{where}: not the Blocksworld form of Mystery Blocksworld instance "
                                 f"{shot['instance']}")
        if shot["instance"] == instance:
            continue  # the problem itself, renamed: its example would show the answer
        shown += 1
        state = strips.initial
        lines += ["", f"Example {shown}:",
                  f"Starting state: As initial conditions I have that, {lang.facts(sorted(state))}.",
                  f"Goal: My goal is to have that {lang.facts(sorted(strips.goal_pos))}.", "Plan:"]
        if form == "plans":  # the original's ICL and MAP Actor examples: the actions alone
            lines += [f"{i}. {lang.action(a.name, a.args)}"
                      for i, a in enumerate(map(strips.parse_action, shot["plan"]), 1)]
            continue
        for i, text in enumerate(shot["plan"], 1):
            action = strips.parse_action(text)
            state = strips.apply(state, action)
            lines.append(f"{i}. {lang.action(action.name, action.args)} (requires: {lang.facts(list(action.pre_pos))})"
                         f" -> {lang.facts(sorted(state))}")
        lines.append("The goal holds after the last move.")
    return "\n".join(lines)


def _hanoi() -> str:
    hanoi = get_task("hanoi")
    shots = _raw()["hanoi"]["examples"]
    lines = [hanoi.describe(hanoi.problem(shots[0]["problem"]).public())]
    for k, shot in enumerate(shots, 1):
        problem = hanoi.problem(shot["problem"])
        moves = [hanoi.Action.model_validate(m) for m in shot["plan"]]
        execution = hanoi.execute(problem, moves)
        if not execution.solved:
            raise InvalidProblem(f"transfer/{EXAMPLES}: hanoi example {k}: its plan does not solve problem "
                                 f"{shot['problem']}")
        state = hanoi.start(problem)
        lines += ["", f"Example {k}:", f"Starting configuration: {hanoi.render_state(state)}",
                  f"Goal configuration: {hanoi.render_goal(hanoi.goal(problem))}", "Moves:"]
        for i, move in enumerate(moves, 1):
            state = hanoi.apply(state, move, problem)
            lines.append(f"{i}. {hanoi.render_action(move)} -> {hanoi.render_state(state)}")
    return "\n".join(lines)


@cache
def source_text(source: str, instance: str | None = None, form: str = "plans") -> str:
    """The source problem's rules and examples (in ``form``, ``FORMS``), as they lead the task description of
    Mystery Blocksworld ``instance``: a Blocksworld example that is that instance under Blocksworld's names is left
    out (the original showed PlanBench instances 1-3 to every instance, 2 and 3 included)."""
    if source not in SOURCES:
        raise KeyError(f"no transfer source {source!r}; known: {', '.join(SOURCES)}")
    if form not in FORMS:
        raise KeyError(f"no transfer example form {form!r}; known: {', '.join(FORMS)}")
    body = _blocksworld(instance, form) if source == "blocksworld" else _hanoi()
    title = _raw()[source]["title"]
    return (f"The examples below come from a different problem, {title}; the task to solve follows them.\n\n"
            f"{body}\n\nHere is the task:")

