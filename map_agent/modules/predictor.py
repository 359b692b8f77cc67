"""Predictor (OFC): the state an action leads to (eq. 6) -- MAP plans on predicted, not observed, states."""

from __future__ import annotations

from map_agent.modules.base import LLMModule
from map_agent.modules.oracle import OracleModule
from map_agent.modules.schemas import PredictorInput


class Predictor(LLMModule):
    name = "Predictor"
    stem = "predictor"
    request = "What is the state after the action?"
    grammar_type = "State"  # MAPConfig.predictor_grammar restricts the states it can write

    def fields(self, inp: PredictorInput) -> list[tuple[str, str]]:
        return [("Current state", self.task.render_state(inp.state)),
                ("Action", self.task.render_action(inp.action))]


class OraclePredictor(OracleModule):
    """The environment's transition. An action with no defined successor leaves the state as it was."""

    name = "Predictor"

    def compute(self, inp: PredictorInput):
        try:
            nxt = self.task.apply(inp.state, inp.action, self.problem)
        except (ValueError, KeyError, IndexError):
            nxt = inp.state
        return self.output_model.model_validate({"reasoning": "the environment's transition", "next_state": nxt})
