"""A scripted chat model that answers every baseline request from the task's ground truth.

The baselines' counterpart of ``OracleChatModel``: it reads the request (kind, state, sample) from the call's
run metadata and replies in the request's JSON format -- an optimal plan, every legal next move with its state,
the true distance, a correct judgement, a vote for the first choice. With it the baselines' whole path (prompts,
parsing, search, scoring, records) runs at full size without a language model, and must solve.
"""

from __future__ import annotations

import json
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import BaseModel

from map_agent.task import Problem, Task, get_task

NOTE = "worked out from the rules"


def optimal_moves(task: Task, problem: Problem, state: BaseModel, limit: int) -> list[tuple[BaseModel, BaseModel]]:
    """(action, next state) pairs of an optimal plan: at each state the legal action nearest the goal."""
    goal = task.goal(problem)
    moves: list[tuple[BaseModel, BaseModel]] = []
    while not task.satisfies(state, goal, problem) and len(moves) < limit:
        legal = task.legal_actions(state, problem)
        if not legal:
            break
        action = min(legal, key=lambda a: task.distance(task.apply(state, a, problem), goal, problem))
        state = task.apply(state, action, problem)
        moves.append((action, state))
    return moves


class BaselineOracleChatModel(BaseChatModel):
    """Answers baseline requests (``map_agent.baselines``) perfectly, from the ground truth."""

    @property
    def _llm_type(self) -> str:
        return "map-agent-baseline-oracle-chat"

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        meta = run_manager.metadata if run_manager else {}
        if "map_agent_input" not in meta:
            raise ValueError("BaselineOracleChatModel answers baseline requests only (no map_agent_* metadata)")
        task = get_task(meta["map_agent_task"])
        phases = task.phases(task.problem(meta["map_agent_problem"]))  # a phase keeps its problem's id
        problem = phases[min(int(meta.get("map_agent_phase") or 0), len(phases) - 1)]
        text = json.dumps(answer(task, problem, meta["map_agent_input"]))
        message = AIMessage(text, usage_metadata={"input_tokens": sum(len(str(m.content)) for m in messages) // 4,
                                                   "output_tokens": len(text) // 4, "total_tokens": 0})
        return ChatResult(generations=[ChatGeneration(message=message)])


def answer(task: Task, problem: Problem, request: dict[str, Any]) -> dict[str, Any]:
    """The perfect reply to one request (see ``map_agent.baselines.base.Request``)."""
    kind = request["kind"]
    state = task.State.model_validate(request["state"]) if request.get("state") is not None else task.start(problem)
    dump = _dump
    if kind in ("plan", "answer"):
        moves = optimal_moves(task, problem, state, problem.max_actions)
        steps = [{"reasoning": NOTE, "action": dump(a), "state": dump(s)} for a, s in moves]
        # a plan reasoned once carries its reasoning beside the steps; the other plan shapes ignore it
        return {"reasoning": NOTE, "steps": steps} if kind == "plan" else steps[0]
    if kind == "propose":
        return {"options": [{"action": dump(a), "state": dump(task.apply(state, a, problem))}
                            for a in task.legal_actions(state, problem)]}
    if kind == "value":
        distance = task.distance(state, task.goal(problem), problem)
        return {"reasoning": NOTE, "steps_to_goal": None if distance == float("inf") else int(distance)}
    if kind == "judge":
        actions = [task.Action.model_validate(s["action"]) for s in request["plan"]]
        execution = task.execute(problem, actions)
        return {"reasoning": NOTE, "verdict": "sure" if execution.goal_reached and not execution.n_invalid
                else "impossible"}
    if kind == "strategy":
        return {"strategy": NOTE}
    if kind == "vote":
        return {"analysis": NOTE, "best_choice": 1}
    raise ValueError(f"BaselineOracleChatModel: unknown request kind {kind!r}")


def _dump(value: BaseModel) -> dict[str, Any]:
    return value.model_dump(mode="json")
