"""The graph as ``langgraph dev`` / LangGraph Studio serve it (see ``langgraph.json``).

Start a run with input ``{"task": "hanoi", "problem_id": "7"}`` (optionally ``"map_config": {...}``) and choose
the backend in the run's configurable: ``{"backend": "oracle" | "local" | "openai", "model": ...}``, for
``openai`` also ``"base_url"``, ``"json_schema"`` (``"auto"``, the default, ``"json_schema"``, ``"json_object"``,
``"guided_json"`` or ``"off"``) and ``"context_length"``. The final state carries ``score``, the environment's
verdict on the plan (``map_agent.task.Execution``: solved, goal reached, invalid moves, step by step), next to the
plan itself.

A served run fails as a run, in one line, rather than "succeeding" with nothing done: the model is checked
(``prepare_model``: endpoint, schema form, context window) before the first module call, and a run in which every
module call failed ends in an error naming the first failure. Clients see the problem's public view only: the
state never holds ``Problem.hidden`` (optimal plans, answer labels); oracle modules and scoring read it from the
task's registry on the server.

>>> run = {"configurable": {"backend": "oracle"}}
>>> final = make_graph(run).invoke({"task": "hanoi", "problem_id": "7"}, run)
>>> final["score"]["solved"], final["score"]["n_actions"], "hidden" in final["problem"]
(True, 5, False)
"""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph

from map_agent.agent import module_provider
from map_agent.config import MAPConfig, Resolved
from map_agent.graph.build import build_graph
from map_agent.graph.state import MAPState
from map_agent.llm import make_chat_model
from map_agent.llm.backends import redact
from map_agent.llm.preflight import prepare_model
from map_agent.search.plan import Progress
from map_agent.task import MODULES, Problem, get_task


class ServedState(MAPState, total=False):
    score: dict[str, Any]  # map_agent.task.Execution of the final plan: what a client of the server wants to know


class RunFailedError(RuntimeError):
    """Every module call of a served run failed: the plan is no plan, and the run must not read as a success."""


def full_problem(public: Problem) -> Problem:
    """The problem with its ground truth, from the task's registry, for the server's own use (oracles, scoring);
    a problem the registry does not hold (or holds differently) stays as given."""
    try:
        known = _registry_problem(public.task, public.id)
    except (KeyError, ValueError):
        return public
    return known if known.public() == public.public() else public


@cache
def _registry_problem(task: str, problem_id: str) -> Problem:
    return get_task(task).problem(problem_id)


def score(state: ServedState) -> dict[str, Any]:
    """Score the finished plan in the environment (the Orchestrator's opinion is not the score); a run whose every
    module call failed raises ``RunFailedError`` instead."""
    records = state.get("usage") or []
    if records and all(r.get("failed") for r in records):
        first = records[0]
        raise RunFailedError(f"all {len(records)} module calls failed; the first, {first.get('module')}: "
                             f"{redact(' '.join(str(first.get('error')).split())[:300])}")
    problem = full_problem(Problem.model_validate(state["problem"]))
    task = get_task(problem.task)
    plan = Progress.model_validate(state.get("progress") or {}).plan
    return {"score": task.execute(problem, [task.Action.model_validate(a) for a in plan]).model_dump(mode="json")}


#: MAPConfig's defaults as a Resolved needs them (the per-problem fields are set in ``_graph``)
_DEFAULTS = MAPConfig().model_dump(exclude={"max_actions", "modules", "search", "n_subgoals", "branches", "layers"})


@cache
def _graph(backend: str, model: str | None, base_url: str | None = None, json_schema: bool | str = "auto",
           context_length: int | None = None, module_models: tuple[tuple[str, str], ...] = ()):
    options = ({"base_url": base_url, "json_schema": json_schema, "context_length": context_length,
                "module_models": dict(module_models)} if backend == "openai" else {})
    lock = threading.Lock()
    built: list[BaseChatModel] = []

    def chat_model() -> BaseChatModel:  # built on the first run that needs one, never at import (default cache)
        with lock:
            if not built:
                built.append(make_chat_model(backend, model, **options))
        return built[0]

    provider = module_provider(None if backend == "oracle" else chat_model)

    def prepare(state: ServedState, config: RunnableConfig) -> dict[str, Any]:
        """The public problem and the resolved configuration into the state, and the model checked against them
        before any module runs."""
        if state.get("problem"):
            problem = Problem.model_validate(state["problem"])
        else:
            problem = get_task(state["task"]).problem(state["problem_id"])
        task = get_task(problem.task)
        if state.get("config"):
            resolved = Resolved.model_validate(state["config"])
        else:
            chosen = MAPConfig.model_validate(state.get("map_config") or {}).for_backend(backend, task)
            resolved = chosen.resolve(task, problem)
        if "llm" in resolved.modules.values():
            prepare_model(chat_model(), task, problem.public(), resolved)
        public = problem.public().model_dump(mode="json", exclude={"hidden"})  # no empty field to wonder about
        return {"problem": public, "config": resolved.model_dump(mode="json")}

    # MAPAgent derives the recursion limit from each problem's N, B, L; a served graph does not know the problem
    # up front, so its default covers the largest configuration MAPConfig allows with N <= 60 (a client may
    # still pass its own recursion_limit)
    worst = Resolved(**{**_DEFAULTS, "branches": 4, "layers": 4, "max_actions": 60, "modules":
                        dict.fromkeys(MODULES, "llm"), "search": True, "n_subgoals": 4})
    served = StateGraph(ServedState)
    served.add_node("prepare", prepare)
    # the MAP graph, a subgraph Studio can open; its modules (oracles) see the problem with its ground truth,
    # which never enters the state
    served.add_node("plan", build_graph(lambda task, problem, cfg: provider(task, full_problem(problem), cfg)))
    served.add_node("score", score)
    served.add_edge(START, "prepare")
    served.add_edge("prepare", "plan")
    served.add_edge("plan", "score")
    served.add_edge("score", END)
    return served.compile(name="MAP").with_config(recursion_limit=worst.recursion_limit())


def make_graph(config: RunnableConfig):
    """Graph factory: one compiled graph (and one model) per backend, model, endpoint, schema form, window and
    per-module model names (``module_models``: ``{"Actor": "map-hanoi-actor"}``, each module's adapter)."""
    configurable = config.get("configurable") or {}
    routes = tuple(sorted((configurable.get("module_models") or {}).items()))  # hashable: one graph per routing
    return _graph(configurable.get("backend", "local"), configurable.get("model"), configurable.get("base_url"),
                  configurable.get("json_schema", "auto"), configurable.get("context_length"), routes)
