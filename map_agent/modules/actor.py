"""Actor (dlPFC): proposes B candidate actions for the current state and (sub)goal, heeding Monitor feedback
(eq. 4). It is the one module that samples (temperature > 0), so each round carries a new sample index."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from map_agent.modules.base import LLMModule
from map_agent.modules.oracle import OracleModule
from map_agent.modules.schemas import ActorInput


class Actor(LLMModule):
    name = "Actor"
    stem = "actor"
    request = "Propose {n_actions} different action(s)."

    def fields(self, inp: ActorInput) -> list[tuple[str, str]]:
        fields = [("Current state", self.task.render_state(inp.state)), ("Goal", self.task.render_goal(inp.goal))]
        if inp.feedback:
            fields.append(("Feedback on earlier proposals", " ".join(inp.feedback)))
        return fields

    def invoke_kwargs(self, inp: BaseModel) -> dict[str, Any]:
        # the sample index is the seed: resamples differ, and each one has its own prompt-cache entry
        return {**super().invoke_kwargs(inp), "seed": inp.sample}  # type: ignore[attr-defined]


class OracleActor(OracleModule):
    """The B legal actions whose successors are nearest the goal (ties keep the task's action order)."""

    name = "Actor"

    def compute(self, inp: ActorInput):
        task, problem = self.task, self.problem
        legal = task.legal_actions(inp.state, problem)
        ranked = sorted(legal, key=lambda a: task.distance(task.apply(inp.state, a, problem), inp.goal, problem))
        return self.output_model(actions=ranked[: inp.n_actions])
