"""The graph as ``langgraph dev`` / LangGraph Studio serve it (see ``langgraph.json``).

Start a run with input ``{"task": "hanoi", "problem_id": "7"}`` (optionally ``"map_config": {...}``) and choose
the backend in the run's configurable: ``{"backend": "oracle" | "local" | "openai", "model": ...}``.
"""

from __future__ import annotations

from functools import cache

from langchain_core.runnables import RunnableConfig

from map_agent.agent import module_provider
from map_agent.config import MAPConfig, Resolved
from map_agent.graph.build import build_graph
from map_agent.llm import make_chat_model
from map_agent.task import MODULES


#: MAPConfig's defaults as a Resolved needs them (the per-problem fields are set in ``_graph``)
_DEFAULTS = MAPConfig().model_dump(exclude={"max_actions", "modules", "search", "n_subgoals", "branches", "layers"})


@cache
def _graph(backend: str, model: str | None):
    llm = None if backend == "oracle" else (lambda: make_chat_model(backend, model))  # default prompt cache
    # MAPAgent derives the recursion limit from each problem's N, B, L; a served graph does not know the problem
    # up front, so its default covers the largest configuration MAPConfig allows with N <= 60 (a client may
    # still pass its own recursion_limit)
    worst = Resolved(**{**_DEFAULTS, "branches": 4, "layers": 4, "max_actions": 60, "modules":
                        dict.fromkeys(MODULES, "llm"), "search": True, "n_subgoals": 4})
    return build_graph(module_provider(llm)).with_config(recursion_limit=worst.recursion_limit())


def make_graph(config: RunnableConfig):
    """Graph factory: one compiled graph (and one model) per backend and model."""
    configurable = config.get("configurable") or {}
    return _graph(configurable.get("backend", "local"), configurable.get("model"))
