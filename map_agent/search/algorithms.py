"""The paper's three algorithms as demand-driven functions (see ``memo``): ProposeAction (Algorithm 1), Search
(Algorithm 2) and the MAP plan loop (Algorithm 3).

Each function returns ``None`` while a module result it needs is missing (the job is queued in ``ctx``);
otherwise its answer. They never call a module themselves, so the same code runs under LangGraph (jobs become
``Send``s) and is testable with hand-filled tables.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel

from map_agent.modules.schemas import (
    ActorInput,
    EvaluatorInput,
    MonitorInput,
    OrchestratorInput,
    PredictorInput,
    TaskDecomposerInput,
)
from map_agent.search.memo import Ctx, failed, key
from map_agent.task import Task, canonical


class Branch(BaseModel):
    """A first-layer candidate: the action, the state the Predictor expects, and its backed-up value."""

    action: dict[str, Any]
    predicted: dict[str, Any]
    value: float
    reached_goal: bool = False
    #: leaves below this branch that share its (minimum) value: the original breaks a tie among the tied leaves
    #: (grandchildren), so a branch with two of them is chosen twice as often as one with a single one
    tied_leaves: int = 1


class Choice(BaseModel):
    """What Search decided at one step (``chosen`` is None when no valid action was proposed)."""

    chosen: Branch | None
    branches: list[Branch]


def propose_action(ctx: Ctx, state: BaseModel, goal: BaseModel,
                   history: tuple[str, ...] = ()) -> list[BaseModel] | None:
    """Algorithm 1: the Actor proposes B actions, the Monitor gates each; the Monitor's full verdict on rejected
    ones is fed back for a new Actor round, up to ``monitor_retries`` extra rounds. Returns the valid actions (up
    to B), deduplicated in proposal order.

    The original's fallbacks: when every round was rejected, the last proposal is executed as it is
    (``on_all_rejected="execute_last"``; "stop" returns none); a single valid action fills every branch
    (``single_valid="duplicate"``). With ``speculative_predict`` the Predictor is asked for each action's next
    state while its verdict is awaited: a rejected action's prediction is then never read.
    """
    task, cfg = ctx.task, ctx.config
    monitored = ctx.on("Monitor") and not (task.unmonitored_final and canonical(goal) == canonical(
        task.goal(ctx.problem)))
    valid: list[BaseModel] = []
    feedback: list[str] = []
    last: list[BaseModel] = []
    for round_ in range(1 + cfg.monitor_retries):
        inp = ActorInput(state=state, goal=goal, n_actions=cfg.branches, feedback=tuple(feedback), history=history,
                         sample=cfg.actor_sample(round_))
        proposal = ctx.get("Actor", key(state, goal, round_, *history), inp)
        if proposal is not None and cfg.critic == "learned":
            proposal = _revised(ctx, inp, proposal, key(state, goal, round_, "critique", *history))
        if proposal is None:
            return None
        pending = False
        proposed = [task.Action.model_validate(raw) for raw in proposal.get("actions") or []]
        last = proposed or last
        for action in proposed:
            if action in valid:
                continue
            if not monitored:
                valid.append(action)
                continue
            verdict = ctx.get("Monitor", key(state, action), MonitorInput(state=state, action=action))
            if verdict is None:
                pending = True
                if cfg.speculative_predict:  # the next state, asked beside the verdict instead of after it
                    predict(ctx, state, action)
            elif verdict.get("valid") or (failed(verdict) and cfg.parse_reask == "actor"):
                # the original counts every Monitor reply as valid unless it says "invalid": a failed call too
                valid.append(action)
            else:
                note = rejection_note(task, action, verdict)
                if note not in feedback:
                    feedback.append(note)
        if pending:
            return None
        if len(valid) >= cfg.branches:
            break
    if not valid and cfg.on_all_rejected == "execute_last":
        valid = _unique(last)
    if len(valid) == 1 and cfg.single_valid == "duplicate":
        return valid * cfg.branches
    return valid[: cfg.branches]


def rejection_note(task: Task, action: BaseModel, verdict: dict[str, Any]) -> str:
    """What the Actor is told of a rejected proposal: the Monitor's reasoning and feedback, as the original."""
    said = " ".join(filter(None, [verdict.get("reasoning"), verdict.get("feedback")]))
    return f"'{task.render_action(action)}' is invalid: {said or verdict.get('error')}"


