"""A scripted chat model that writes the way real models do: the right answer, in a messy reply.

Every test model before this one answered in schema, so the harness never met what a real server sends: JSON in
code fences, prose around it (with a stray brace), the input echoed before it, a reply cut at the token limit,
an empty reply, a refusal. ``MessyChatModel`` takes the correct answer from a ground-truth chat model
(``OracleChatModel`` for MAP's modules, ``BaselineOracleChatModel`` for the baselines) and dresses it in one of
those styles, chosen deterministically per request: ``script`` fixes a module's styles attempt by attempt (the
last one repeats), else ``mix`` picks one by a stable hash of the request, so parallel branches get the same
style whatever order they run in. It keeps every request it received (``requests``) for tests to read the
feedback a retry carried.
"""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field, PrivateAttr

from map_agent.modules import OracleChatModel

#: styles whose reply holds the whole correct object, unambiguously: a parser must read every one of them
READABLE = ("clean", "fenced", "prose", "echo", "goal")
#: styles no parser can read: the call must retry, then fail
UNREADABLE = ("cut", "empty", "refusal")

REFUSAL = "I'm sorry, I can't help with that."


def dress(style: str, answer: str, prompt: str) -> tuple[str, dict[str, Any]]:
    """``answer`` (the correct JSON) written in ``style``; the reply's text and its response metadata."""
    stop = {"finish_reason": "stop"}
    goal = next((line for line in prompt.splitlines() if line.startswith("Goal:")), "Goal: the goal")
    replies = {
        "clean": answer,
        "fenced": f"```json\n{answer}\n```",
        "prose": f"Sure! I looked at the {{current}} state carefully.\n{answer}\nI hope this helps.",
        "echo": f"{prompt}\n\nMy answer:\n{answer}",
        "goal": f"{goal} -- that is what we want. So the answer is {answer}",
        "empty": "",
        "refusal": REFUSAL,
    }
    if style == "cut":  # the model ran into its token limit in the middle of the object
        return f"```json\n{answer[: len(answer) // 2]}", {"finish_reason": "length"}
    return replies[style], stop


class MessyChatModel(BaseChatModel):
    """The ``correct`` model's answers, written in the style ``script`` or ``mix`` picks for each request."""

    correct: BaseChatModel = Field(default_factory=OracleChatModel)
    #: module -> styles of its first, second, ... attempt (the last repeats); a module not here uses ``mix``
    script: dict[str, list[str]] = Field(default_factory=dict)
    mix: list[str] = Field(default_factory=lambda: ["clean"])
    #: every request: module, attempt, style, the messages it carried
    requests: list[dict[str, Any]] = Field(default_factory=list)
    _first_length: dict[str, int] = PrivateAttr(default_factory=dict)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "messy-scripted-chat"

    def _generate(self, messages: list[BaseMessage], stop=None, run_manager=None, **kwargs: Any) -> ChatResult:
        meta = run_manager.metadata if run_manager else {}
        module = meta.get("map_agent_module", "")
        request = json.dumps({"module": module, "input": meta.get("map_agent_input"), "seed": kwargs.get("seed")},
                             sort_keys=True, default=str)
        with self._lock:  # a re-ask is the same request with the failed reply and the feedback appended
            attempt = (len(messages) - self._first_length.setdefault(request, len(messages))) // 2
        styles = self.script.get(module)
        if styles:
            style = styles[min(attempt, len(styles) - 1)]
        else:
            style = self.mix[int(hashlib.sha256(f"{request}/{attempt}".encode()).hexdigest(), 16) % len(self.mix)]
        original = messages[: len(messages) - 2 * attempt] if attempt else messages
        answer = self.correct._generate(original, stop=stop, run_manager=run_manager, **kwargs)
        text, metadata = dress(style, str(answer.generations[0].message.content), str(original[-1].content))
        self.requests.append({"module": module, "attempt": attempt, "style": style, "messages": list(messages)})
        usage = {"input_tokens": sum(len(str(m.content)) for m in messages) // 4, "output_tokens": len(text) // 4,
                 "total_tokens": 0}
        return ChatResult(generations=[ChatGeneration(
            message=AIMessage(text, response_metadata=metadata, usage_metadata=usage))])
