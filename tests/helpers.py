"""Scripted chat models for tests (LangChain's fake chat models, plus one that records what it was sent)."""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult


class RecordingChatModel(FakeListChatModel):
    """FakeListChatModel that keeps every request (messages and keyword arguments) it received."""

    requests: list[dict[str, Any]] = []

    def _call(self, messages: list[BaseMessage], stop=None, run_manager=None, **kwargs: Any) -> str:
        self.requests.append({"messages": messages, "kwargs": kwargs})
        return super()._call(messages, stop=stop, run_manager=run_manager, **kwargs)


class ScriptedChatModel(BaseChatModel):
    """A chat model scripted per MAP module: ``script(module, input) -> reply text``.

    It reads which module asks, and with what input, from the run metadata every ``LLMModule`` call carries, so a
    test can make one module misbehave (reject everything, reply garbage, tie) while the others answer.
    """

    script: Any

    @property
    def _llm_type(self) -> str:
        return "scripted-map-modules"

    def _generate(self, messages: list[BaseMessage], stop=None, run_manager=None, **kwargs: Any) -> ChatResult:
        meta = run_manager.metadata if run_manager else {}
        text = self.script(meta["map_agent_module"], meta["map_agent_input"])
        return ChatResult(generations=[ChatGeneration(message=AIMessage(text))])
