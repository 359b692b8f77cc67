"""Replies that do not parse are handled as the original handles them (issue 15, items 6 and 7).

The original re-asks only the Actor: an Evaluator reply without a number is the random value at once, and a
Monitor reply is valid unless its last line says invalid. Its Actor retries sample (temperature 0.1 per retry,
top-p at its default) and a one-move reply is re-asked for two. ``parse_reask="all"`` is this project's re-ask of
every module. Replies are written the way real models write (``tests/messy_model.py``), and one plan runs against
a real server.
"""

from __future__ import annotations

import json

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from messy_model import READABLE, REFUSAL, MessyChatModel
from pydantic import PrivateAttr

from map_agent import MAPAgent, MAPConfig
from map_agent.modules import OracleChatModel
from map_agent.tasks import hanoi

SMALL = {"max_actions": 2, "monitor_retries": 1, "parse_retries": 2}


def calls(result, module):
    return [c for c in result.calls if c["module"] == module]


def plan(llm, **config):
    return MAPAgent(hanoi.problem(7), llm=llm, config=MAPConfig(**SMALL, **config), cache=False).plan()


def test_a_monitor_reply_without_json_counts_as_valid_unless_its_last_line_says_invalid():
    result = plan(MessyChatModel(script={"Monitor": ["refusal"]}, mix=list(READABLE)))
    monitor = calls(result, "Monitor")
    assert monitor and all(len(c["replies"]) == 1 and not c["failed"] for c in monitor)  # never re-asked
    assert all(c["output"]["valid"] for c in monitor) and len(calls(result, "Actor")) >= 1
    # the same reply ending in "invalid" rejects
    said_invalid = plan(MessyChatModel(correct=_Saying(last="So the move is invalid."), mix=["clean"]))
    assert all(not c["output"]["valid"] for c in calls(said_invalid, "Monitor"))
    # this project's re-ask of every module: the Monitor is re-asked, then its failure rejects
    reasked = plan(MessyChatModel(script={"Monitor": ["refusal"]}, mix=list(READABLE)), parse_reask="all")
    monitor = calls(reasked, "Monitor")
    assert all(len(c["replies"]) == 3 and c["failed"] for c in monitor)
    assert reasked.config.deviations == {"parse_reask": "all"}


class _Saying(OracleChatModel):
    """The oracle, except that the Monitor answers in prose ending with ``last``."""

    last: str

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        if (run_manager.metadata if run_manager else {}).get("map_agent_module") == "Monitor":
            return ChatResult(generations=[ChatGeneration(message=AIMessage(f"I checked it.\n{self.last}"))])
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)


def test_an_evaluator_reply_without_a_number_is_the_random_value_at_once():
    result = plan(MessyChatModel(script={"Evaluator": ["refusal"]}, mix=list(READABLE)))
    evaluator = calls(result, "Evaluator")
    assert evaluator and all(len(c["replies"]) == 1 and c["failed"] for c in evaluator)
    assert all(c["replies"][0]["text"] == REFUSAL for c in evaluator)
    assert result.actions  # the seeded random value let the search choose
    reasked = plan(MessyChatModel(script={"Evaluator": ["refusal"]}, mix=list(READABLE)), parse_reask="all")
    assert all(len(c["replies"]) == 3 for c in calls(reasked, "Evaluator"))


class OneMove(BaseChatModel):
    """An Actor that proposes one move (the first of the oracle's), every time or only at first."""

    always: bool
    _requests: list = PrivateAttr(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "one-move-actor"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        reply = OracleChatModel()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)
        text = str(reply.generations[0].message.content)
        if (run_manager.metadata if run_manager else {}).get("map_agent_module") == "Actor":
            self._requests.append((messages, kwargs))
            retry = len(messages) > len(self._requests[0][0])
            if self.always or not retry:
                out = json.loads(text)
                text = json.dumps({**out, "actions": out["actions"][:1]})
        return ChatResult(generations=[ChatGeneration(message=AIMessage(text))])


def test_a_one_move_actor_reply_is_reasked_for_two_with_sampling():
    llm = OneMove(always=False)
    result = MAPAgent(hanoi.problem(7), llm=llm, config=MAPConfig(**SMALL), cache=False).plan()
    first = calls(result, "Actor")[0]
    assert len(first["replies"]) == 2 and len(first["output"]["actions"]) == 2
    assert "propose 2 different" in first["replies"][0]["error"]
    (messages, first_kwargs), (_, retry_kwargs) = llm._requests[:2]
    assert first_kwargs["top_p"] == 0 and "top_p" not in retry_kwargs and retry_kwargs["temperature"] == 0.1
    assert "propose 2 different" in str(llm._requests[1][0][-1].content)
    # a model that keeps proposing one move: its move stands once the re-asks are spent
    stubborn = MAPAgent(hanoi.problem(7), llm=OneMove(always=True), config=MAPConfig(**SMALL), cache=False).plan()
    actor = calls(stubborn, "Actor")[0]
    assert len(actor["replies"]) == 3 and not actor["failed"] and len(actor["output"]["actions"]) == 1
    assert stubborn.actions and stubborn.invalid_moves == 0


@pytest.mark.real_model
@pytest.mark.slow
def test_a_real_server_plan_reasks_only_the_actor(llama_server):
    from map_agent.llm import make_chat_model

    llm = make_chat_model("openai", model="smollm2", base_url=llama_server.url, max_tokens=192)
    result = MAPAgent(hanoi.problem(7), llm=llm, config=MAPConfig(max_actions=1, monitor_retries=0,
                                                                   parse_retries=1), cache=False).plan()
    others = [c for c in result.calls if c["module"] != "Actor" and c["impl"] == "llm"]
    assert others and all(len(c["replies"]) == 1 for c in others)
    monitor = calls(result, "Monitor")
    assert all(c["output"] is not None for c in monitor)  # read as the original reads it, never a failure
