"""The graph state: serialisable JSON only, and the module-result tables only grow (merge reducers)."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict


def merge(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any]:
    """Reducer for the memo tables: parallel branches add disjoint keys; a key is never rewritten."""
    return {**(left or {}), **(right or {})}


class MAPState(TypedDict, total=False):
    # input: either ``problem`` + ``config`` (as MAPAgent sends them) or ``task`` + ``problem_id`` (+ optional
    # ``map_config``, a MAPConfig dict), which is handier from LangGraph Studio or the SDK
    task: str
    problem_id: str
    map_config: dict[str, Any]
    problem: dict[str, Any]  # map_agent.task.Problem
    config: dict[str, Any]  # map_agent.config.Resolved
    progress: dict[str, Any]  # map_agent.search.plan.Progress
    pending: list[dict[str, Any]]  # map_agent.search.memo.Job, the calls now in flight
    usage: Annotated[list[dict[str, Any]], operator.add]  # map_agent.modules.CallRecord per call
    calls: Annotated[list[dict[str, Any]], operator.add]  # every module call: input, output, failure
    subgoals: Annotated[dict[str, Any], merge]
    proposals: Annotated[dict[str, Any], merge]
    verdicts: Annotated[dict[str, Any], merge]
    predictions: Annotated[dict[str, Any], merge]
    values: Annotated[dict[str, Any], merge]
    achieved: Annotated[dict[str, Any], merge]
