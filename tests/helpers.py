"""Scripted chat models for tests (LangChain's fake chat models, plus one that records what it was sent)."""

from __future__ import annotations

from typing import Any

from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import BaseMessage


class RecordingChatModel(FakeListChatModel):
    """FakeListChatModel that keeps every request (messages and keyword arguments) it received."""

    requests: list[dict[str, Any]] = []

    def _call(self, messages: list[BaseMessage], stop=None, run_manager=None, **kwargs: Any) -> str:
        self.requests.append({"messages": messages, "kwargs": kwargs})
        return super()._call(messages, stop=stop, run_manager=run_manager, **kwargs)
