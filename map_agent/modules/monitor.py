"""Monitor (ACC): gates each proposed action -- valid or not -- and says which rule it breaks (eq. 5)."""

from __future__ import annotations

from map_agent.modules.base import LLMModule
from map_agent.modules.oracle import OracleModule
from map_agent.modules.schemas import MonitorInput


class Monitor(LLMModule):
    name = "Monitor"
    stem = "monitor"
    request = "Is the proposed action valid?"

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