def _revised(ctx: Ctx, inp: ActorInput, draft: dict[str, Any], k: str) -> dict[str, Any] | None:
    """The paper's natural-language critic ("Planning without Search"): the learned critic's notes on the draft
    proposals (which look good, which look bad, and the estimated actions to the goal after each) go back to the
    Actor, whose second answer is the round's proposal. A draft that failed is returned as it is."""
    from map_agent.learned.critic import critic_for

    actions = [ctx.task.Action.model_validate(raw) for raw in draft.get("actions") or []]
    if not actions:
        return draft
    notes = critic_for(ctx.task.name).critique(inp.state, inp.goal, actions)
    return ctx.get("Actor", k, inp.model_copy(update={"critique": notes}))


def _unique(actions: list[BaseModel]) -> list[BaseModel]:
    out: list[BaseModel] = []
    for a in actions:
        if a not in out:
            out.append(a)
    return out


def predict(ctx: Ctx, state: BaseModel, action: BaseModel) -> BaseModel | None | bool:
    """The Predictor's next state; with the Predictor off the task's transition gives it (the action names the
    next state). ``False`` marks a failed prediction: that branch is dropped."""
    task = ctx.task
    if not ctx.on("Predictor"):
        try:
            return task.apply(state, action, ctx.problem)
        except (ValueError, KeyError, IndexError):
            return state
    out = ctx.get("Predictor", key(state, action), PredictorInput(state=state, action=action))
    if out is None:
        return None
    if out.get("next_state") is None:
        return False
    return task.State.model_validate(out["next_state"])


def achieved(ctx: Ctx, state: BaseModel, goal: BaseModel) -> bool | None:
    """The Orchestrator's verdict (a failed call counts as "not yet"); with it off, never."""
    if not ctx.on("Orchestrator"):
        return False
    out = ctx.get("Orchestrator", key(state, goal), OrchestratorInput(state=state, goal=goal))
    return None if out is None else bool(out.get("achieved"))


def evaluate(ctx: Ctx, state: BaseModel, goal: BaseModel) -> float | None:
    """The Evaluator's estimate of actions still needed. A failed call is, as in the original, a random value
    from the task's range drawn with the run's seeded RNG (``evaluator_fallback="random"``), or unreachable."""
    k = key(state, goal)
    out = ctx.get("Evaluator", k, EvaluatorInput(state=state, goal=goal))
    if out is None:
        return None
    steps = out.get("steps_to_goal")
    if steps is not None:
        return float(steps)
    if failed(out) and ctx.config.evaluator_fallback == "random":
        low, high = ctx.task.evaluator_fallback(ctx.problem)
        return float(ctx.rng("Evaluator", k).randint(low, high))
    return math.inf


