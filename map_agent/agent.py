"""``MAPAgent``: the Python API. One problem in, a scored plan out.

>>> from map_agent import MAPAgent
>>> from map_agent.tasks import hanoi
>>> result = MAPAgent(hanoi.problem(7), backend="oracle").plan()
>>> result.solved, result.invalid_moves, len(result.actions)
(True, 0, 5)
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from langchain_core.caches import BaseCache
from langchain_core.language_models import BaseChatModel
from langgraph.checkpoint.memory import InMemorySaver
from pydantic import BaseModel, ConfigDict, Field

from map_agent.config import MAPConfig, Resolved
from map_agent.graph.build import build_graph
from map_agent.learned.adapters import ADAPTERS, adapter_config
from map_agent.llm.cache import open_cache
from map_agent.modules import CallRecord, Module, build_modules
from map_agent.search.plan import OUTCOMES, STUCK_ON_REJECTION, Progress, Step, unused_calls
from map_agent.task import Execution, Problem, Task, get_task


class ModuleUsage(BaseModel):
    """What one module cost over a run."""

    calls: int = 0  # module invocations
    model_calls: int = 0  # requests actually sent to a model, parse retries included (a cache hit is none)
    cache_hits: int = 0  # replies served from the prompt cache, parse retries included
    input_tokens: int = 0
    output_tokens: int = 0
    failures: int = 0
    seconds: float = 0.0
    model_seconds: float = 0.0
    #: calls asked ahead of the answer they hung on, whose result the plan then never read (``--speculative-predict``'s
    #: Predictor calls on rejected actions; ``search.plan.unused_calls``); counted in ``calls`` too
    unused: int = 0


class Usage(BaseModel):
    """Per-module and total cost of a run (tokens are only those actually sent to a model: hits cost none)."""

    modules: dict[str, ModuleUsage] = Field(default_factory=dict)
    total: ModuleUsage = Field(default_factory=ModuleUsage)

    @classmethod
    def from_records(cls, records: list[CallRecord], unused: dict[str, int] | None = None) -> Usage:
        usage = cls()
        for module, n in (unused or {}).items():
            usage.modules.setdefault(module, ModuleUsage()).unused += n
            usage.total.unused += n
        for r in records:
            for u in (usage.modules.setdefault(r.module, ModuleUsage()), usage.total):
                u.calls += 1
                u.model_calls += r.model_calls
                u.cache_hits += r.cache_hits
                u.input_tokens += r.input_tokens
                u.output_tokens += r.output_tokens
                u.failures += int(r.failed)
                u.seconds += r.seconds
                u.model_seconds += r.model_seconds
        return usage


class ScoredPlan(BaseModel):
    """A finished run of any method (MAP or a baseline), scored by the environment: what every record holds."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    task: str
    problem_id: str
    actions: list[Any]  # the task's Action models
    solved: bool  # the paper's "% solved": goal reached within N with zero invalid moves
    goal_reached: bool
    invalid_moves: int
    status: str  # why planning stopped (the method's own vocabulary)
    outcome: str
    execution: Execution
    metrics: dict[str, float | bool] = Field(default_factory=dict)  # Task.paper_metrics: the original's scores
    usage: Usage
    failures: list[CallRecord]  # calls that failed (unparseable replies, network errors)
    #: every module call (``modules.base.ModuleCall``): module, impl, input, output, failure, raw replies
    calls: list[dict[str, Any]] = Field(default_factory=list)
    phases: list[dict[str, Any]] = Field(default_factory=list)  # earlier phases' records (Task.phases)
    thread_id: str
    wall_seconds: float

    def record(self) -> dict[str, Any]:
        """The JSON record an evaluation appends to ``records.jsonl``."""
        data = self.model_dump(mode="json", exclude={"actions"})
        data["plan"] = [a.model_dump(mode="json") for a in self.actions]
        return data


class PlanResult(ScoredPlan):
    """A finished MAP run, scored by the environment (not by the Orchestrator); ``status`` is goal | budget |
    stuck."""

    subgoals: list[dict[str, Any]]
    steps: list[Step]
    config: Resolved


