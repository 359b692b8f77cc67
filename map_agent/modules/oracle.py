"""Symbolic oracle modules: the task's ground truth standing in for a module (the verifier-tool path).

Any module can be switched to its oracle, alone (a diagnostic of that module) or all six (an end-to-end test of
the wiring: MAP with all oracles must solve every problem with zero invalid moves). ``OracleChatModel`` goes the
other way round: a scripted chat model that answers every module *from* the ground truth in the module's JSON
format, so the LLM path -- prompting, parsing, caching -- runs at full size without a real model.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import BaseModel

from map_agent.modules.base import CallRecord, Module, ModuleResult, make_input


class OracleModule(Module):
    """A module computed from the task's ground truth; it makes no model calls."""

    def __call__(self, inp: BaseModel) -> ModuleResult:
        started = time.perf_counter()
        output = self.compute(inp)
        return ModuleResult(output=output, record=CallRecord(module=self.name,
                                                             seconds=time.perf_counter() - started))

    @abstractmethod
    def compute(self, inp: Any) -> BaseModel: ...


class OracleChatModel(BaseChatModel):
    """A chat model whose replies are the oracle modules' outputs, serialised as the LLM modules expect.

    It reads which module is asking, and its input, from the run metadata every ``LLMModule`` call carries.
    """

    @property
    def _llm_type(self) -> str:
        return "map-agent-oracle-chat"

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        from map_agent.modules import ORACLES
        from map_agent.task import get_task

        meta = run_manager.metadata if run_manager else {}
        if "map_agent_module" not in meta:
            raise ValueError("OracleChatModel answers MAP module calls only (no map_agent_* run metadata)")
        task = get_task(meta["map_agent_task"])
        problem = task.phases(task.problem(meta["map_agent_problem"]))[meta.get("map_agent_phase", 0)]
        module = meta["map_agent_module"]
        inp = make_input(module, task, meta["map_agent_input"])
        output = ORACLES[module](task, problem).compute(inp)
        text = output.model_dump_json()
        message = AIMessage(text, usage_metadata={"input_tokens": sum(len(str(m.content)) for m in messages) // 4,
                                                   "output_tokens": len(text) // 4,
                                                   "total_tokens": 0})
        return ChatResult(generations=[ChatGeneration(message=message)])
