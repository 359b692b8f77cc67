"""Orchestrator (aPFC): has the (sub)goal been achieved? It ends subgoals, the plan and search early (eq. 8)."""

from __future__ import annotations

from map_agent.modules.base import LLMModule
from map_agent.modules.oracle import OracleModule
from map_agent.modules.schemas import OrchestratorInput


class Orchestrator(LLMModule):
    name = "Orchestrator"
    stem = "orchestrator"
    request = "Has the goal been achieved in the current state?"

    def fields(self, inp: OrchestratorInput) -> list[tuple[str, str]]:
        return [("Current state", self.task.render_state(inp.state)), ("Goal", self.task.render_goal(inp.goal))]


class OracleOrchestrator(OracleModule):
    """The task's goal test."""

    name = "Orchestrator"

    def compute(self, inp: OrchestratorInput):
        achieved = self.task.satisfies(inp.state, inp.goal, self.problem)
        return self.output_model.model_validate(
            {"reasoning": "the goal test " + ("holds" if achieved else "fails"), "achieved": achieved})
