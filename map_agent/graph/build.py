"""``build_graph``: the only place where the MAP state machine is wired.

Nodes: one per module (``TaskDecomposer``, ``Actor``, ``Monitor``, ``Predictor``, ``Evaluator``,
``Orchestrator``) and ``MAP``, the controller that runs the paper's algorithms over the stored results
(``map_agent.search``). The controller fans the calls it waits for out to the module nodes with ``Send`` -- the B
branches of a search layer run in parallel -- and every module node returns to the controller.

>>> from map_agent.graph.build import build_graph
>>> sorted(build_graph(lambda task, problem, config: {}).get_graph().nodes)
['Actor', 'Evaluator', 'MAP', 'Monitor', 'Orchestrator', 'Predictor', 'TaskDecomposer', '__end__', '__start__']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from map_agent.config import MAPConfig, Resolved
from map_agent.graph.state import MAPState
from map_agent.modules import Module
from map_agent.modules.base import ModuleCall, make_input
from map_agent.search.memo import TABLE_OF, TABLES, Ctx
from map_agent.search.plan import Progress, advance
from map_agent.task import MODULES, Problem, Task, get_task

#: (task, problem, resolved config) -> the modules of that run
ModuleProvider = Callable[[Task, Problem, Resolved], dict[str, Module]]


def build_graph(provider: ModuleProvider, checkpointer: Any = None, name: str = "MAP"):
    """Compile the MAP state machine; ``provider`` supplies the modules (LLM, oracle) for each problem."""

    def controller(state: MAPState, config: RunnableConfig) -> dict[str, Any]:
        update: dict[str, Any] = {}
        if "problem" not in state:  # started from a task name and problem id
            problem = get_task(state["task"]).problem(state["problem_id"])
            update["problem"] = problem.model_dump(mode="json")
        problem = Problem.model_validate(state.get("problem") or update["problem"])
        task = get_task(problem.task)
        if "config" not in state:
            backend = (config.get("configurable") or {}).get("backend", "local")
            chosen = MAPConfig.model_validate(state.get("map_config") or {}).for_backend(backend, task)
            update["config"] = chosen.resolve(task, problem).model_dump(mode="json")
        resolved = Resolved.model_validate(state.get("config") or update["config"])
        ctx = Ctx(task=task, problem=problem, config=resolved, tables={t: state.get(t) or {} for t in TABLES})
        progress, jobs = advance(ctx, Progress.model_validate(state.get("progress") or {}))
        return {**update, "progress": progress.model_dump(mode="json"), "pending": [j.model_dump() for j in jobs]}

    def dispatch(state: MAPState) -> list[Send] | str:
        jobs = state.get("pending") or []
        if not jobs:
            return END
        return [Send(job["module"], {"job": job, "problem": state["problem"], "config": state["config"]})
                for job in jobs]

    def module_node(name: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
        def run(payload: dict[str, Any]) -> dict[str, Any]:
            problem = Problem.model_validate(payload["problem"])
            task = get_task(problem.task)
            resolved = Resolved.model_validate(payload["config"])
            modules = provider(task, problem, resolved)
            job = payload["job"]
            result = modules[name](make_input(name, task, job["input"]))
            call = ModuleCall.of(result, resolved.modules[name], job["input"])  # llm | oracle | learned
            entry = (call.output or {}) | {"error": call.error, "failed": call.failed}
            return {TABLE_OF[name]: {job["key"]: entry}, "usage": [result.record.model_dump(mode="json")],
                    "calls": [call.model_dump(mode="json")]}

        run.__name__ = name
        run.__doc__ = f"The {name} module on one queued call."
        return run

    graph = StateGraph(MAPState)
    graph.add_node("MAP", controller)
    for name in MODULES:
        graph.add_node(name, module_node(name))
        graph.add_edge(name, "MAP")
    graph.add_edge(START, "MAP")
    graph.add_conditional_edges("MAP", dispatch, [*MODULES, END])
    return graph.compile(checkpointer=checkpointer, name=name)

