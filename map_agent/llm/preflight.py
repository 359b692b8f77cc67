"""``prepare_model``: everything about a chat model that would otherwise fail once per call, checked before a run.

A run that cannot work should fail in one line before its first module call, not after thousands of failed or
silently truncated calls: an endpoint that does not answer, a schema form it refuses, and a module whose prompt
alone leaves no room for a reply in the model's context window (Logistics' Actor prompt is ~3,300 tokens; the
2,048-token default of llama-cpp-python's server cannot hold it).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from pydantic import BaseModel

from map_agent.config import GRAMMARS, Resolved
from map_agent.llm.backends import OpenAICompatibleChat, SetupError, check_endpoint
from map_agent.llm.schema import grammar_friendly, minimal_reply_tokens
from map_agent.modules import LLMModule, build_modules
from map_agent.modules.base import make_input
from map_agent.task import Problem, Task


def prepare_model(llm: BaseChatModel, task: Task, problem: Problem, resolved: Resolved) -> None:
    """Check the endpoint (``check_endpoint``: reachable, schema form, context window), then that every module
    of ``problem`` that runs as "llm" fits its prompt and the smallest valid reply into the model's window;
    raise ``SetupError`` in one line naming the first that does not. A model whose window is unknown (or that
    reports none, like a test double) is not measured."""
    check_endpoint(llm)
    modules = {name: module for name, module in build_modules(task, problem, resolved, llm).items()
               if isinstance(module, LLMModule)}
    restricted = [f"{GRAMMARS[name]} {m.grammar}" for name, m in modules.items() if m.grammar != "static"]
    if restricted and not getattr(llm, "json_schema_decoding", False):  # the grammar would silently do nothing
        raise SetupError(f"{', '.join(restricted)}: a reply grammar needs a model that decodes with a JSON schema "
                         "(the local backend, or a server that takes one: --json-schema not off)")

    def prompts() -> Iterable[tuple[str, list[BaseMessage], dict]]:
        for name, module in modules.items():
            inp = representative_input(name, task, problem, resolved)
            yield f"{task.name} {name}", module.messages(inp), grammar_friendly(module.reply_schema(inp))

    _check_fit(llm, prompts())


def prepare_baseline(llm: BaseChatModel, task: Task, problem: Problem, method: str, max_actions: int | None = None
                     ) -> None:
    """``prepare_model`` for a baseline (``map_agent.baselines``): the endpoint, then every prompt the method sends
    for ``problem``'s first step against the window, with room for the smallest reply (a whole-plan prompt of
    examples can outgrow a small server's window: Hanoi CoT is ~2,050 tokens of llama-cpp-python's 2,048)."""
    from map_agent.baselines import get_method
    from map_agent.baselines.base import BaselineConfig

    check_endpoint(llm)
    config = BaselineConfig(method=method, max_actions=max_actions)
    _check_fit(llm, ((f"{task.name} {method}", messages, None) for messages in
                     get_method(method)(task, problem.public(), None, config).first_prompts()))


def _check_fit(llm: BaseChatModel, prompts: Iterable[tuple[str, list[BaseMessage], dict | None]]) -> None:
    """Raise ``SetupError`` for the first (label, messages, reply schema) whose prompt plus smallest valid reply
    exceeds the model's window. ``prompts`` is consumed only when the window is known, so nothing is built or
    tokenized for a model that reports none."""
    window = getattr(llm, "context_length", None)
    if not window or not hasattr(llm, "prompt_tokens"):
        return
    for label, messages, schema in prompts:
        prompt = llm.prompt_tokens(messages)
        need = llm.minimal_reply_tokens(schema) if isinstance(llm, OpenAICompatibleChat) else \
            minimal_reply_tokens(schema)
        if prompt + need > window:
            raise SetupError(f"{label}: prompt {prompt:,} tokens + reply ≥ {need} > context {window:,} of "
                             f"{_where(llm)}")


def representative_input(name: str, task: Task, problem: Problem, resolved: Resolved) -> BaseModel:
    """A module's input on the problem's start state (with its first legal action where one is needed): the
    shortest prompt that module sends in this run."""
    state, goal = task.start(problem), task.goal(problem)
    raw: dict[str, Any] = {"state": state.model_dump(mode="json"), "goal": goal.model_dump(mode="json")}
    if name in ("Monitor", "Predictor"):
        actions = task.legal_actions(state, problem)
        if not actions:
            raise SetupError(f"{task.name} problem {problem.id}: no legal action in the start state")
        raw = {"state": raw["state"], "action": actions[0].model_dump(mode="json")}
    elif name == "Actor":
        raw["n_actions"] = resolved.branches
    elif name == "TaskDecomposer":
        raw["n_subgoals"] = resolved.n_subgoals
    return make_input(name, task, raw)


def _where(llm: BaseChatModel) -> str:
    """The window's owner and what to do about it, for the error line."""
    if isinstance(llm, OpenAICompatibleChat):
        return f"{llm.endpoint} (serve a longer context, e.g. --n_ctx 8192, or pass --context-length)"
    return "the local model (load it with a larger window: n_ctx / --context-length)"
