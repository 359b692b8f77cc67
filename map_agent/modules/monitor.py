"""Monitor (ACC): gates each proposed action -- valid or not -- and says which rule it breaks (eq. 5)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from map_agent.modules.base import LLMModule, ReplyError
from map_agent.modules.oracle import OracleModule
from map_agent.modules.schemas import REASONING_CHARS, MonitorInput


class Monitor(LLMModule):
    name = "Monitor"
    stem = "monitor"
    request = "Is the proposed action valid?"

    def __init__(self, *args: Any, read_last_line: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.read_last_line = read_last_line

    def parse(self, text: str, inp: BaseModel) -> BaseModel:
        """The verdict object; with ``read_last_line`` (the original's reading, ``parse_reask="actor"``) a reply
        without one is read as the original reads every Monitor reply: valid unless its last line says
        "invalid", the whole reply being the reasoning that goes back to the Actor."""
        try:
            return super().parse(text, inp)
        except ReplyError:
            if not self.read_last_line or not text.strip():
                raise
        last = text.strip().splitlines()[-1]
        fields = {"valid": "invalid" not in last.casefold(), "feedback": last[:400]}
        if "reasoning" in self.output_model.model_fields:
            fields["reasoning"] = text.strip()[:REASONING_CHARS]
        return self.output_model.model_validate(fields)

    def fields(self, inp: MonitorInput) -> list[tuple[str, str]]:
        return [("Current state", self.task.render_state(inp.state)),
                ("Proposed action", self.task.render_action(inp.action))]


class OracleMonitor(OracleModule):
    """The environment's own legality check; its reason is the feedback."""

    name = "Monitor"

    def compute(self, inp: MonitorInput):
        verdict = self.task.check(inp.state, inp.action, self.problem)
        return self.output_model.model_validate({"reasoning": self.task.explain(inp.state, inp.action, self.problem),
                                                 "valid": verdict.valid, "feedback": verdict.reason[:400]})
