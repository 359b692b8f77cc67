"""The graph as ``langgraph dev`` / LangGraph Studio serve it (see ``langgraph.json``).

Start a run with input ``{"task": "hanoi", "problem_id": "7"}`` (optionally ``"map_config": {...}``) and choose
the backend in the run's configurable: ``{"backend": "oracle" | "local" | "openai", "model": ...}``.
"""

from __future__ import annotations

from functools import cache

from langchain_core.runnables import RunnableConfig

from map_agent.agent import module_provider
from map_agent.config import Resolved
from map_agent.graph.build import build_graph
from map_agent.llm import make_chat_model
from map_agent.task import MODULES


@cache
def _graph(backend: str, model: str | None):
    llm = None if backend == "oracle" else (lambda: make_chat_model(backend, model))  # default prompt cache
    # MAPAgent derives the recursion limit from each problem's N, B, L; a served graph does not know the problem
    # up front, so its default covers the largest configuration MAPConfig allows with N <= 60 (a client may
    # still pass its own recursion_limit)
    worst = Resolved(branches=4, layers=4, max_actions=60, monitor_retries=3, parse_retries=2,
                     modules=dict.fromkeys(MODULES, "llm"), search=True, n_subgoals=4, actor_temperature=0.7,
                     examples=True, seed=0)
    return build_graph(module_provider(llm)).with_config(recursion_limit=worst.recursion_limit())


def make_graph(config: RunnableConfig):
    """Graph factory: one compiled graph (and one model) per backend and model."""
    configurable = config.get("configurable") or {}
    return _graph(configurable.get("backend", "local"), configurable.get("model"))
