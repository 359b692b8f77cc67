"""Tree of thoughts (Yao et al., 2023) as the MAP authors ran it: breadth-first search over the model's thoughts.

Two forms, as in the original code:

* ``search="bfs"`` -- planning tasks (``toh/gpt4_tot_toh.py``, three-disk problems;
  ``planbench/*/tot_*_plan_generation.py``, the first 100 instances: ``--limit 100``). At each step the model
  lists every valid next move from each frontier state with the state it leads to (one request per state); each
  new path is valued by ``value_samples`` = 3 samples of the model's estimate of the moves still needed (summed;
  "impossible" counts 50). A path whose predicted state meets the goal is instead judged: "sure" that the whole
  move sequence is valid counts 0, anything else 100. The ``breadth`` = 5 lowest-valued paths are kept; those at
  the goal become solutions. At most ``step_limit`` steps (the original: 10 for Hanoi, the optimal length + 3 for
  PlanBench; here N, the problem's action budget: 10, 20, optimal + 4).
  Temperature 0.7 for every request. A value reply that does not parse counts a random integer in
  ``Task.evaluator_fallback`` (Hanoi: 1..7 as the original) or, for PlanBench, 50 (``unparsed="impossible"``).
  Values are memoised per problem, as the original's ``value_cache``.
  The plan scored is the lowest-valued solution (the earliest found on a tie), else the lowest-valued path
  left; the original kept every candidate and averaged over them (all are in the record's ``detail``, and the
  record's metrics score them as the original did: ``tot_mean_solved`` the share of candidates solved,
  ``tot_best_solved`` whether any is, ``tot_candidates``; ``BaselineAgent._result``).
  A path ends where ``Task.visible_terminal`` says so, read on the model's predicted state and the public
  problem: the visible goal, or for CogEval's Valuepath family (whose goal hides its room) any chest room, as
  ``cogeval/tot_valuepath.py``, ``tot_detour.py`` and ``tot_reward_reval.py`` stopped there; the judge then
  decides whether it was the right one. The search never reads ground truth.
  CogEval (``cogeval/tot_{valuepath,steppath,detour,reward_reval}.py``): ``breadth`` = 5, ``value_samples`` = 3,
  temperature 0.7, ``step_limit`` = 6 steps; the propose and judge examples are the original's (rooms 1 and 6;
  Valuepath 1->11->5->8 "sure", 7->1->2->5->8 "impossible"; Steppath 2->10 "sure", 11->6 "impossible"), the
  value examples the ICL problems. The original ran 10 runs of Valuepath and Detour and 5 of Reward Revaluation and
  of Steppath (the task's default for Steppath is 1: ``--runs 5``). Detour and Reward Revaluation run phase by
  phase (``BaselineAgent``), the second phase with the change announced; the original's ToT scripts ran the
  second phase only.
* ``search="vote"`` -- StrategyQA (``strategyQA/tot_strategyqa.py``): two steps, a strategy then an answer; each
  step samples ``samples`` = 5 thoughts (temperature 1) from the best one so far, ``votes`` = 5 votes pick the
  most promising (``breadth`` = 1). The vote prompt here also shows the question (the original's omitted it).
"""

from __future__ import annotations

import json
import random
from functools import cache
from pathlib import Path
from typing import Any, Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from pydantic import BaseModel, ConfigDict, Field, create_model

from map_agent.baselines.base import (
    Attempt,
    Method,
    ReasonedStep,
    Request,
    Sampling,
    examples,
    problem_text,
    prompt_file,
    read_prompt,
    read_text,
    system_message,
)
from map_agent.files import entry_of, load_file
from map_agent.task import get_task

IMPOSSIBLE = 50  # the original's value of a path the model calls impossible
REJECTED = 100  # the original's value of a goal path the model does not judge "sure"


class ValueReply(BaseModel):
    reasoning: str = Field(description="the moves that would reach the goal, worked out")
    steps_to_goal: int | None = Field(ge=0, description="fewest moves still needed; null if the goal is impossible")


class JudgeReply(BaseModel):
    reasoning: str = Field(description="each move checked against the rules")
    verdict: Literal["sure", "impossible"]


