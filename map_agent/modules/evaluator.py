"""Evaluator (OFC): the value of a (predicted) state as the fewest actions still needed (eq. 7)."""

from __future__ import annotations

import math

from map_agent.modules.base import LLMModule
from map_agent.modules.oracle import OracleModule
from map_agent.modules.schemas import MAX_STEPS, EvaluatorInput


class Evaluator(LLMModule):
    name = "Evaluator"
    stem = "evaluator"
    request = "How many actions at least are needed to reach the goal from this state?"

    def fields(self, inp: EvaluatorInput) -> list[tuple[str, str]]:
        return [("State", self.task.render_state(inp.state)), ("Goal", self.task.render_goal(inp.goal))]


class OracleEvaluator(OracleModule):
    """The exact distance to the goal (unreachable states get the schema's maximum)."""

    name = "Evaluator"

    def compute(self, inp: EvaluatorInput):
        d = self.task.distance(inp.state, inp.goal, self.problem)
        steps = MAX_STEPS if math.isinf(d) else min(int(d), MAX_STEPS)
        return self.output_model.model_validate({"reasoning": f"the exact distance is {steps}",
                                                 "steps_to_goal": steps})
