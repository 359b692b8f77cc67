"""``BaselineAgent``: one problem in, a scored plan out -- the baselines' counterpart of ``MAPAgent``.

Same chat-model factory and prompt cache, same scoring (``task.execute`` on the full problem; the method sees
``problem.public()`` only), same record shape as ``PlanResult.record()``, so the evaluation runner, its summary
and the reports treat a baseline run like a MAP run.

>>> from map_agent.baselines.agent import BaselineAgent
>>> from map_agent.tasks import hanoi
>>> result = BaselineAgent(hanoi.problem(7), "icl", backend="oracle").plan()
>>> result.solved, result.invalid_moves, len(result.actions)
(True, 0, 5)
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from langchain_core.caches import BaseCache
from langchain_core.language_models import BaseChatModel
from pydantic import Field

from map_agent.agent import ScoredPlan, Usage, _as_cache
from map_agent.baselines import check_method, get_method
from map_agent.baselines.base import Attempt, BaselineConfig
from map_agent.config import MAPConfig
from map_agent.llm import make_chat_model
from map_agent.modules.base import CallRecord
from map_agent.task import Problem, Task, get_task

#: why a baseline stopped, as ``PlanResult.outcome`` explains MAP's ``status``
OUTCOMES = {
    "answered": "the model gave a plan; it is scored as written, its first N moves",
    "no_plan": "no request got a usable reply (every one failed to parse or to reach the model)",
}


class BaselineResult(ScoredPlan):
    """A finished baseline run, scored by the environment; ``status`` is answered | no_plan and ``calls`` logs
    every request as MAP's records log module calls (module ``<method>.<kind>``, the request as input, the raw
    replies)."""

    method: str
    config: BaselineConfig
    detail: dict[str, Any] = Field(default_factory=dict)


class BaselineAgent:
    """Plan one problem with a baseline method (``zero-shot``, ``icl``, ``cot``, ``mad``, ``tot``).

    ``llm`` is any LangChain chat model; otherwise ``backend`` builds one with ``make_chat_model`` ("oracle":
    the scripted model that answers every request from the ground truth). ``config`` supplies the run index
    (``seed``), ``parse_retries`` and an N override; ``settings`` override the method's paper settings.
    """

    def __init__(self, problem: Problem, method: str, *, llm: BaseChatModel | None = None, backend: str = "local",
                 model: str | None = None, config: MAPConfig | None = None, settings: dict[str, Any] | None = None,
                 cache: BaseCache | str | Path | bool | None = None, **backend_options: Any) -> None:
        self.problem = problem
        self.task: Task = get_task(problem.task)
        check_method(self.task.name, method)
        config = config or MAPConfig()
        self.config = BaselineConfig(method=method, seed=config.seed, parse_retries=config.parse_retries,
                                     max_actions=config.max_actions, settings=settings or {})
        if llm is None:
            if backend == "oracle":
                from map_agent.baselines.oracle import BaselineOracleChatModel

                llm = BaselineOracleChatModel()
            else:
                llm = make_chat_model(backend, model, cache=_as_cache(cache), **backend_options)
        elif llm.cache is None and cache is not False:
            llm.cache = _as_cache(cache)
        self.llm = llm

    def plan(self, thread_id: str | None = None) -> BaselineResult:
        """Solve the problem; a task with several phases (``Task.phases``: CogEval's Detour and Reward
        Revaluation) runs the method on each in turn, the next phase's prompt showing the previous answer's moves
        (``info["history"]``), as the original appended its first reply; the last phase is scored."""
        started = time.perf_counter()
        thread_id = thread_id or uuid.uuid4().hex
        results: list[BaselineResult] = []
        records: list[CallRecord] = []
        previous: tuple[Problem, Attempt] | None = None
        for phase in self.task.phases(self.problem):
            if previous is not None:
                phase = phase.model_copy(update={"info": {**phase.info, "history": self._transcript(*previous)}})
            method = get_method(self.config.method)(self.task, phase.public(), self.llm, self.config)
            attempt = method.solve()
            records += attempt.records
            results.append(self._result(phase, attempt, thread_id).model_copy(
                update={"calls": [c.model_dump(mode="json") for c in method.calls]}))
            previous = phase, attempt
        return results[-1].model_copy(update={
            "usage": Usage.from_records(records), "failures": [r for r in records if r.failed],
            "phases": [r.record() for r in results[:-1]], "wall_seconds": time.perf_counter() - started})

    def _result(self, problem: Problem, attempt: Attempt, thread_id: str) -> BaselineResult:
        execution = self.task.execute(problem, attempt.actions)
        metrics = {**self.task.paper_metrics(problem, execution, attempt.predicted),
                   **self._candidate_scores(problem, attempt)}
        return BaselineResult(
            task=self.task.name, problem_id=problem.id, method=self.config.method, actions=attempt.actions,
            solved=execution.solved, goal_reached=execution.goal_reached, invalid_moves=execution.n_invalid,
            status=attempt.status, outcome=OUTCOMES[attempt.status],
            execution=execution, metrics=metrics,
            usage=Usage.from_records(attempt.records), failures=[r for r in attempt.records if r.failed],
            config=self.config, detail=attempt.detail, thread_id=thread_id, wall_seconds=0.0)

    def _candidate_scores(self, problem: Problem, attempt: Attempt) -> dict[str, float]:
        """ToT's score as the original's eval computed it (``toh/gpt4_tot_toh_eval.py``): every candidate plan the
        search kept (``detail["candidates"]``) scored like a plan, by the task's original score where it has one
        (Hanoi: on the model's predicted states), else the environment's; their mean (the "average case") and
        whether any solves (the "best case"), beside this project's score of the first solution."""
        plans, states = attempt.detail.get("candidates"), attempt.detail.get("candidate_states")
        if not plans:
            return {}
        solved = []
        for actions, predicted in zip(plans, states or [[] for _ in plans], strict=True):
            moves = [self.task.Action.model_validate(a) for a in actions][: problem.max_actions]
            execution = self.task.execute(problem, moves)
            paper = self.task.paper_metrics(problem, execution, predicted)
            solved.append(bool(paper.get("paper_solved", execution.solved)))
        return {"tot_mean_solved": 100 * sum(solved) / len(solved), "tot_best_solved": any(solved),
                "tot_candidates": float(len(solved))}

    def _transcript(self, problem: Problem, attempt: Attempt) -> str:
        """A phase's answer as the next phase sees it: its moves with the states the model wrote or, when it wrote
        none, the states the environment passes through (an invalid move leaves it where ``after_invalid`` does)."""
        task = self.task
        states = [task.State.model_validate(s) for s in attempt.predicted]
        if not states:
            state = task.start(problem)
            for action in attempt.actions:
                valid = task.check(state, action, problem).valid
                state = task.apply(state, action, problem) if valid else task.after_invalid(state, action, problem)
                states.append(state)
        return task.transcript(problem, attempt.actions, states)
