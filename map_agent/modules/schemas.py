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
    n_subgoals: int | None = Field(default=None, ge=1, description="None: as many as the model needs")


class ActorInput(_In):
    """Actor(s_t, s_zk, eps) -> {a_1..a_B} (eq. 4); ``feedback`` is the Monitor's eps from earlier rounds."""

    state: SerializeAsAny[BaseModel]
    goal: SerializeAsAny[BaseModel]
    n_actions: int = Field(ge=1)
    feedback: tuple[str, ...] = ()
    history: tuple[str, ...] = Field(default=(), description="the moves and predicted states so far, in order")
    critique: tuple[str, ...] = Field(default=(), description="a learned critic's notes on draft proposals "
                                                              "(MAPConfig.critic)")
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


#: Outputs come in two forms: with ``reasoning`` written *before* the verdict, as the original modules reason
#: before they answer (the default), and verdict-only (``MAPConfig.reasoning=False``, a named deviation).
#: Field order matters: JSON-schema-constrained decoding writes fields in schema order.
#: the longest reasoning a module reply may carry
REASONING_CHARS = 2000
REASONING = Field(max_length=REASONING_CHARS, description="the step-by-step reasoning that leads to the answer below")


class TaskDecomposerPlan(BaseModel, Generic[G]):
    subgoals: list[G] = Field(min_length=1, max_length=8)


class TaskDecomposerOutput(BaseModel, Generic[G]):
    reasoning: str = REASONING
    subgoals: list[G] = Field(min_length=1, max_length=8)


class ActorOutput(BaseModel, Generic[A]):
    actions: list[A] = Field(min_length=1, max_length=4)


class MonitorVerdict(BaseModel):
    valid: bool
    feedback: str = Field(default="", max_length=400, description="which rule the action breaks, if any")


class MonitorOutput(BaseModel):
    reasoning: str = REASONING
    valid: bool
    feedback: str = Field(default="", max_length=400, description="which rule the action breaks, if any")


class PredictorOutput(BaseModel, Generic[S]):
    next_state: S


class PredictorReasoned(BaseModel, Generic[S]):
    reasoning: str = REASONING
    next_state: S


#: the Evaluator's largest answer; also what an unreachable goal scores
MAX_STEPS = 100


class EvaluatorVerdict(BaseModel):
    steps_to_goal: int = Field(ge=0, le=MAX_STEPS, description="fewest actions needed to reach the goal")


class EvaluatorOutput(BaseModel):
    reasoning: str = REASONING
    steps_to_goal: int = Field(ge=0, le=MAX_STEPS, description="fewest actions needed to reach the goal")


class OrchestratorOutput(BaseModel):
    achieved: bool


class OrchestratorReasoned(BaseModel):
    reasoning: str = REASONING
    achieved: bool


#: the field of each module's reply that holds its answer (the rest is reasoning or a note): what fine-tuning
#: stresses in its loss and compares when it checks that a model fits its training set
ANSWER_FIELDS: dict[str, str] = {"TaskDecomposer": "subgoals", "Actor": "actions", "Monitor": "valid",
                                 "Predictor": "next_state", "Evaluator": "steps_to_goal", "Orchestrator": "achieved"}

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
                 goal: type[BaseModel], reasoning: bool = True) -> type[BaseModel]:
    """The concrete output class of ``module`` for a task's types (cached so schemas are built once); with
    ``reasoning`` the modules that reason in the original write it before their verdict."""
    return {
        "TaskDecomposer": (TaskDecomposerOutput if reasoning else TaskDecomposerPlan)[goal],  # type: ignore
        "Actor": ActorOutput[action],  # type: ignore[valid-type]
        "Monitor": MonitorOutput if reasoning else MonitorVerdict,
        "Predictor": (PredictorReasoned if reasoning else PredictorOutput)[state],  # type: ignore[valid-type]
        "Evaluator": EvaluatorOutput if reasoning else EvaluatorVerdict,
        "Orchestrator": OrchestratorReasoned if reasoning else OrchestratorOutput,
    }[module]


def outputs_for(task, reasoning: bool = True) -> dict[str, type[BaseModel]]:
    """Output classes of every module for ``task`` (reasoning first in the modules that reason in the task's
    original, ``Task.reasoning_modules``)."""
    return {m: output_model(m, task.State, task.Action, task.Goal, reasoning and m in task.reasoning_modules)
            for m in INPUTS}
