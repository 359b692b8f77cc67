"""Run configuration: frozen, explicit, passed in (never read from globals at import time).

The defaults are the original MAP code's protocol (``toh/gpt4_map_toh.py``): every module at temperature 0 and
top-p 0, ten Monitor rounds of ten parse attempts each, the last proposal executed when all are rejected, a
seeded random Evaluator value for a reply that does not parse, seeded random ties. Everything this project does
differently is a named field (``DEVIATIONS`` lists them, with the reason, for the README and the records).

The paper's ablations are one field each: ``modules={"Monitor": "off"}`` (no Monitor),
``modules={"TaskDecomposer": "off"}`` (no TaskDecomposer), ``search=False`` (no tree search) and
``n_subgoals=2`` (two subgoals).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from map_agent.task import MODULES, Problem, Task

Impl = Literal["llm", "oracle", "off", "learned"]
#: modules with a learned implementation ("learned": ``map_agent.learned.critic``, trained per task)
LEARNED_MODULES = ("Evaluator",)

#: A deviation from the original code: field -> (the original's value, our alternative, why one would use it).
DEVIATIONS: dict[str, tuple[Any, Any, str]] = {
    "on_all_rejected": ("execute_last", "stop", "stop planning (status 'stuck') instead of executing an action the "
                        "Monitor rejected: fewer invalid moves, fewer plans that reach the goal"),
    "evaluator_fallback": ("random", "unreachable", "score a branch whose Evaluator reply did not parse as "
                           "unreachable instead of a random distance"),
    "tie_break": ("random", "first", "take the first of equally valued branches: deterministic runs"),
    "single_valid": ("duplicate", "single", "search one branch instead of two copies of the only valid action "
                     "(same choice, half the Evaluator calls)"),
    "final_goal_first": (True, False, "check only the pursued (sub)goal: one Orchestrator call per step instead "
                         "of two"),
    "actor_history": (True, False, "the Actor sees only the current state, not the moves and predicted states so "
                      "far: shorter prompts"),
    "reasoning": (True, False, "verdict-only JSON from Monitor, Evaluator and TaskDecomposer: fewer output tokens, "
                  "no reasoning before the verdict"),
    "actor_temperature": (0.0, 0.7, "the Actor samples: repeated runs explore different actions"),
    "early_termination": (False, True, "inside the search, take a child or grandchild the Orchestrator declares at "
                          "the goal at once (the original asks it about the children only and lets the Evaluator "
                          "still choose): fewer Evaluator calls, and no Evaluator noise once the goal is in sight"),
    "parse_reask": ("actor", "all", "re-ask every module, not only the Actor, after a reply that does not parse "
                    "(parse_retries times, the error fed back); a Monitor reply that still fails rejects the action "
                    "instead of being read as valid unless it says invalid, an Evaluator's draws the random value "
                    "only then"),
    "reply_budget": ("original", "model", "every module reply gets the chat model's budget (`--max-tokens`, 512 "
                     "by default) instead of the original script's per module (`modules/base.py` REPLY_BUDGETS, "
                     "200-2,000 tokens): one budget for a model that needs more room, or less, than GPT-4 did"),
    "prompt_hints": (False, True, "this project's additions to the module prompts (marked `[[hint: ...]]` in "
                     "`prompts/`): StrategyQA's worked decomposition example and 'do not restate the main question', "
                     "CogEval's chest-room hints to Actor and Evaluator, Hanoi's extra Rule 2, Predictor and "
                     "Orchestrator rules: help for weaker models, absent from the original's prompts"),
    "transfer_examples": ("plans", "worked", "in a transfer split (Mystery Blocksworld from Blocksworld), the "
                          "Actor's examples show every move with the facts it requires and the state it leads to "
                          "(this project's worked form, the original's CoT examples) instead of the original's bare "
                          "action lists"),
    "critic": ("off", "learned", "the Actor proposes again after a learned goal-conditioned critic names which of "
               "its proposals look good or bad (Planning without Search): one more Actor call per round"),
    "actor_grammar": ("static", "legal_source", "the Actor's reply grammar is computed from the current state so "
                      "it can only write actions the task deems well-sourced (Hanoi: the top number of a non-empty "
                      "list, moved to another list): fewer impossible proposals from a model that cannot read the "
                      "state, while the Monitor still judges the target"),
    "predictor_grammar": ("static", "configurations", "the Predictor's reply grammar admits only well-formed states "
                          "of the current state's objects (Hanoi: each of its numbers on exactly one list, every "
                          "list increasing): no lost, duplicated or invented numbers in a prediction"),
    "revisit": (True, False, "Search never commits an action whose predicted state the plan has already visited "
                "while another branch leads elsewhere: no back-and-forth loops"),
    "speculative_predict": (False, True, "ask the Predictor for a proposed action's next state beside the Monitor's "
                            "check of it, not after a valid verdict: one LangGraph superstep less per search layer "
                            "(faster against a slow model), one Predictor call more per rejected action (counted as "
                            "unused); the same plans"),
    "speculative_orchestrator": (False, True, "ask the Orchestrator checks that follow a final-goal 'not yet' (the "
                                 "subgoal's, or the children's in search) beside the final-goal check, not after "
                                 "it: one superstep less per step; a few Orchestrator calls more, once, when the final "
                                 "goal is declared while a subgoal is pursued (counted as unused); the same plans"),
}

#: module -> the field naming its state-dependent reply grammar ("static": the module's own output schema)
GRAMMARS = {"Actor": "actor_grammar", "Predictor": "predictor_grammar"}

#: The errors ``map-agent sensitivity`` injects into an oracle module (``map_agent.modules.corrupted`` makes them):
#: kind -> (the modules it applies to, what a corrupted answer is). Every kind but ``noisy_value`` corrupts a share
#: RATE of the module's calls; ``noisy_value`` perturbs every call, RATE being the noise's sigma in moves.
ERROR_KINDS: dict[str, tuple[tuple[str, ...], str]] = {
    "wrong_state": (("Predictor",), "a state one or two moves away, not the true successor"),
    "copied_state": (("Predictor",), "the input state, copied, not moved"),
    "flipped": (("Monitor", "Orchestrator"), "the verdict inverted"),
    "repeated_wrong_move": (("Actor",), "moves the environment rejects, the same ones in every Monitor round of "
                                        "the step (the feedback changes nothing)"),
    "fresh_wrong_move": (("Actor",), "moves the environment rejects, drawn anew in every Monitor round"),
    "legal_detour": (("Actor",), "legal moves that are not on a shortest path"),
    "noisy_value": (("Evaluator",), "the distance plus Gaussian noise of sigma RATE moves, rounded, on every call"),
    "random_value": (("Evaluator",), "a wrong value drawn uniformly from the task's fallback range"),
    "impossible_subgoal": (("TaskDecomposer",), "a subgoal no reachable state satisfies"),
    "random_subgoal": (("TaskDecomposer",), "reachable states drawn at random"),
}


class Corruption(BaseModel):
    """An error injected into one oracle module: its kind (``ERROR_KINDS``) and rate. Whether a call is corrupted
    is a function of the call's input, the run index and ``seed``, as a temperature-0 model's errors are."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    module: str
    kind: str
    rate: float = Field(ge=0, le=100, description="share of calls corrupted (0-1); noisy_value: sigma in moves")
    seed: int = Field(default=0, ge=0, description="another seed draws other calls and other wrong answers")

    @model_validator(mode="after")
    def _applies(self) -> Corruption:
        if self.module not in MODULES:
            raise ValueError(f"no module {self.module!r}; modules: {', '.join(MODULES)}")
        kinds = [k for k, (modules, _) in ERROR_KINDS.items() if self.module in modules]
        if self.kind not in kinds:
            raise ValueError(f"{self.module} errors are {', '.join(kinds)}, not {self.kind!r}")
        if self.kind != "noisy_value" and self.rate > 1:
            raise ValueError(f"rate {self.rate:g}: a share of calls, 0 to 1")
        return self

    @classmethod
    def parse(cls, text: str, seed: int = 0) -> Corruption:
        """``MODULE:KIND:RATE`` (``Actor:fresh_wrong_move:0.1``), as the command line writes it; a malformed one
        raises ``ValueError`` in one line."""
        module, _, rest = text.partition(":")
        kind, _, rate = rest.partition(":")
        try:
            return cls(module=module, kind=kind, rate=float(rate), seed=seed)
        except ValueError as e:  # a rate that is no number, or a validation error: its first message
            reason = e.errors()[0]["msg"].removeprefix("Value error, ") if isinstance(e, ValidationError) else ""
            raise ValueError(f"{text!r}: expected MODULE:KIND:RATE, e.g. Predictor:wrong_state:0.1"
                             + (f" ({reason})" if reason else "")) from None


