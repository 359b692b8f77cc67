"""Actor (dlPFC): proposes B candidate actions for the current state and (sub)goal, heeding Monitor feedback
(eq. 4). As in the original, its prompt carries the moves and predicted states so far, and its temperature rises
by a step on every parse retry (a reply that repeats a malformed answer at temperature 0 would never change)."""

from __future__ import annotations

import json
import threading
from typing import Any

from pydantic import BaseModel

from map_agent.modules.base import LLMModule, ModuleResult, ReplyError
from map_agent.modules.oracle import OracleModule
from map_agent.modules.schemas import ActorInput


class Actor(LLMModule):
    name = "Actor"
    stem = "actor"
    request = "Propose {n_actions} different action(s)."
    default_transfer_form = "plans"  # the original's Actor: the transfer examples as bare action lists
    grammar_type = "Action"  # MAPConfig.actor_grammar restricts the actions it can write

    def fields(self, inp: ActorInput) -> list[tuple[str, str]]:
        fields = []
        if inp.history:
            fields.append(("Moves so far", "\n" + "\n".join(f"{i + 1}. {h}" for i, h in enumerate(inp.history))))
        fields += [("Current state", self.task.render_state(inp.state)), ("Goal", self.task.render_goal(inp.goal))]
        if inp.feedback:
            fields.append(("Feedback on earlier proposals", " ".join(inp.feedback)))
        if inp.critique:
            fields.append(("A critic's view of your draft proposals", " ".join(inp.critique)))
        return fields

    def __init__(self, *args: Any, retry_temperature_step: float = 0.1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.retry_temperature_step = retry_temperature_step
        self._kept = threading.local()  # a short proposal of the call running on this thread (branches run in parallel)

    def invoke_kwargs(self, inp: BaseModel, attempt: int = 0) -> dict[str, Any]:
        # the sample index (run and round) is the seed: each round has its own prompt-cache entry
        kwargs = super().invoke_kwargs(inp, attempt)
        kwargs["temperature"] = min(2.0, self.temperature + self.retry_temperature_step * attempt)
        if attempt:  # the original's retries sample: top-p back at the server's default, or a retry repeats itself
            kwargs.pop("top_p", None)
        return {**kwargs, "seed": inp.sample}  # type: ignore[attr-defined]

    def parse(self, text: str, inp: BaseModel) -> BaseModel:
        """The proposals; a reply with fewer different actions than asked is re-asked for them, as the original
        re-asks a one-move reply for two, and kept if no later reply does better (``__call__``)."""
        out = super().parse(text, inp)
        wanted = inp.n_actions  # type: ignore[attr-defined]
        distinct = {json.dumps(a.model_dump(mode="json"), sort_keys=True) for a in out.actions}  # type: ignore
        if 0 < len(distinct) < wanted:
            self._kept.output = out
            raise ReplyError(f"the reply proposes {len(distinct)} action(s); propose {wanted} different ones")
        return out

    def __call__(self, inp: BaseModel) -> ModuleResult:
        self._kept.output = None
        result = super().__call__(inp)
        if not result.ok and self._kept.output is not None:  # every re-ask failed: the short proposal stands
            result.record.failed, result.record.error = False, None
            return ModuleResult(output=self._kept.output, record=result.record)
        return result


class OracleActor(OracleModule):
    """The B legal actions whose successors are nearest the goal (ties keep the task's action order)."""

    name = "Actor"

    def compute(self, inp: ActorInput):
        task, problem = self.task, self.problem
        legal = task.legal_actions(inp.state, problem)
        ranked = sorted(legal, key=lambda a: task.distance(task.apply(inp.state, a, problem), inp.goal, problem))
        return self.output_model(actions=ranked[: inp.n_actions])
