"""Verifier tools: MDP/value iteration, PDDL equivalence, plan validation, planners, the code sandbox."""

from __future__ import annotations

from pydantic import ValidationError


def argument_error(error: ValidationError) -> str:
    """A LangChain tool's answer to arguments that do not validate: one line naming each bad field.

    A tool's caller is usually a model, which should read what was wrong and call again, not a traceback.
    """
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
                         for e in error.errors())
    return f"invalid arguments: {problems}".replace("\n", " ")