def search(ctx: Ctx, state: BaseModel, goal: BaseModel, depth: int = 1,
           history: tuple[str, ...] = (), visited: frozenset[str] = frozenset()) -> Choice | None:
    """Algorithm 2: expand B branches to L layers; leaves are valued by the Evaluator as
    ``depth + estimated steps``, values back up by minimum, and the first action of the best branch wins.
    Without search (B = 1) the single valid proposal is taken as is (or the one the Orchestrator says reaches the
    goal).

    The goal check inside the tree is the original's (``toh/gpt4_map_toh.py``, ``rollout_from_2nodes``): the
    Orchestrator looks at the root's children only; if one of them reaches the goal, the Evaluator still chooses
    between the children (no deeper layer); deeper states get no Orchestrator call and the Evaluator values them
    all. Equally valued leaves are broken at random among the tied leaves with the run's seeded RNG
    (``tie_break="random"``) or by order ("first"). ``early_termination`` (this project's) instead takes a child
    or grandchild the Orchestrator declares at the goal at once, without the Evaluator. ``visited`` (canonical
    states the plan has been in) matters only with ``revisit`` off: see ``_best``."""
    cfg = ctx.config
    actions = propose_action(ctx, state, goal, history)
    if actions is None:
        return None
    children: list[tuple[BaseModel, BaseModel]] = []
    pending = False
    for action in actions:
        nxt = predict(ctx, state, action)
        if nxt is None:
            pending = True
        elif nxt is not False:
            children.append((action, nxt))  # type: ignore[arg-type]
    if pending:
        return None
    checked = depth == 1 or cfg.early_termination or not cfg.search
    done = [achieved(ctx, nxt, goal) if checked else False for _, nxt in children]
    if any(d is None for d in done):
        return None
    at_goal = any(done)
    if at_goal and (cfg.early_termination or not cfg.search):
        branches = [Branch(action=a.model_dump(mode="json"), predicted=s.model_dump(mode="json"), value=depth,
                           reached_goal=True) for (a, s), d in zip(children, done, strict=True) if d]
        return Choice(chosen=branches[0], branches=branches)
    if not cfg.search:
        branches = [Branch(action=a.model_dump(mode="json"), predicted=s.model_dump(mode="json"), value=math.nan)
                    for a, s in children]
        return Choice(chosen=branches[0] if branches else None, branches=branches)
    values: list[tuple[float, int] | None] = []
    for action, nxt in children:
        value: tuple[float, int] | None = None
        if depth < cfg.layers and not at_goal:
            sub = search(ctx, nxt, goal, depth + 1, extend(ctx, history, action, nxt))
            if sub is not None:
                value = (sub.chosen.value, sub.chosen.tied_leaves) if sub.chosen else None
                if sub.chosen is None:  # a dead end below: value the state itself
                    est = evaluate(ctx, nxt, goal)
                    value = None if est is None else (depth + est, 1)
        else:
            est = evaluate(ctx, nxt, goal)
            value = None if est is None else (depth + est, 1)
        values.append(value)
    if any(v is None for v in values):
        return None
    branches = [Branch(action=a.model_dump(mode="json"), predicted=s.model_dump(mode="json"), value=v[0],
                       reached_goal=d, tied_leaves=v[1])
                for (a, s), v, d in zip(children, values, done, strict=True)]  # type: ignore[index]
    return Choice(chosen=_best(ctx, state, goal, branches, visited), branches=branches)


def _best(ctx: Ctx, state: BaseModel, goal: BaseModel, branches: list[Branch],
          visited: frozenset[str] = frozenset()) -> Branch | None:
    """The lowest-valued branch; a tie is drawn among the tied leaves below the tied branches (the original's
    ``np.random.choice`` over the tied grandchildren), and the winner reports how many leaves tie at its value.
    With ``revisit`` off, branches predicted to lead back into ``visited`` are passed over while another is left:
    a plan that returns to a state has spent actions for nothing, however well the Evaluator rates it."""
    if not ctx.config.revisit:
        branches = [b for b in branches if canonical(ctx.task.State.model_validate(b.predicted)) not in visited] \
            or branches
    if not branches:
        return None
    low = min(b.value for b in branches)
    tied = [b for b in branches if b.value == low]
    leaves = sum(b.tied_leaves for b in tied)
    if len(tied) == 1 or ctx.config.tie_break == "first":
        chosen = tied[0]
    else:
        pick = ctx.rng("tie", state, goal).randrange(leaves)
        chosen = next(b for b in tied if (pick := pick - b.tied_leaves) < 0)
    return chosen.model_copy(update={"tied_leaves": leaves})


def extend(ctx: Ctx, history: tuple[str, ...], action: BaseModel, state: BaseModel) -> tuple[str, ...]:
    """The Actor's history after one more move (empty when ``actor_history`` is off)."""
    if not ctx.config.actor_history:
        return ()
    return (*history, f"{ctx.task.render_action(action)} -> {ctx.task.render_state(state)}")


def decompose(ctx: Ctx, start: BaseModel, goal: BaseModel) -> list[BaseModel] | None:
    """The TaskDecomposer's subgoals (none when it is off or its reply failed)."""
    if not ctx.on("TaskDecomposer"):
        return []
    k = ctx.config.n_subgoals
    inp = TaskDecomposerInput(state=start, goal=goal, n_subgoals=k)
    out = ctx.get("TaskDecomposer", key(start, goal, k or 0), inp)
    if out is None:
        return None
    return [ctx.task.Goal.model_validate(g) for g in (out.get("subgoals") or [])][: k or ctx.task.max_subgoals]
