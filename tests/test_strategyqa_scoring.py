"""StrategyQA scoring reads the final step's answer whatever question it echoes (issue 15, item 1).

The goal line the Actor is told to copy carries the "answer true or false" note; a model that copies it verbatim,
or paraphrases the question, has still answered the main question. The original reads its final reply
unconditionally, so both must score 100% under MAP, CoT and ToT alike. The replies are dressed the way real models
write (``tests/messy_model.py``), and one plan runs against a real server.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from messy_model import MessyChatModel
from pydantic import Field

from map_agent import MAPAgent
from map_agent.baselines.agent import BaselineAgent
from map_agent.baselines.oracle import BaselineOracleChatModel
from map_agent.modules import OracleChatModel
from map_agent.task import get_task

TASK = get_task("strategyqa")
PROBLEMS = TASK.problems("dev100")[:12]


class RewordingChatModel(BaseChatModel):
    """The ground truth's answers, with the main question's ``question`` field rewritten: ``verbatim`` copies the
    goal line as the prompt shows it (its "answer true or false" note included), ``paraphrase`` rewords it."""

    correct: BaseChatModel
    how: str = Field(pattern="^(verbatim|paraphrase)$")

    @property
    def _llm_type(self) -> str:
        return "rewording-scripted-chat"

    def _generate(self, messages: list[BaseMessage], stop=None, run_manager=None, **kwargs: Any) -> ChatResult:
        reply = self.correct._generate(messages, stop=stop, run_manager=run_manager, **kwargs)
        meta = run_manager.metadata if run_manager else {}
        problem = TASK.problem(meta["map_agent_problem"])
        main = TASK.goal(problem)
        written = (TASK.render_goal(main) if self.how == "verbatim"
                   else f"Thinking it over, is it so that {main.question[:1].lower()}{main.question[1:]}")
        text = json.dumps(_reword(json.loads(str(reply.generations[0].message.content)), main.question, written))
        return ChatResult(generations=[ChatGeneration(message=AIMessage(text))])


def _reword(value: Any, question: str, written: str) -> Any:
    if isinstance(value, dict):
        if value.get("question") == question and "answer" in value:
            return {**value, "question": written}
        return {k: _reword(v, question, written) for k, v in value.items()}
    if isinstance(value, list):
        return [_reword(v, question, written) for v in value]
    return value


@pytest.mark.parametrize("how", ["verbatim", "paraphrase"])
def test_map_scores_a_final_answer_that_echoes_the_goal_line(how):
    llm = MessyChatModel(correct=RewordingChatModel(correct=OracleChatModel(), how=how), mix=["fenced", "prose"])
    results = [MAPAgent(p, llm=llm, cache=False).plan() for p in PROBLEMS]
    finals = [r.actions[-1].question for r in results]
    assert all(f != p.goal["question"] for f, p in zip(finals, PROBLEMS, strict=True))  # the echo reached the plan
    if how == "verbatim":
        assert all("answer true or false" in f for f in finals)
    assert sum(r.solved for r in results) == len(PROBLEMS)


@pytest.mark.parametrize("method", ["cot", "tot"])
@pytest.mark.parametrize("how", ["verbatim", "paraphrase"])
def test_baselines_score_a_final_answer_that_echoes_the_goal_line(method, how):
    llm = MessyChatModel(correct=RewordingChatModel(correct=BaselineOracleChatModel(), how=how), mix=["clean"])
    results = [BaselineAgent(p, method, llm=llm, cache=False).plan() for p in PROBLEMS[:4]]
    assert all(r.actions and r.actions[-1].question != p.goal["question"] for r, p in zip(results, PROBLEMS,
                                                                                        strict=False))
    assert all(r.solved for r in results)


@pytest.mark.real_model
@pytest.mark.slow
def test_a_real_server_plan_records_the_answer_it_read(llama_server, tmp_path):
    """SmolLM2 through llama-cpp-python's server: the final step's answer is what the score read, whatever
    question the model wrote beside it."""
    from map_agent.cli import main

    run_dir = tmp_path / "runs"
    code = main(["eval", "strategyqa", "--split", "dev100", "--limit", "1", "--backend", "openai",
                 "--base-url", llama_server.url, "--model", "smollm2", "--parse-retries", "1",
                 "--monitor-retries", "0", "--max-tokens", "192", "--out", str(run_dir), "--run-id", "sqa"])
    assert code == 0
    record = json.loads((run_dir / "sqa" / "records.jsonl").read_text().splitlines()[0])
    assert record["plan"], f"no step was committed: {record['status']}"
    final = record["plan"][-1]["answer"]
    from map_agent.tasks.strategyqa import final_answer

    label = TASK.problem(record["problem_id"]).hidden["answer"]
    assert record["goal_reached"] and record["solved"] == (final_answer(final) == label)