class MAPAgent:
    """Plan one problem with MAP.

    ``llm`` is any LangChain chat model; otherwise ``backend`` builds one ("local": the embedded SmolLM2,
    "openai": any OpenAI-compatible endpoint) or selects the symbolic oracles ("oracle"). Every chat-model call
    goes through the diskcache prompt cache (``cache``: a directory, a ``BaseCache``, ``None`` for the default
    directory, or ``False``). ``checkpointer`` (default: in memory) makes the run inspectable and resumable by
    ``thread_id`` through ``agent.graph``: a given one keeps every superstep; the default one, which dies with the
    process anyway, is written by ``plan`` only when the run ends or is interrupted (``stream`` writes every
    superstep, for a caller that stops reading part-way). A fine-tuned adapter plugs in as
    ``lora="adapter.gguf"`` (local backend), or by the name of a shipped one, ``model="map-hanoi"``, which also
    selects the short prompts it was trained on (``MAPConfig(prompts="ft")``).
    """

    def __init__(self, problem: Problem, *, llm: BaseChatModel | None = None, backend: str = "local",
                 model: str | None = None, config: MAPConfig | None = None,
                 cache: BaseCache | str | Path | bool | None = None, checkpointer: Any = None,
                 **backend_options: Any) -> None:
        self.problem = problem
        self.task: Task = get_task(problem.task)
        self.phases = self.task.phases(problem)
        if "lora" in backend_options:  # the short name of the local backend's ``lora_path``
            backend_options["lora_path"] = backend_options.pop("lora")
        config = config or MAPConfig()
        if llm is None and backend == "local" and model in ADAPTERS:
            config = adapter_config(model, config)  # a shipped adapter learnt the short prompts
        config = config.for_backend("llm" if llm is not None else backend, self.task)
        self.config: Resolved = config.resolve(self.task, problem)
        #: a model this agent built is checked before its first plan (``prepare``); a model given as ``llm=`` is
        #: the caller's, who may have checked it once for many agents (as an evaluation does)
        self._unprepared = llm is None and "llm" in self.config.modules.values()
        if self._unprepared:
            from map_agent.llm import make_chat_model  # the OpenAI SDK and llama.cpp: not for an oracle run

            llm = make_chat_model(backend, model, cache=_as_cache(cache), **backend_options)
        elif llm is not None and llm.cache is None and cache is not False:
            llm.cache = _as_cache(cache)
        self.llm = llm
        self.graph = compiled_for(self.llm).copy(update={"checkpointer": checkpointer or InMemorySaver()})
        #: LangGraph's durability for ``plan``: None (every superstep) for a checkpointer the caller gave
        self._plan_durability = None if checkpointer is not None else "exit"

    def prepare(self) -> None:
        """Check the model before the first module call (``map_agent.llm.preflight.prepare_model``): the endpoint
        answers, the schema form it takes, and every module's prompt fits its context window; a broken setup
        raises ``SetupError`` in one line instead of failing every call. ``stream`` and ``plan`` call it."""
        if self.llm is not None:
            from map_agent.llm.preflight import prepare_model

            prepare_model(self.llm, self.task, self.problem, self.config)
        self._unprepared = False

    def stream(self, thread_id: str | None = None, *,
               max_concurrency: int | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """Run the plan, yielding ``(node, update)`` as each module call and controller step lands.

        A task with several phases (``Task.phases``) runs them in sequence, each on its own thread
        (``<thread_id>/<k>``), the next phase seeing the previous one's transcript. ``max_concurrency`` bounds the
        module calls in flight at once (LangGraph's run-config key; 1: one at a time); default: every call a
        superstep fans out (``Resolved.fan_out``)."""
        yield from self._stream(thread_id or uuid.uuid4().hex, max_concurrency, None)

    def _stream(self, thread_id: str, max_concurrency: int | None,
                durability: str | None) -> Iterator[tuple[str, dict[str, Any]]]:
        if self._unprepared:
            self.prepare()
        for k in range(len(self.phases)):
            yield from self._stream_phase(self._phase_problem(thread_id, k), self._thread(thread_id, k),
                                          max_concurrency, durability)

    def _stream_phase(self, problem: Problem, thread_id: str, max_concurrency: int | None,
                      durability: str | None) -> Iterator[tuple[str, dict[str, Any]]]:
        cfg = self._run_config(thread_id)
        existing = self.graph.get_state(cfg)
        if not existing.values:
            inputs: dict[str, Any] | None = {"problem": problem.model_dump(mode="json"),
                                             "config": self.config.model_dump(mode="json")}
        elif existing.next or existing.tasks:
            inputs = None  # an interrupted thread: resume from its last checkpoint, keeping finished calls
        else:
            return  # this thread has finished already
        cfg["max_concurrency"] = max_concurrency or self.config.fan_out()
        options = {"durability": durability} if durability else {}
        for chunk in self.graph.stream(inputs, cfg, stream_mode="updates", **options):
            for node, update in chunk.items():
                yield node, update or {}

    def plan(self, thread_id: str | None = None, *, max_concurrency: int | None = None) -> PlanResult:
        """Run (or resume, for a ``thread_id`` whose run was interrupted) and score the plan; ``max_concurrency``
        as in ``stream``."""
        thread_id = thread_id or uuid.uuid4().hex
        started = time.perf_counter()
        for _ in self._stream(thread_id, max_concurrency, self._plan_durability):
            pass
        return self.result(thread_id, wall_seconds=time.perf_counter() - started)

    def result(self, thread_id: str, wall_seconds: float = 0.0) -> PlanResult:
        """Score the state a thread ended in (for several phases: the last phase, the earlier ones attached)."""
        results = [self._phase_result(self._phase_problem(thread_id, k), self._thread(thread_id, k))
                   for k in range(len(self.phases))]
        last = results[-1]
        records = [r for res in results for r in res[1]]
        unused: dict[str, int] = {}
        for res in results:
            for module, u in res[0].usage.modules.items():
                unused[module] = unused.get(module, 0) + u.unused
        return last[0].model_copy(update={
            "thread_id": thread_id, "wall_seconds": wall_seconds, "usage": Usage.from_records(records, unused),
            "failures": [r for r in records if r.failed], "phases": [res[0].record() for res in results[:-1]]})

    def _phase_result(self, problem: Problem, thread_id: str) -> tuple[PlanResult, list[CallRecord]]:
        values = self.graph.get_state(self._run_config(thread_id)).values
        progress = Progress.model_validate(values.get("progress") or {})
        records = [CallRecord.model_validate(r) for r in values.get("usage") or []]
        actions = [self.task.Action.model_validate(a) for a in progress.plan]
        execution = self.task.execute(problem, actions)
        predicted = [step.choice.chosen.predicted for step in progress.steps if step.choice.chosen]
        goals = progress.goals or []
        outcome = OUTCOMES.get(progress.status, "interrupted")
        if progress.status == "stuck" and self.config.on_all_rejected == "stop":
            outcome = STUCK_ON_REJECTION
        return PlanResult(
            task=self.task.name, problem_id=problem.id, actions=actions, solved=execution.solved,
            goal_reached=execution.goal_reached, invalid_moves=execution.n_invalid, status=progress.status,
            outcome=outcome, subgoals=goals[:-1], steps=progress.steps,
            execution=execution, metrics=self.task.paper_metrics(problem, execution, predicted),
            usage=Usage.from_records(records, unused_calls(self.task, problem, self.config, values)),
            failures=[r for r in records if r.failed],
            calls=values.get("calls") or [], config=self.config, thread_id=thread_id, wall_seconds=0.0,
        ), records

    def _phase_problem(self, thread_id: str, k: int) -> Problem:
        """Phase ``k`` as its model sees it: from the second phase on, with the previous phase's transcript."""
        if k == 0:
            return self.phases[0]
        previous = self._phase_problem(thread_id, k - 1)
        values = self.graph.get_state(self._run_config(self._thread(thread_id, k - 1))).values
        steps = Progress.model_validate(values.get("progress") or {}).steps
        chosen = [s.choice.chosen for s in steps if s.choice.chosen]
        history = self.task.transcript(previous, [self.task.Action.model_validate(c.action) for c in chosen],
                                       [self.task.State.model_validate(c.predicted) for c in chosen])
        phase = self.phases[k]
        return phase.model_copy(update={"info": {**phase.info, "history": history}})

    @staticmethod
    def _thread(thread_id: str, k: int) -> str:
        return thread_id if k == 0 else f"{thread_id}/{k}"

    def _run_config(self, thread_id: str) -> dict[str, Any]:
        return {"configurable": {"thread_id": thread_id}, "recursion_limit": self.config.recursion_limit()}


def _as_cache(cache: BaseCache | str | Path | bool | None) -> BaseCache | bool:
    return open_cache(cache)  # a directory, a redis:// URL, $MAP_AGENT_CACHE_URL, or the default directory


#: the MAP graphs compiled for the latest chat models: id -> (model, graph)
_COMPILED: OrderedDict[int, tuple[BaseChatModel | None, Any]] = OrderedDict()
_COMPILED_LOCK = threading.Lock()
#: chat models whose compiled graph is kept: a graph holds its model (an embedded one holds its weights and
#: contexts), so only the latest two outlive their agents; an evaluation uses one
COMPILED_KEPT = 2


def compiled_for(llm: BaseChatModel | None) -> Any:
    """The MAP graph of ``llm``'s modules, compiled once for every agent of that model (an evaluation makes one
    agent per problem and run): compiling costs some 5 ms of CPU, and the graph's module provider then reads each
    prompt once. An agent takes a copy with its own checkpointer (``Pregel.copy``, tens of microseconds)."""
    with _COMPILED_LOCK:
        entry = _COMPILED.get(id(llm))
        if entry is None or entry[0] is not llm:
            entry = _COMPILED[id(llm)] = (llm, build_graph(module_provider(llm)))
            while len(_COMPILED) > COMPILED_KEPT:
                _COMPILED.popitem(last=False)
        _COMPILED.move_to_end(id(llm))
        return entry[1]


def module_provider(llm: BaseChatModel | Callable[[], BaseChatModel] | None):
    """Modules per (problem, config), built once: prompts are read and examples validated a single time.

    ``llm`` may be a zero-argument factory: the model is then built on the first module that needs one (a served
    graph loads no model until a run asks for it, and never inside the server's event loop).
    """
    lock = threading.Lock()
    built: list[BaseChatModel] = []

    def chat_model() -> BaseChatModel | None:
        if llm is None or isinstance(llm, BaseChatModel):
            return llm
        with lock:
            if not built:
                built.append(llm())
        return built[0]

    @lru_cache(maxsize=64)
    def modules(task_name: str, problem_json: str, config_json: str) -> dict[str, Module]:
        problem = Problem.model_validate_json(problem_json)
        config = Resolved.model_validate_json(config_json)
        needs_llm = "llm" in config.modules.values()
        return build_modules(get_task(task_name), problem, config, chat_model() if needs_llm else None)

    return lambda task, problem, config: modules(task.name, problem.model_dump_json(), config.model_dump_json())
