"""Typed signatures of the six MAP modules (the paper's equations 3-8).

Inputs hold the task's own pydantic values; outputs are generic over the task's ``State``/``Action``/``Goal`` so
that one schema both instructs the model (JSON schema in the prompt, grammar for the local model) and parses its
reply. ``outputs_for(task)`` gives the concrete output classes of a task.
"""

from __future__ import annotations

from functools import cache
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny

S = TypeVar("S", bound=BaseModel)
A = TypeVar("A", bound=BaseModel)
G = TypeVar("G", bound=BaseModel)


class _In(BaseModel):
    model_config = ConfigDict(frozen=True)


class TaskDecomposerInput(_In):
    """TaskDecomposer(s0, s_goal) -> S_Z (eq. 3)."""

    state: SerializeAsAny[BaseModel]
    goal: SerializeAsAny[BaseModel]
    n_subgoals: int = Field(ge=1)


class ActorInput(_In):
    """Actor(s_t, s_zk, eps) -> {a_1..a_B} (eq. 4); ``feedback`` is the Monitor's eps from earlier rounds."""

    state: SerializeAsAny[BaseModel]
    goal: SerializeAsAny[BaseModel]
    n_actions: int = Field(ge=1)
    feedback: tuple[str, ...] = ()
    sample: int = Field(default=0, ge=0, description="resample index: a new round gets a new sample")


class MonitorInput(_In):
    """Monitor(s_t, a) -> (sigma, eps) (eq. 5)."""

    state: SerializeAsAny[BaseModel]
    action: SerializeAsAny[BaseModel]


class PredictorInput(_In):
    """Predictor(s_t, a) -> s~_{t+1} (eq. 6)."""

    state: SerializeAsAny[BaseModel]
    action: SerializeAsAny[BaseModel]


class EvaluatorInput(_In):
    """Evaluator(s~, s_goal) -> v >= 0 (eq. 7): the fewest actions still needed."""

    state: SerializeAsAny[BaseModel]
    goal: SerializeAsAny[BaseModel]


class OrchestratorInput(_In):
    """Orchestrator(s_t, s_zk) -> Omega (eq. 8)."""

    state: SerializeAsAny[BaseModel]
    goal: SerializeAsAny[BaseModel]


class TaskDecomposerOutput(BaseModel, Generic[G]):
    reasoning: str = Field(max_length=1200, description="why these subgoals lead to the goal")
    subgoals: list[G] = Field(min_length=1, max_length=4)


class ActorOutput(BaseModel, Generic[A]):
    actions: list[A] = Field(min_length=1, max_length=4)


class MonitorOutput(BaseModel):
    valid: bool
    feedback: str = Field(default="", max_length=400, description="which rule the action breaks, if any")


class PredictorOutput(BaseModel, Generic[S]):
    next_state: S


#: the Evaluator's largest answer; also what an unreachable goal scores
MAX_STEPS = 100


class EvaluatorOutput(BaseModel):
    steps_to_goal: int = Field(ge=0, le=MAX_STEPS, description="fewest actions needed to reach the goal")


class OrchestratorOutput(BaseModel):
    achieved: bool


INPUTS: dict[str, type[BaseModel]] = {
    "TaskDecomposer": TaskDecomposerInput,
    "Actor": ActorInput,
    "Monitor": MonitorInput,
    "Predictor": PredictorInput,
    "Evaluator": EvaluatorInput,
    "Orchestrator": OrchestratorInput,
}


@cache
def output_model(module: str, state: type[BaseModel], action: type[BaseModel],
                 goal: type[BaseModel]) -> type[BaseModel]:
    """The concrete output class of ``module`` for a task's types (cached so schemas are built once)."""
    return {
        "TaskDecomposer": TaskDecomposerOutput[goal],  # type: ignore[valid-type]
        "Actor": ActorOutput[action],  # type: ignore[valid-type]
        "Monitor": MonitorOutput,
        "Predictor": PredictorOutput[state],  # type: ignore[valid-type]
        "Evaluator": EvaluatorOutput,
        "Orchestrator": OrchestratorOutput,
    }[module]


def outputs_for(task) -> dict[str, type[BaseModel]]:
    """Output classes of every module for ``task``."""
    return {m: output_model(m, task.State, task.Action, task.Goal) for m in INPUTS}
