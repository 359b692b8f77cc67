"""Run configuration: frozen, explicit, passed in (never read from globals at import time).

The paper's ablations are one field each: ``modules={"Monitor": "off"}`` (no Monitor),
``modules={"TaskDecomposer": "off"}`` (no TaskDecomposer), ``search=False`` (no tree search) and
``n_subgoals=2`` (two subgoals).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from map_agent.task import MODULES, Problem, Task

Impl = Literal["llm", "oracle", "off"]


class MAPConfig(BaseModel):
    """Everything that shapes a MAP run, with the paper's defaults (B = 2, L = 2, temperature 0 but the Actor)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    branches: int = Field(default=2, ge=1, le=4, description="B: actions proposed and searched per state")
    layers: int = Field(default=2, ge=1, le=4, description="L: depth of the tree search")
    max_actions: int | None = Field(default=None, ge=1, description="N; None takes the problem's")
    monitor_retries: int = Field(default=3, ge=0, description="extra Actor rounds after Monitor rejections")
    parse_retries: int = Field(default=2, ge=0, description="re-asks after a reply that does not parse")
    modules: dict[str, Impl] = Field(default_factory=dict, description="per-module override of the task's default")
    search: bool | None = Field(default=None, description="tree search on/off; None takes the task's default")
    n_subgoals: int | None = Field(default=None, ge=1, le=4, description="TaskDecomposer subgoals (K)")
    actor_temperature: float = Field(default=0.7, ge=0, le=2,
                                     description="the Actor samples (the paper's other modules run at 0)")
    examples: bool = Field(default=True, description="include the in-context examples in module prompts")
    seed: int = Field(default=0, ge=0, description="run index: repeated runs sample the Actor differently")

    @model_validator(mode="after")
    def _known_modules(self) -> MAPConfig:
        unknown = set(self.modules) - set(MODULES)
        if unknown:
            raise ValueError(f"modules: unknown module(s) {sorted(unknown)}; known: {list(MODULES)}")
        return self

    def for_backend(self, backend: str, task: Task) -> MAPConfig:
        """With the "oracle" backend every module that is not off runs as its symbolic oracle."""
        if backend != "oracle":
            return self
        modules = {m: "off" if self.modules.get(m, task.default_modules.get(m)) == "off" else "oracle"
                   for m in MODULES}
        return self.model_copy(update={"modules": modules})

    def resolve(self, task: Task, problem: Problem) -> Resolved:
        """Fill every default from the task and the problem, and check the combination makes sense."""
        impls = {m: self.modules.get(m, task.default_modules.get(m, "llm")) for m in MODULES}
        search = self.search if self.search is not None else problem.info.get("search", task.default_search)
        if impls["Actor"] == "off":
            raise ValueError("modules.Actor: the Actor proposes every action and cannot be 'off'")
        if search and impls["Evaluator"] == "off":
            raise ValueError("modules.Evaluator: tree search scores its leaves with the Evaluator; "
                             "turn search off or the Evaluator on")
        return Resolved(
            branches=self.branches if search else 1,
            layers=self.layers if search else 1,
            max_actions=self.max_actions or problem.max_actions,
            monitor_retries=self.monitor_retries,
            parse_retries=self.parse_retries,
            modules=impls,
            search=bool(search),
            n_subgoals=self.n_subgoals or task.default_subgoals,
            actor_temperature=self.actor_temperature,
            examples=self.examples,
            seed=self.seed,
        )


class Resolved(BaseModel):
    """A configuration with nothing left to defaults: what a run actually used (stored with its records)."""

    model_config = ConfigDict(frozen=True)

    branches: int
    layers: int
    max_actions: int
    monitor_retries: int
    parse_retries: int
    modules: dict[str, Impl]
    search: bool
    n_subgoals: int
    actor_temperature: float
    examples: bool
    seed: int

    def actor_sample(self, round_: int) -> int:
        """The Actor's sample index for a ProposeAction round: distinct per round and per run (``seed``)."""
        return self.seed * (1 + self.monitor_retries) + round_

    def recursion_limit(self) -> int:
        """LangGraph supersteps a plan can need, derived from N, B, L and the retry bounds.

        Each planning step costs, per search layer, at most (1 + monitor_retries) Actor/Monitor rounds plus a
        Predictor and an Orchestrator round, then one Evaluator round and the root Orchestrator; every module
        superstep is followed by one controller superstep. Subgoals add a root Orchestrator check each.
        """
        per_layer = 2 * (1 + self.monitor_retries) + 2
        per_step = self.layers * per_layer + 2
        steps = self.max_actions + self.n_subgoals + 2
        return 2 * steps * per_step + 16
