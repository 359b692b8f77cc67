"""Multi-agent debate (Du et al., 2023): agents answer, read each other's answers, and answer again.

The original (``toh/gpt4_mad_toh.py``, ``planbench/*/gpt4_*_plan_generation_mad.py``, ``cogeval/gpt4_mad_*.py``):
2 agents, 3 rounds; each agent starts from the ICL prompt (the same in-context problems); from the second round
on each agent's conversation gets the other agents' answers of the previous round and is asked for an updated
answer. Sampling is the API's default (temperature 1, top-p 1; the original set neither), so the agents differ:
agent ``i`` samples with its own seed. Scored: agent 1's final answer (the original's evaluation reports each
agent; agent 2's final plan is kept in the record's ``detail``).
"""

from __future__ import annotations

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from pydantic import BaseModel, ConfigDict, Field

from map_agent.baselines.base import (
    Attempt,
    Method,
    Request,
    Sampling,
    actions_of,
    plan_messages,
    problem_text,
    read_prompt,
    states_of,
)

NO_ANSWER = "(no usable answer)"


class MAD(Method):
    name = "mad"

    class Settings(BaseModel):
        model_config = ConfigDict(frozen=True, extra="forbid")

        agents: int = Field(default=2, ge=1)
        rounds: int = Field(default=3, ge=1)
        temperature: float = 1.0
        top_p: float | None = None

    def _opening(self) -> tuple[list[BaseMessage], str, type[BaseModel]]:
        return plan_messages(self, reasoning="none", shots_file="examples.json")

    def first_prompts(self) -> list[list[BaseMessage]]:
        return [self._opening()[0]]

    def debate_message(self, others: list[str], request: str) -> HumanMessage:
        """The other agents' previous answers, then the problem and the request again."""
        task, problem = self.task, self.problem
        answers = "\n\n".join(f"One agent's answer: ```{a}```" for a in others)
        return HumanMessage(read_prompt(task, problem, "debate.md", answers=answers) + "\n"
                            + problem_text(task, task.start(problem), task.goal(problem)) + "\n" + request)

    def solve(self) -> Attempt:
        opening, request, reply = self._opening()
        sampling = Sampling(temperature=self.settings.temperature, top_p=self.settings.top_p,
                            max_tokens=self.budget)
        contexts = [list(opening) for _ in range(self.settings.agents)]
        answers: list[list[BaseModel | None]] = []  # per round, per agent
        for round_ in range(self.settings.rounds):
            previous = answers[-1] if answers else None
            current: list[BaseModel | None] = []
            for i, context in enumerate(contexts):
                if previous is not None:
                    others = [_text(a) for j, a in enumerate(previous) if j != i]
                    context.append(self.debate_message(others, request))
                result = self.ask("plan", context, reply, sampling,
                                  Request(kind="plan", state=self.problem.start, sample=i, round=round_))
                current.append(result.output if result.ok else None)
                context.append(AIMessage(_text(current[-1])))
            answers.append(current)
        final = answers[-1]
        if final[0] is None:
            return Attempt(records=self.records, status="no_plan",
                           detail={"final": [_dump(a) for a in final]})
        return self.attempt(actions_of(final[0]), states_of(final[0]), final=[_dump(a) for a in final],
                            rounds=[[_dump(a) for a in r] for r in answers])


def _text(answer: BaseModel | None) -> str:
    return answer.model_dump_json(exclude_none=True) if answer is not None else NO_ANSWER


def _dump(answer: BaseModel | None):
    return answer.model_dump(mode="json", exclude_none=True) if answer is not None else None
