"""Algorithm 3, the MAP plan loop, as one controller step over the run's progress.

The TaskDecomposer sets subgoals; they are pursued in order, then the final goal. For each goal: the Orchestrator
checks the (predicted) current state -- against the final goal first, as the original does at every step, then
against the subgoal pursued; if the goal is not achieved, Search chooses an action, which joins the plan P, and
the Predictor's next state becomes the current state. Planning ends when the Orchestrator declares the final goal
achieved, when P holds N actions, or when no action is left to take. With the Orchestrator off, a task may give
each goal a fixed number of actions (``Task.actions_per_goal``: StrategyQA answers each question once).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from map_agent.search.algorithms import Choice, achieved, decompose, extend, search
from map_agent.search.memo import Ctx, Job

Status = Literal["running", "goal", "budget", "stuck"]
OUTCOMES = {
    "goal": "the Orchestrator declared the final goal achieved",
    "budget": "the plan reached N actions",
    "stuck": "no action to take: the Actor proposed none",
}
#: the "stuck" outcome under ``on_all_rejected="stop"``, where a fully rejected round also ends the plan
STUCK_ON_REJECTION = ("no action to take: the Actor proposed none, or every proposal was rejected "
                      "(--on-all-rejected stop)")


class Step(BaseModel):
    """One committed action with what led to it: the goal pursued and the branches Search compared."""

    index: int
    state: dict[str, Any]
    goal: dict[str, Any]
    goal_index: int
    choice: Choice


class Progress(BaseModel):
    """Where the plan stands; it is part of the graph state and changes only in the controller."""

    status: Status = "running"
    goals: list[dict[str, Any]] | None = None  # subgoals then the final goal, once decomposed
    goal_index: int = 0
    current: dict[str, Any] = Field(default_factory=dict)
    plan: list[dict[str, Any]] = Field(default_factory=list)
    steps: list[Step] = Field(default_factory=list)


def advance(ctx: Ctx, progress: Progress) -> tuple[Progress, list[Job]]:
    """Move the plan as far as the stored module results allow; return the new progress and the jobs it waits
    on (no jobs means the plan is finished)."""
    task, problem = ctx.task, ctx.problem
    p = progress.model_copy(deep=True)
    start, final = task.start(problem), task.goal(problem)
    if not p.current:
        p.current = start.model_dump(mode="json")
    if p.goals is None:
        subgoals = decompose(ctx, start, final)
        if subgoals is None:
            return p, list(ctx.jobs.values())
        p.goals = [g.model_dump(mode="json") for g in [*subgoals, final]]
    while p.status == "running":
        if p.goal_index >= len(p.goals):
            p.status = "goal"
            break
        goal = task.Goal.model_validate(p.goals[p.goal_index])
        state = task.State.model_validate(p.current)
        if ctx.config.final_goal_first and p.goal_index < len(p.goals) - 1:
            done_final = achieved(ctx, state, final)
            if done_final is None:
                break
            if done_final:
                p.goal_index = len(p.goals)
                continue
        done = achieved(ctx, state, goal)
        if done is None:
            break
        quota = task.actions_per_goal if not ctx.on("Orchestrator") else None
        if done or (quota is not None and sum(s.goal_index == p.goal_index for s in p.steps) >= quota):
            p.goal_index += 1
            continue
        if len(p.plan) >= ctx.config.max_actions:
            p.status = "budget"
            break
        history: tuple[str, ...] = ()
        for step in p.steps:
            history = extend(ctx, history, task.Action.model_validate(step.choice.chosen.action),
                             task.State.model_validate(step.choice.chosen.predicted))
        choice = search(ctx, state, goal, history=history)
        if choice is None:
            break
        if choice.chosen is None:
            p.status = "stuck"
            break
        p.steps.append(Step(index=len(p.plan), state=p.current, goal=p.goals[p.goal_index],
                            goal_index=p.goal_index, choice=choice))
        p.plan.append(choice.chosen.action)
        p.current = choice.chosen.predicted
    return p, ([] if p.status != "running" else list(ctx.jobs.values()))