class StrategyReply(BaseModel):
    strategy: str = Field(description="how to answer the question")


class VoteReply(BaseModel):
    analysis: str = Field(description="each choice analysed")
    best_choice: int = Field(ge=1, description="the number of the most promising choice")


class ToT(Method):
    name = "tot"
    paper_settings = {
        "hanoi": {"unparsed": "random"},
        "strategyqa": {"search": "vote", "breadth": 1, "temperature": 1.0},
        "cogeval": {"step_limit": 6},
    }

    class Settings(BaseModel):
        model_config = ConfigDict(frozen=True, extra="forbid")

        search: Literal["bfs", "vote"] = "bfs"
        breadth: int = Field(default=5, ge=1, description="paths kept per step")
        value_samples: int = Field(default=3, ge=1, description="value estimates summed per path")
        step_limit: int | None = Field(default=None, ge=1, description="None: N, the problem's action budget")
        unparsed: Literal["random", "impossible"] = "impossible"
        temperature: float = 0.7
        top_p: float | None = None
        samples: int = Field(default=5, ge=1, description="vote search: thoughts sampled per step")
        votes: int = Field(default=5, ge=1, description="vote search: votes per step")

    @property
    def sampling(self) -> Sampling:
        return Sampling(temperature=self.settings.temperature, top_p=self.settings.top_p, max_tokens=self.budget)

    def solve(self) -> Attempt:
        return self._vote() if self.settings.search == "vote" else self._bfs()

    def first_prompts(self) -> list[list[BaseMessage]]:
        start = self.task.start(self.problem)
        if self.settings.search == "vote":
            return [self._strategy_messages(), self._answer_messages("")]
        return [self._propose_messages(start), self._value_messages(start), self._judge_messages([])]

    # -- breadth-first search over proposals ------------------------------------------------------------------
    def _propose_model(self) -> type[BaseModel]:
        return propose_reply(self.task.name)

    def _propose_messages(self, state: BaseModel) -> list[BaseMessage]:
        task, problem = self.task, self.problem
        reply = self._propose_model()
        request = read_prompt(task, problem, "tot_propose.md")
        messages: list[BaseMessage] = [system_message(task, problem, request, reply)]
        path = prompt_file(task, problem, "tot_propose.examples.json")
        for i, shot in enumerate(examples_raw(path)):
            with entry_of(path, i):
                shown = task.render_state(task.State.model_validate(shot["state"]))
                answer = reply.model_validate({"options": shot["options"]}).model_dump_json()
            messages += [HumanMessage(f"{context(shot)}Current state: {shown}\nList every valid next move."),
                         AIMessage(answer)]
        messages.append(HumanMessage(f"Current state: {task.render_state(state)}\nList every valid next move."))
        return messages

    def _value_messages(self, state: BaseModel) -> list[BaseMessage]:
        task, problem = self.task, self.problem
        messages: list[BaseMessage] = [system_message(task, problem, read_prompt(task, problem, "tot_value.md"),
                                                      ValueReply)]
        for shot in examples(task, problem, "examples.json"):
            moves = "\n".join(self._step_text(s["action"], s.get("state")) for s in shot.steps)
            text = problem_text(task, task.State.model_validate(shot.start), task.Goal.model_validate(shot.goal),
                                "Current state")
            messages += [HumanMessage(f"{context(shot.model_dump())}{text}\nHow many moves are still needed?"),
                         AIMessage(ValueReply(reasoning=moves, steps_to_goal=len(shot.steps)).model_dump_json())]
        text = problem_text(task, state, task.goal(problem), "Current state")
        messages.append(HumanMessage(f"{text}\nHow many moves are still needed?"))
        return messages

    def _judge_messages(self, moves: list[tuple[dict, dict]]) -> list[BaseMessage]:
        task, problem = self.task, self.problem
        messages: list[BaseMessage] = [system_message(task, problem, read_prompt(task, problem, "tot_judge.md"),
                                                      JudgeReply)]
        path = prompt_file(task, problem, "tot_judge.examples.json")
        for i, shot in enumerate(examples_raw(path)):
            with entry_of(path, i):
                steps = [(s["action"], s.get("state")) for s in shot["steps"]]
                text = self._judge_text(shot["start"], shot["goal"], steps)
                answer = JudgeReply(reasoning=shot["reasoning"], verdict=shot["verdict"]).model_dump_json()
            messages += [HumanMessage(context(shot) + text), AIMessage(answer)]
        messages.append(HumanMessage(self._judge_text(problem.start, problem.goal, moves)))
        return messages

    def _judge_text(self, start: dict, goal: dict, moves: list[tuple[dict, dict]]) -> str:
        task = self.task
        text = problem_text(task, task.State.model_validate(start), task.Goal.model_validate(goal))
        lines = "\n".join(self._step_text(a, s) for a, s in moves) or "(no moves)"
        return f"{text}\nMoves:\n{lines}\nDo these moves reach the goal without breaking a rule?"

    def _step_text(self, action: dict, state: dict | None) -> str:
        task = self.task
        text = task.render_action(task.Action.model_validate(action))
        return f"{text} -> {task.render_state(task.State.model_validate(state))}" if state is not None else text

    def _bfs(self) -> Attempt:
        task, problem = self.task, self.problem
        goal = task.goal(problem)
        rng = random.Random(self.config.seed)
        memo: dict[str, int] = {}
        frontier: list[list[tuple[dict, dict]]] = [[]]
        solutions: list[tuple[int, list[tuple[dict, dict]]]] = []
        steps = self.settings.step_limit or self.max_actions
        for step in range(steps):
            candidates: list[list[tuple[dict, dict]]] = []
            for path in frontier:
                state = path[-1][1] if path else problem.start
                result = self.ask("propose", self._propose_messages(task.State.model_validate(state)),
                                  self._propose_model(), self.sampling,
                                  Request(kind="propose", state=state, round=step))
                if result.ok:
                    candidates += [[*path, (o.action.model_dump(mode="json"), o.state.model_dump(mode="json"))]
                                   for o in result.output.options]
            if not candidates:
                break
            values = [self._value(path, goal, memo, rng) for path in candidates]
            order = sorted(range(len(candidates)), key=lambda i: values[i])[: self.settings.breadth]
            frontier = []
            for i in order:
                if task.visible_terminal(task.State.model_validate(candidates[i][-1][1]), goal, problem):
                    solutions.append((values[i], candidates[i]))
                else:
                    frontier.append(candidates[i])
            if not frontier:
                break
        ranked = [path for _, path in sorted(solutions, key=lambda sv: sv[0])]  # stable: earliest on a tie
        candidates = ranked + frontier
        if not candidates or not candidates[0]:
            return Attempt(records=self.records, status="no_plan", detail={"solutions": 0})
        best = candidates[0]
        return self.attempt([task.Action.model_validate(a) for a, _ in best], [s for _, s in best],
                            solutions=len(solutions),
                            candidates=[[a for a, _ in c] for c in candidates],
                            candidate_states=[[s for _, s in c] for c in candidates])

    def _value(self, path: list[tuple[dict, dict]], goal: BaseModel, memo: dict[str, int],
               rng: random.Random) -> int:
        task, problem = self.task, self.problem
        state = task.State.model_validate(path[-1][1])
        at_goal = task.visible_terminal(state, goal, problem)
        key = json.dumps([at_goal, path if at_goal else path[-1][1]], sort_keys=True)
        if key in memo:
            return memo[key]
        total = 0
        for k in range(self.settings.value_samples):
            if at_goal:
                result = self.ask("judge", self._judge_messages(path), JudgeReply, self.sampling,
                                  Request(kind="judge", state=problem.start, sample=k,
                                          plan=[{"action": a, "state": s} for a, s in path]))
                total += 0 if result.ok and result.output.verdict == "sure" else REJECTED
            else:
                result = self.ask("value", self._value_messages(state), ValueReply, self.sampling,
                                  Request(kind="value", state=path[-1][1], sample=k))
                if result.ok:
                    total += IMPOSSIBLE if result.output.steps_to_goal is None else result.output.steps_to_goal
                elif self.settings.unparsed == "random":
                    low, high = task.evaluator_fallback(problem)
                    total += rng.randint(low, high)
                else:
                    total += IMPOSSIBLE
        memo[key] = total
        return total

    # -- sample and vote (StrategyQA) ---------------------------------------------------------------------------
    def _strategy_messages(self) -> list[BaseMessage]:
        task, problem = self.task, self.problem
        return [system_message(task, problem, read_prompt(task, problem, "tot_strategy.md"), StrategyReply),
                HumanMessage(f"Question: {task.render_goal(task.goal(problem))}")]

    def _answer_reply(self) -> type[BaseModel]:
        return ReasonedStep[self.task.Action, self.task.State]  # type: ignore[name-defined]

    def _answer_messages(self, strategy: str) -> list[BaseMessage]:
        task, problem = self.task, self.problem
        return [system_message(task, problem, read_prompt(task, problem, "tot_answer.md"), self._answer_reply()),
                HumanMessage(f"Question: {task.render_goal(task.goal(problem))}\nStrategy: {strategy}")]

    def _vote_messages(self, choices: list[str]) -> list[BaseMessage]:
        task, problem = self.task, self.problem
        listed = "\n".join(f"Choice {i}:\n{c}" for i, c in enumerate(choices, 1))
        return [system_message(task, problem, read_prompt(task, problem, "tot_vote.md"), VoteReply),
                HumanMessage(f"Question: {task.render_goal(task.goal(problem))}\n{listed}")]

    def _pick(self, step: int, choices: list[str]) -> int | None:
        """The choice with the most votes (the first on a tie, as the original's stable sort); None if no vote
        parsed and no choice exists."""
        if not choices:
            return None
        tally = [0] * len(choices)
        for k in range(self.settings.votes):
            result = self.ask("vote", self._vote_messages(choices), VoteReply, self.sampling,
                              Request(kind="vote", sample=k, round=step))
            if result.ok and 1 <= result.output.best_choice <= len(choices):
                tally[result.output.best_choice - 1] += 1
        return max(range(len(choices)), key=lambda i: (tally[i], -i))

    def _vote(self) -> Attempt:
        strategies = []
        for k in range(self.settings.samples):
            result = self.ask("strategy", self._strategy_messages(), StrategyReply, self.sampling,
                              Request(kind="strategy", sample=k))
            if result.ok:
                strategies.append(result.output.strategy)
        chosen = self._pick(0, strategies)
        strategy = strategies[chosen] if chosen is not None else ""
        answers = []
        for k in range(self.settings.samples):
            result = self.ask("answer", self._answer_messages(strategy), self._answer_reply(), self.sampling,
                              Request(kind="answer", sample=k, round=1))
            if result.ok:
                answers.append(result.output)
        best = self._pick(1, [a.model_dump_json() for a in answers])
        if best is None:
            return Attempt(records=self.records, status="no_plan", detail={"strategy": strategy})
        return self.attempt([answers[best].action], strategy=strategy,
                            answers=[a.model_dump(mode="json") for a in answers])


def context(shot: dict[str, Any]) -> str:
    """The line that introduces an example from another environment than the problem's (a transfer setting)."""
    return f"{shot['context'].strip()}\n" if shot.get("context") else ""


def examples_raw(path: Path) -> list[dict[str, Any]]:
    """A ToT examples file as a list of JSON objects (their fields validated where they are rendered, errors
    naming the file and the entry: ``entry_of``); none if the task has no such file."""
    if not path.exists():
        return []
    return load_file(path, list[dict[str, Any]], text=read_text(path))


@cache
def propose_reply(task_name: str) -> type[BaseModel]:
    """``{"options": [{"action": ..., "state": ...}, ...]}`` in the task's types (built once per task)."""
    task = get_task(task_name)
    option = create_model(f"Option_{task_name}", action=(task.Action, ...),
                          state=(task.State, Field(description="the state this move leads to")))
    return create_model(f"Proposals_{task_name}",
                        options=(list[option], Field(min_length=1, description="every valid next move")))  # type: ignore
