"""The graph as ``langgraph dev`` / LangGraph Studio serve it (see ``langgraph.json``).

Start a run with input ``{"task": "hanoi", "problem_id": "7"}`` (optionally ``"map_config": {...}``) and choose
the backend in the run's configurable: ``{"backend": "oracle" | "local" | "openai", "model": ...}``, for
``openai`` also ``"base_url"`` and ``"json_schema"`` (``true``, ``"json_schema"`` or ``"json_object"``). The
final state carries ``score``, the environment's verdict on the plan (``map_agent.task.Execution``: solved, goal
reached, invalid moves, step by step), next to the plan itself.

>>> run = {"configurable": {"backend": "oracle"}}
>>> final = make_graph(run).invoke({"task": "hanoi", "problem_id": "7"}, run)
>>> final["score"]["solved"], final["score"]["n_actions"]
(True, 5)
"""

from __future__ import annotations

from functools import cache
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph

from map_agent.agent import module_provider
from map_agent.config import MAPConfig, Resolved
from map_agent.graph.build import build_graph
from map_agent.graph.state import MAPState
from map_agent.llm import make_chat_model
from map_agent.search.plan import Progress
from map_agent.task import MODULES, Problem, get_task


class ServedState(MAPState, total=False):
    score: dict[str, Any]  # map_agent.task.Execution of the final plan: what a client of the server wants to know


def score(state: ServedState) -> dict[str, Any]:
    """Score the finished plan in the environment (the Orchestrator's opinion is not the score)."""
    problem = Problem.model_validate(state["problem"])
    task = get_task(problem.task)
    plan = Progress.model_validate(state.get("progress") or {}).plan
    return {"score": task.execute(problem, [task.Action.model_validate(a) for a in plan]).model_dump(mode="json")}


#: MAPConfig's defaults as a Resolved needs them (the per-problem fields are set in ``_graph``)
_DEFAULTS = MAPConfig().model_dump(exclude={"max_actions", "modules", "search", "n_subgoals", "branches", "layers"})


@cache
def _graph(backend: str, model: str | None, base_url: str | None = None, json_schema: bool | str = False):
    options = {"base_url": base_url, "json_schema": json_schema} if backend == "openai" else {}
    llm = None if backend == "oracle" else (lambda: make_chat_model(backend, model, **options))  # default cache
    # MAPAgent derives the recursion limit from each problem's N, B, L; a served graph does not know the problem
    # up front, so its default covers the largest configuration MAPConfig allows with N <= 60 (a client may
    # still pass its own recursion_limit)
    worst = Resolved(**{**_DEFAULTS, "branches": 4, "layers": 4, "max_actions": 60, "modules":
                        dict.fromkeys(MODULES, "llm"), "search": True, "n_subgoals": 4})
    served = StateGraph(ServedState)
    served.add_node("plan", build_graph(module_provider(llm)))  # the MAP graph, a subgraph Studio can open
    served.add_node("score", score)
    served.add_edge(START, "plan")
    served.add_edge("plan", "score")
    served.add_edge("score", END)
    return served.compile(name="MAP").with_config(recursion_limit=worst.recursion_limit())


def make_graph(config: RunnableConfig):
    """Graph factory: one compiled graph (and one model) per backend, model, endpoint and schema form."""
    configurable = config.get("configurable") or {}
    return _graph(configurable.get("backend", "local"), configurable.get("model"), configurable.get("base_url"),
                  configurable.get("json_schema", False))
