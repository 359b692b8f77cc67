"""The paper's baselines as methods of the same harness: zero-shot, ICL, CoT, multi-agent debate, tree of thoughts.

``map-agent eval <task> --method zero-shot|icl|cot|mad|tot|map`` runs them through the same runner, chat-model
factory, prompt cache, scoring and records as MAP. A method is a ``Method`` class (``base.py``) in its own file,
registered below by lazy import path; ``PAPER_METHODS`` lists the baselines the paper ran on each task, and a
method outside that list is refused with the list.

>>> methods_for("strategyqa")
('map', 'cot', 'tot')
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from map_agent.baselines.base import Method
    from map_agent.task import Problem, Task

#: name -> "module:Class", imported when used
METHODS: dict[str, str] = {
    "zero-shot": "map_agent.baselines.zero_shot:ZeroShot",
    "icl": "map_agent.baselines.icl:ICL",
    "cot": "map_agent.baselines.cot:CoT",
    "mad": "map_agent.baselines.mad:MAD",
    "tot": "map_agent.baselines.tot:ToT",
}

#: the baselines the MAP paper ran per task (its released code: toh/, planbench/, strategyQA/, cogeval/)
PAPER_METHODS: dict[str, tuple[str, ...]] = {
    "hanoi": ("zero-shot", "icl", "cot", "mad", "tot"),
    "mystery_blocksworld": ("zero-shot", "icl", "cot", "mad", "tot"),
    "logistics": ("zero-shot", "icl", "cot", "mad", "tot"),
    "strategyqa": ("cot", "tot"),
    # ToT's search stops where Task.visible_terminal says: on Valuepath, whose goal hides its room, any chest room
    "cogeval": ("zero-shot", "icl", "cot", "mad", "tot"),
}

#: every method name the CLI accepts ("map" is MAP itself)
ALL_METHODS = ("map", *METHODS)


def methods_for(task: str) -> tuple[str, ...]:
    """The methods that run on ``task``: MAP and the paper's baselines for it."""
    return ("map", *PAPER_METHODS.get(task, ()))


def check_method(task: str, method: str) -> None:
    """``ValueError`` (one line, naming what exists) for a method the paper did not run on ``task``."""
    if method not in methods_for(task):
        raise ValueError(f"{task}: no method {method!r}; methods for {task}: {', '.join(methods_for(task))}")


def get_method(name: str) -> type[Method]:
    try:
        target = METHODS[name]
    except KeyError:
        raise KeyError(f"unknown baseline {name!r}; known: {', '.join(METHODS)}") from None
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def render_prompts(task: Task, problem: Problem) -> list[str]:
    """Every prompt text the task's baselines would send for ``problem``'s first step (system, examples, user
    message), rendered from ``problem.public()``: the ground-truth leak test reads them."""
    from map_agent.baselines.base import BaselineConfig

    texts = []
    for name in PAPER_METHODS.get(task.name, ()):
        method = get_method(name)(task, problem.public(), None, BaselineConfig(method=name))
        for messages in method.first_prompts():
            texts += [str(m.content) for m in messages]
    return texts


__all__ = ["ALL_METHODS", "METHODS", "PAPER_METHODS", "check_method", "get_method", "methods_for",
           "render_prompts"]