class MAPConfig(BaseModel):
    """Everything that shapes a MAP run, with the paper's defaults (B = 2, L = 2, temperature 0 but the Actor)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    branches: int = Field(default=2, ge=1, le=4, description="B: actions proposed and searched per state")
    layers: int = Field(default=2, ge=1, le=4, description="L: depth of the tree search")
    max_actions: int | None = Field(default=None, ge=1, le=1000, description="N; None takes the problem's")
    monitor_retries: int = Field(default=9, ge=0, le=20,
                                 description="extra Actor rounds after Monitor rejections (the original: 10 rounds)")
    parse_retries: int = Field(default=9, ge=0, le=20,
                               description="re-asks after a reply that does not parse (the original: 10 attempts)")
    modules: dict[str, Impl] = Field(default_factory=dict, description="per-module override of the task's default")
    search: bool | None = Field(default=None, description="tree search on/off; None takes the task's default")
    n_subgoals: int | None = Field(default=None, ge=1, le=4, description="TaskDecomposer subgoals (K)")
    actor_temperature: float = Field(default=0.0, ge=0, le=2, description="the Actor's temperature (original: 0)")
    retry_temperature_step: float = Field(default=0.1, ge=0, le=1,
                                          description="the Actor's temperature rises by this per parse retry")
    top_p: float | None = Field(default=0.0, ge=0, le=1, description="top-p of every module (original: 0)")
    examples: bool = Field(default=True, description="include the in-context examples in module prompts")
    prompts: Literal["paper", "ft"] = Field(
        default="paper", description="'ft': the short prompts of fine-tuned models (<module>.ft.md, no in-context "
                                     "examples), as `map-agent distill` writes its data")
    seed: int = Field(default=0, ge=0, le=10_000,
                      description="run index: part of every module call's cache key and RNG")
    on_all_rejected: Literal["execute_last", "stop"] = Field(
        default="execute_last", description="when the Monitor rejects every proposal: execute the last one, or stop")
    evaluator_fallback: Literal["random", "unreachable"] = Field(
        default="random", description="value of a branch whose Evaluator reply does not parse")
    tie_break: Literal["random", "first"] = Field(default="random", description="among equally valued branches")
    single_valid: Literal["duplicate", "single"] = Field(
        default="duplicate", description="one valid action: searched in every branch, or alone")
    final_goal_first: bool = Field(default=True,
                                   description="the Orchestrator checks the final goal before the subgoal each step")
    actor_history: bool = Field(default=True, description="the Actor's prompt carries the moves and states so far")
    reasoning: bool = Field(default=True,
                            description="Monitor, Evaluator and TaskDecomposer reason before their verdict")
    critic: Literal["off", "learned"] = Field(
        default="off", description="'learned': the task's learned critic comments on the Actor's draft proposals")
    parse_reask: Literal["actor", "all"] = Field(
        default="actor", description="modules re-asked after a reply that does not parse (the original: the Actor "
                                     "only; a Monitor reply is then valid unless its last line says invalid, an "
                                     "Evaluator's is the random value)")
    early_termination: bool = Field(
        default=False, description="search takes a state the Orchestrator declares at the goal without the Evaluator "
                                   "(the original: the Orchestrator checks the children only, the Evaluator decides)")
    reply_budget: Literal["original", "model"] = Field(
        default="original", description="each module's reply budget: the original script's per module, or the chat "
                                        "model's max_tokens for all")
    prompt_hints: bool = Field(
        default=False, description="include this project's prompt additions ([[hint: ...]] in prompts/); the "
                                   "original's prompts have none")
    transfer_examples: Literal["plans", "worked"] = Field(
        default="plans", description="how a transfer split's examples from another problem read in the Actor's "
                                     "prompt: bare action lists (the original) or worked moves with preconditions "
                                     "and states")
    actor_grammar: Literal["static", "legal_source"] = Field(
        default="static", description="the Actor's reply schema: the module's fixed one, or the task's restriction "
                                      "to the current state's well-sourced actions (Task.reply_schema)")
    predictor_grammar: Literal["static", "configurations"] = Field(
        default="static", description="the Predictor's reply schema: the module's fixed one, or the task's "
                                      "restriction to well-formed states of the current state's objects")
    revisit: bool = Field(default=True, description="Search may commit an action that leads back to a state the "
                                                    "plan has visited (the original); False avoids it when another "
                                                    "branch exists")
    speculative_predict: bool = Field(
        default=False, description="the Predictor is asked for a proposed action's next state beside the Monitor's "
                                   "check of it (the original: once the Monitor accepts it)")
    speculative_orchestrator: bool = Field(
        default=False, description="the Orchestrator checks that follow a final-goal 'not yet' are asked beside the "
                                   "final-goal check (the original: after its answer)")
    corrupt: tuple[Corruption, ...] = Field(
        default=(), description="errors injected into oracle modules at known rates (map-agent sensitivity), one "
                                "per module")

    def deviations(self, task: Task | None = None) -> dict[str, Any]:
        """The named deviations from the original code this configuration turns on (recorded with every run);
        with a task, against that task's original script (``Task.protocol``)."""
        chosen = self.for_task(task) if task is not None else self
        originals = {f: original for f, (original, _, _) in DEVIATIONS.items()} | (task.protocol if task else {})
        return {f: getattr(chosen, f) for f in DEVIATIONS if getattr(chosen, f) != originals[f]}

    def for_task(self, task: Task) -> MAPConfig:
        """The task's original settings (``Task.protocol``) for every field the user left at its default."""
        update = {f: v for f, v in task.protocol.items() if f not in self.model_fields_set}
        return self.model_copy(update=update) if update else self

    @model_validator(mode="after")
    def _known_modules(self) -> MAPConfig:
        unknown = set(self.modules) - set(MODULES)
        if unknown:
            raise ValueError(f"modules: unknown module(s) {sorted(unknown)}; known: {list(MODULES)}")
        unlearned = sorted(m for m, impl in self.modules.items() if impl == "learned" and m not in LEARNED_MODULES)
        if unlearned:
            raise ValueError(f"modules: no learned implementation of {unlearned}; learned: {list(LEARNED_MODULES)}")
        corrupted = [c.module for c in self.corrupt]
        if twice := sorted({m for m in corrupted if corrupted.count(m) > 1}):
            raise ValueError(f"corrupt: one error kind per module ({', '.join(twice)} named twice)")
        return self

    def for_backend(self, backend: str, task: Task) -> MAPConfig:
        """With the "oracle" backend every module that is neither off nor learned runs as its symbolic oracle."""
        if backend != "oracle":
            return self
        modules = {m: impl if (impl := self.modules.get(m, task.default_modules.get(m))) in ("off", "learned")
                   else "oracle" for m in MODULES}
        return self.model_copy(update={"modules": modules})

    def resolve(self, task: Task, problem: Problem) -> Resolved:
        """Fill every default from the task and the problem, and check the combination makes sense. A problem
        whose condition has its own script (``info["protocol"]``, e.g. CogEval transfer: no move history for the
        Actor) sets those fields too, where the user left them at their default."""
        chosen = self.for_task(task)
        protocol = problem.info.get("protocol") or {}
        if update := {f: v for f, v in protocol.items() if f not in self.model_fields_set}:
            chosen = chosen.model_copy(update=update)
        originals = {f: original for f, (original, _, _) in DEVIATIONS.items()} | task.protocol | protocol
        deviations = {f: getattr(chosen, f) for f in DEVIATIONS if getattr(chosen, f) != originals[f]}
        return chosen._resolve(task, problem, deviations)

    def _resolve(self, task: Task, problem: Problem, deviations: dict[str, Any]) -> Resolved:
        impls = {m: self.modules.get(m, task.default_modules.get(m, "llm")) for m in MODULES}
        search = self.search if self.search is not None else problem.info.get("search", task.default_search)
        if impls["Actor"] == "off":
            raise ValueError("modules.Actor: the Actor proposes every action and cannot be 'off'")
        if search and impls["Evaluator"] == "off":
            raise ValueError("modules.Evaluator: tree search scores its leaves with the Evaluator; "
                             "turn search off or the Evaluator on")
        for c in self.corrupt:  # errors are injected into ground truth: the module must run as its oracle
            if impls[c.module] == "off":
                raise ValueError(f"corrupt: the {c.module} is off on {task.name}: it makes no call to corrupt")
            if impls[c.module] != "oracle":
                raise ValueError(f"corrupt: the {c.module} runs as {impls[c.module]!r} on {task.name}; errors are "
                                 "injected into oracle modules only (--backend oracle)")
        for module, field in GRAMMARS.items():  # a grammar the task cannot write fails here, not mid-run
            grammar = getattr(self, field)
            if grammar != "static" and grammar not in task.grammars.get(module, ()):
                offered = ", ".join(task.grammars.get(module, ())) or "none"
                raise ValueError(f"{field}: {task.name} has no {grammar!r} grammar for the {module} "
                                 f"(it offers: {offered})")
        return Resolved(
            branches=self.branches if search else 1,
            layers=self.layers if search else 1,
            max_actions=self.max_actions or problem.max_actions,
            monitor_retries=self.monitor_retries,
            parse_retries=self.parse_retries,
            modules=impls,
            search=bool(search),
            n_subgoals=self.n_subgoals or task.default_subgoals,
            max_subgoals=task.max_subgoals,
            **self.model_dump(include={"actor_temperature", "retry_temperature_step", "top_p", "seed",
                                       "on_all_rejected", "evaluator_fallback", "tie_break", "single_valid",
                                       "final_goal_first", "actor_history", "prompts", "critic",
                                       "early_termination", "parse_reask", "reply_budget", "prompt_hints",
                                       "transfer_examples", "actor_grammar", "predictor_grammar", "revisit",
                                       "speculative_predict", "speculative_orchestrator"}),
            examples=self.examples and self.prompts == "paper",
            reasoning=self.reasoning,
            deviations=deviations,
            corrupt=self.corrupt,
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
    n_subgoals: int | None
    max_subgoals: int = 4  # the task's cap when the model writes as many subgoals as it needs
    actor_temperature: float
    retry_temperature_step: float
    top_p: float | None
    examples: bool
    prompts: Literal["paper", "ft"] = "paper"
    seed: int
    on_all_rejected: Literal["execute_last", "stop"]
    evaluator_fallback: Literal["random", "unreachable"]
    tie_break: Literal["random", "first"]
    single_valid: Literal["duplicate", "single"]
    final_goal_first: bool
    actor_history: bool
    reasoning: bool
    critic: Literal["off", "learned"] = "off"
    early_termination: bool = False
    parse_reask: Literal["actor", "all"] = "actor"
    reply_budget: Literal["original", "model"] = "original"
    prompt_hints: bool = False
    transfer_examples: Literal["plans", "worked"] = "plans"
    actor_grammar: Literal["static", "legal_source"] = "static"
    predictor_grammar: Literal["static", "configurations"] = "static"
    revisit: bool = True
    speculative_predict: bool = False
    speculative_orchestrator: bool = False
    deviations: dict[str, Any] = {}
    corrupt: tuple[Corruption, ...] = ()

    def actor_sample(self, round_: int) -> int:
        """The Actor's sample index for a ProposeAction round: distinct per round and per run (``seed``)."""
        return self.seed * (1 + self.monitor_retries) + round_

    def fan_out(self) -> int:
        """At least as many module calls as one superstep can send out: per search layer d, a Monitor check, a
        Predictor, an Evaluator and an Orchestrator check for each of its B^d actions, plus the root's (a
        TaskDecomposer or Actor and a check). Runs take it as LangGraph's ``max_concurrency``: unset, LangGraph's
        thread pool holds min(32, CPUs + 4) threads -- six on two cores, so a superstep of eight calls made its last
        two wait a whole model round trip. Threads are only started when calls wait for one."""
        return 4 * sum(self.branches ** d for d in range(1, self.layers + 1)) + 2

    def recursion_limit(self) -> int:
        """LangGraph supersteps a plan can need, derived from N, B, L and the retry bounds.

        Each planning step costs, per search layer, at most (1 + monitor_retries) Actor/Monitor rounds (an Actor
        round more with the learned critic) plus a Predictor and an Orchestrator round, then one Evaluator round
        and the root Orchestrator's checks of the final goal and the subgoal; every module superstep is followed by
        one controller superstep. Subgoals (up to the task's cap when the model chooses how many) add a root
        Orchestrator check each.
        """
        actor_rounds = 3 if self.critic == "learned" else 2  # the critic's notes cost one more Actor call
        per_layer = actor_rounds * (1 + self.monitor_retries) + 2
        per_step = self.layers * per_layer + 3
        steps = self.max_actions + (self.n_subgoals or self.max_subgoals) + 2
        return 2 * steps * per_step + 16
