"""Algorithm 3, the MAP plan loop, as one controller step over the run's progress.

The TaskDecomposer sets subgoals; they are pursued in order, then the final goal. For each goal: the Orchestrator
checks the (predicted) current state -- against the final goal first, as the original does at every step, then
against the subgoal pursued; if the goal is not achieved, Search chooses an action, which joins the plan P, and
the Predictor's next state becomes the current state. Planning ends when the Orchestrator declares the final goal
achieved, when P holds N actions, or when no action is left to take. With the Orchestrator off, a task may give
each goal a fixed number of actions (``Task.actions_per_goal``: StrategyQA answers each question once).

The order is the original's, the schedule need not be: a call whose need does not hang on a pending answer is asked
beside it (the start's final-goal check beside the TaskDecomposer, whatever subgoals it sets). With
``speculative_orchestrator`` the checks that follow a final-goal "not yet" are asked with it (``_ask_ahead``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from map_agent.config import Resolved
from map_agent.search.algorithms import Choice, achieved, decompose, extend, search
from map_agent.search.memo import TABLES, Ctx, Job, key
from map_agent.task import Problem, Task, canonical

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
    # steps are never changed once made, so the lists are copied, not their items
    p = progress.model_copy(update={"plan": [*progress.plan], "steps": [*progress.steps]})
    start, final = task.start(problem), task.goal(problem)
    if not p.current:
        p.current = start.model_dump(mode="json")
    if p.goals is None:
        subgoals = decompose(ctx, start, final)
        if subgoals is None:
            if ctx.config.final_goal_first:
                # the start's final-goal check comes first whatever the subgoals are (with none it is the pursued
                # goal's check): asked beside the TaskDecomposer, not after it
                achieved(ctx, start, final)
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
                if ctx.config.speculative_orchestrator:
                    _ask_ahead(ctx, p, key(state, final))
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
        visited = frozenset({canonical(state)} | {canonical(task.State.model_validate(s.state)) for s in p.steps})
        choice = search(ctx, state, goal, history=history, visited=visited)
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


def _ask_ahead(ctx: Ctx, progress: Progress, final_check: str) -> None:
    """``speculative_orchestrator``: beside a final-goal check still unanswered, queue the Orchestrator checks the
    plan makes next if it says "not yet": the pursued subgoal's at this state, or its children's when search goes
    on from here. The original asks them a superstep later, so every step waits for two Orchestrator rounds.

    Whenever the final goal is not declared -- every step but a plan's last -- these are the very calls the
    original makes next. When it is, planning stops there and they were asked for nothing (at most once per plan,
    only when the final goal is declared while a subgoal is still pursued); ``unused_calls`` counts them. That is
    why it is not the default: no exact formulation exists, the calls hang on the answer."""
    ahead = ctx.assuming("Orchestrator", final_check, {"achieved": False})
    advance(ahead, progress)
    for name, job in ahead.jobs.items():
        if job.module == "Orchestrator":
            ctx.jobs.setdefault(name, job)


def unused_calls(task: Task, problem: Problem, config: Resolved, state: dict[str, Any]) -> dict[str, int]:
    """Per module, the results in a run's graph ``state`` that its plan never read: calls asked ahead of a verdict
    that went the other way (``speculative_predict``'s Predictor calls on rejected actions, ``_ask_ahead``'s checks
    beside a final-goal check that declared the goal); none by default. The plan is replayed over the tables from
    the start: a replay reads exactly the results the original, one call at a time, would have asked for."""
    tables = {table: state.get(table) or {} for table in TABLES}
    replay = Ctx(task=task, problem=problem, config=config, tables=tables)
    advance(replay, Progress())
    unused = {module: sum(f"{module}:{k}" not in replay.read for k in tables[table])
              for table, module in TABLES.items()}
    return {module: n for module, n in unused.items() if n}
