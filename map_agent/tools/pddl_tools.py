"""The PDDL verifiers as LangChain tools, so an agent (or a MAP Monitor) can call them by name.

* ``pddl_equivalent`` -- are two PDDL problems of one domain equivalent (Planetarium's Definition 2)?
* ``validate_plan`` -- does a plan execute and reach the goal, and if not, which step fails and why?

Both take PDDL *text* and answer a JSON-serialisable dict; bad PDDL (unparsable, not valid Unicode, written for
another domain) and problems too large to decide are reported in the answer (``error``), not raised, because a
tool's caller is usually a language model that should read the problem and retry.

Example:
    >>> validate_plan.invoke({"domain": d, "problem": p, "plan": ["(unstack b a)"]})  # doctest: +SKIP
    {'valid': False, 'reaches_goal': False, 'failed_step': None, 'reason': 'goal not reached: ...'}
"""

from __future__ import annotations

from langchain_core.tools import StructuredTool
from pydantic import BaseModel, Field

from map_agent.tools import argument_error
from map_agent.tools.equivalence import equivalence
from map_agent.tools.strips import PDDLError, Strips, validate

__all__ = ["EquivalentArgs", "ValidatePlanArgs", "pddl_equivalent", "validate_plan"]


class EquivalentArgs(BaseModel):
    domain: str = Field(description="the PDDL domain shared by both problems")
    reference: str = Field(description="the reference (ground-truth) PDDL problem")
    candidate: str = Field(description="the PDDL problem to compare with the reference")
    is_placeholder: bool = Field(default=False, description="accept any permutation of the goal's objects")


class ValidatePlanArgs(BaseModel):
    domain: str = Field(description="the PDDL domain")
    problem: str = Field(description="the PDDL problem")
    plan: list[str] = Field(description="the plan, one action per item, e.g. '(unstack b a)'")


def _equivalent(domain: str, reference: str, candidate: str, is_placeholder: bool = False) -> dict:
    try:
        ref = Strips.from_text(domain, reference, problem_source="reference")
        cand = Strips.from_text(domain, candidate, problem_source="candidate")
        return equivalence(ref, cand, is_placeholder=is_placeholder).model_dump()
    except PDDLError as exc:
        return {"equivalent": False, "stage": "parse", "reason": str(exc), "error": str(exc)}
    except RuntimeError as exc:  # past the bounds of the state enumeration or of the isomorphism search
        return {"equivalent": False, "stage": "too-large", "reason": str(exc), "error": str(exc)}


def _validate(domain: str, problem: str, plan: list[str]) -> dict:
    try:
        strips = Strips.from_text(domain, problem, problem_source="problem")
    except PDDLError as exc:
        return {"valid": False, "reaches_goal": False, "failed_step": None, "reason": str(exc), "error": str(exc)}
    return validate(strips, plan).model_dump(exclude={"final_state"})


pddl_equivalent = StructuredTool.from_function(
    func=_equivalent, name="pddl_equivalent", args_schema=EquivalentArgs, handle_validation_error=argument_error,
    description="Decide whether two PDDL problems of the same domain describe the same planning problem "
                "(same initial state and same set of reachable goal states, up to renaming objects).")

validate_plan = StructuredTool.from_function(
    func=_validate, name="validate_plan", args_schema=ValidatePlanArgs, handle_validation_error=argument_error,
    description="Execute a plan on a PDDL problem: report whether every step is applicable and the goal is "
                "reached, else the first failing step and the precondition that is false.")
