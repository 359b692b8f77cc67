"""What every baseline shares: one request to the chat model, the plan-shaped replies, the prompt files.

A baseline asks the model for a whole plan (zero-shot, ICL, CoT, MAD) or drives a search over the model's
proposals (ToT). Every request goes through :class:`BaselineCall`, an ``LLMModule`` whose messages are the
baseline's own: the same retry loop (a reply that does not parse is sent back with the error, ``parse_retries``
times; network errors back off), the same accounting (calls, cache hits, tokens) and the same run metadata, which
scripted test models read. A method sees the public problem only (``Problem.public()``).

Prompt files live in ``prompts/<task>/baselines/``: ``intro.md`` and ``plan.md`` (what a whole-plan request
asks, in the task's words; ``{max_actions}`` renders N where the original named its step limit), ``cot.md`` (the
chain-of-thought request), ``debate.md`` (MAD's follow-up turn), ``examples.json`` and ``cot.examples.json`` (the
original's in-context problems as data: start, goal, steps) and, for tree of thoughts, ``tot_*.md`` with
``tot_propose.examples.json`` and ``tot_judge.examples.json``. A problem's prompt set (``Task.prompt_dir``:
Hanoi's ``icl4``, CogEval's ``steppath``) has its own ``baselines/`` folder holding only the files that differ.

Replies are JSON in the task's own types (``PlanReply``: steps of an action and, if asked, the state after it),
so the plan is parsed, not scraped from free text as the original's evaluation scripts did.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, ConfigDict, Field

from map_agent import files
from map_agent.modules.base import CallRecord, LLMModule, ModuleCall, ModuleResult, apply_hints, schema_line
from map_agent.task import Problem, Task, canonical, transfer_form

S = TypeVar("S", bound=BaseModel)
A = TypeVar("A", bound=BaseModel)


class BaselineConfig(BaseModel):
    """What shapes a baseline run: the method, the run index and the method's settings (the original's unless
    overridden); stored as the record's ``config``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: str
    seed: int = Field(default=0, ge=0, description="run index: part of every request's cache key")
    parse_retries: int = Field(default=9, ge=0, description="re-asks after a reply that does not parse")
    max_actions: int | None = Field(default=None, ge=1, description="N; None takes the problem's")
    settings: dict[str, Any] = Field(default_factory=dict, description="the method's settings (see each method)")


class Request(BaseModel):
    """What one request asks, as data: it travels in the call's metadata, where scripted models read it."""

    model_config = ConfigDict(frozen=True)

    kind: str = Field(description="plan | propose | value | judge | strategy | answer | vote")
    state: dict[str, Any] | None = Field(default=None, description="the state the request is about")
    plan: list[dict[str, Any]] = Field(default_factory=list, description="the moves judged (judge)")
    sample: int = Field(default=0, ge=0, description="sample index: agents, value samples, ToT samples")
    round: int = Field(default=0, ge=0, description="debate round")


# -- replies ------------------------------------------------------------------------------------------------


class PlanStep(BaseModel, Generic[A, S]):
    """One move of a written plan and, when the prompt asks for it, the state it leads to."""

    action: A
    state: S | None = Field(default=None, description="the state after this move")


#: a plan has at least one move: no problem here starts at its goal, and an empty list is how a small
#: grammar-constrained model avoids answering
class PlanReply(BaseModel, Generic[A, S]):
    steps: list[PlanStep[A, S]] = Field(min_length=1, description="the plan, first move first")  # type: ignore


class ReasonedStep(BaseModel, Generic[A, S]):
    """A chain-of-thought step: the reasoning comes before the move it justifies."""

    reasoning: str = Field(description="why this move is valid and useful now")
    action: A
    state: S | None = Field(default=None, description="the state after this move")


class ReasonedPlanReply(BaseModel, Generic[A, S]):
    steps: list[ReasonedStep[A, S]] = Field(min_length=1, description="the plan, first move first")  # type: ignore


class ThoughtPlanReply(BaseModel, Generic[A, S]):
    """Chain of thought reasoned once, then the bare plan: the original's Logistics CoT ("Thoughts:" before the
    plan), about 70 output tokens a step cheaper than reasoning before every move."""

    reasoning: str = Field(description="how to reach the goal, worked out before the plan")
    steps: list[PlanStep[A, S]] = Field(min_length=1, description="the plan, first move first")  # type: ignore


#: how a whole-plan reply reasons: not at all, before every move, or once before the plan
Reasoning = Literal["none", "per_step", "once"]
_REPLIES: dict[str, type[BaseModel]] = {"none": PlanReply, "per_step": ReasonedPlanReply, "once": ThoughtPlanReply}


@cache
def plan_reply(task_name: str, reasoning: Reasoning) -> type[BaseModel]:
    """The reply model of a whole-plan request for a task (cached: JSON schemas are built once)."""
    from map_agent.task import get_task

    task = get_task(task_name)
    return _REPLIES[reasoning][task.Action, task.State]  # type: ignore[index]


class Attempt(BaseModel):
    """What a method returns: the plan (task actions, at most N), its requests' accounting and what it saw."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    actions: list[Any] = Field(default_factory=list)
    records: list[CallRecord] = Field(default_factory=list)
    status: str = Field(default="answered", description="answered | no_plan (every request failed)")
    predicted: list[dict[str, Any]] = Field(default_factory=list,
                                            description="the states the model wrote after each move, if it did")
    detail: dict[str, Any] = Field(default_factory=dict, description="method-specific: replies, candidates")


# -- one request -----------------------------------------------------------------------------------------


class Sampling(BaseModel):
    """Sampling of a method's requests (the original's: temperature 0 and top-p 0 unless it says otherwise) and
    the reply budget, which each method sets per task as the original's script did (``Method.budget``)."""

    model_config = ConfigDict(frozen=True)

    temperature: float = 0.0
    top_p: float | None = 0.0
    max_tokens: int


#: The original scripts' reply budget (``max_tokens``) of one request, per method and task: whole plans 2000
#: tokens (Hanoi, PlanBench, StrategyQA CoT; PlanBench CoT 4000), 1000 on CogEval, and 1000 for every
#: tree-of-thoughts request (``models.gpt``'s default). A smaller cap would cut long plans and count them as
#: planning failures (``summary.json`` counts cut replies apart: ``truncated_replies``).
REPLY_BUDGETS: dict[str, dict[str, int]] = {
    "zero-shot": {"cogeval": 1000},
    "icl": {"cogeval": 1000},
    "cot": {"cogeval": 1000, "mystery_blocksworld": 4000, "logistics": 4000},
    "mad": {"cogeval": 1000},
    "tot": {},
}
DEFAULT_BUDGET = {"tot": 1000}
WHOLE_PLAN_BUDGET = 2000


class BaselineCall(LLMModule):
    """One baseline request through ``LLMModule``'s loop: retries on unparseable replies, network backoff,
    accounting and metadata; only the messages and the reply model are the baseline's.

    ``LLMModule.__init__`` reads a MAP module's prompt files and output schema, which a baseline has not, so the
    attributes its call loop uses are set here instead.
    """

    stem = "baseline"
    request = ""

    def __init__(self, name: str, task: Task, problem: Problem, llm: BaseChatModel, reply: type[BaseModel],
                 messages: list[BaseMessage], *, parse_retries: int, sampling: Sampling, seed: int,
                 network_attempts: int = 4) -> None:
        self.name = name  # e.g. "tot.value": usage is reported per method and request kind
        self.task = task
        self.problem = problem.public()
        self.output_model = reply
        self.llm = llm
        self.parse_retries = parse_retries
        self.temperature = sampling.temperature
        self.top_p = sampling.top_p
        self.max_tokens = sampling.max_tokens
        self.seed = seed
        self.network_attempts = network_attempts
        self.variant = None
        self._prefix = messages

    def fields(self, inp: Any) -> list[tuple[str, str]]:
        return []

    def messages(self, inp: BaseModel) -> list[BaseMessage]:
        return list(self._prefix)

    def invoke_kwargs(self, inp: BaseModel, attempt: int = 0) -> dict[str, Any]:
        return {**super().invoke_kwargs(inp, attempt), "max_tokens": self.max_tokens}


# -- methods -----------------------------------------------------------------------------------------------


class Method(ABC):
    """A baseline bound to a task, a public problem, a chat model and its configuration.

    ``solve()`` plans; ``first_prompts()`` renders every prompt the method sends for the problem's first step
    (the leak test reads them). ``Settings`` holds the method's knobs with the original's values.
    """

    name: ClassVar[str]
    #: the original's settings per task where they differ from ``Settings``' defaults
    paper_settings: ClassVar[dict[str, dict[str, Any]]] = {}

    class Settings(BaseModel):
        model_config = ConfigDict(frozen=True, extra="forbid")

    def __init__(self, task: Task, problem: Problem, llm: BaseChatModel | None, config: BaselineConfig) -> None:
        self.task = task
        self.problem = problem.public()
        self.llm = llm
        self.config = config
        self.settings = self.Settings.model_validate({**self.paper_settings.get(task.name, {}), **config.settings})
        self.records: list[CallRecord] = []
        #: every request as a record's ``calls`` logs it, in MAP's format: the request, the reply, the raw replies
        self.calls: list[ModuleCall] = []

    @property
    def max_actions(self) -> int:
        return self.config.max_actions or self.problem.max_actions

    def request_variant(self) -> str:
        """A named variant of the request file (``<file>.<variant>.md``), for a method setting that changes it."""
        return ""

    def transfer_form(self) -> str:
        """How a transfer split's examples from another problem read in the task description
        (``map_agent.task.TRANSFER_FORMS``): the original's ICL prompts showed bare action lists."""
        return "plans"

    @property
    def budget(self) -> int:
        """Output tokens one request may use: the original script's for this method and task."""
        return REPLY_BUDGETS.get(self.name, {}).get(self.task.name, DEFAULT_BUDGET.get(self.name, WHOLE_PLAN_BUDGET))

    @abstractmethod
    def solve(self) -> Attempt: ...

    @abstractmethod
    def first_prompts(self) -> list[list[BaseMessage]]: ...

    def ask(self, kind: str, messages: list[BaseMessage], reply: type[BaseModel], sampling: Sampling,
            request: Request | None = None) -> ModuleResult:
        """Send one request; its accounting joins the method's records, the request and its replies its calls."""
        if self.llm is None:
            raise ValueError(f"{self.name}: no chat model to ask")
        request = request or Request(kind=kind)
        call = BaselineCall(f"{self.name}.{kind}", self.task, self.problem, self.llm, reply, messages,
                            parse_retries=self.config.parse_retries, sampling=sampling,
                            seed=self.config.seed * 1000 + request.sample)
        result = call(request)
        self.records.append(result.record)
        self.calls.append(ModuleCall.of(result, "llm", request.model_dump(mode="json")))
        return result

    def attempt(self, actions: list[Any], predicted: list[Any] | None = None, **detail: Any) -> Attempt:
        """The plan cut at N (the original scored the first N moves of a longer answer), with the states the
        model wrote after each move when it wrote one for every move (the original's own scoring reads them)."""
        n = self.max_actions
        states = [s.model_dump(mode="json") if isinstance(s, BaseModel) else s for s in predicted or []]
        return Attempt(actions=actions[:n], records=self.records, detail={"reply_length": len(actions), **detail},
                       predicted=states[:n] if states and all(s is not None for s in states) else [])


# -- prompts -------------------------------------------------------------------------------------------------


def prompt_file(task: Task, problem: Problem, name: str) -> Path:
    """``<prompt dir of the problem>/baselines/<name>``, else the task's default ``prompts/<task>/baselines/<name>``:
    a problem's prompt set (Hanoi's ``icl4``, CogEval's ``steppath``) overrides only the files it has."""
    own = task.prompt_dir(problem) / "baselines" / name
    return own if own.exists() else task.prompt_dir(None) / "baselines" / name


@cache
def read_text(path: Path) -> str:
    return files.read_text(path)


def read_prompt(task: Task, problem: Problem, name: str, **values: Any) -> str:
    """A baseline's prompt file, its ``{placeholders}`` filled from ``values`` when given (a bad one names the
    file: ``map_agent.files.fill``)."""
    path = prompt_file(task, problem, name)
    if not path.exists():
        raise FileNotFoundError(f"{task.name}: no baseline prompt {path}")
    text = read_text(path).strip()
    return files.fill(path, text, **values) if values else text


def system_message(task: Task, problem: Problem, instructions: str, reply: type[BaseModel]) -> SystemMessage:
    """The task description every MAP module receives, the baseline's instructions and the reply schema."""
    # the baselines use the original's task description, without this project's MAP prompt hints
    return SystemMessage("\n\n".join([apply_hints(task.describe(problem), False), instructions, schema_line(reply)]))


def problem_text(task: Task, start: BaseModel, goal: BaseModel, label: str = "Starting state") -> str:
    return f"{label}: {task.render_state(start)}\nGoal: {task.render_goal(goal)}"


class Example(BaseModel):
    """An in-context problem of the original, as data: start, goal and the plan, each step with the state it
    leads to and, for chain of thought, its reasoning (``reasoning``: the same reasoning written once before the
    plan, where the original reasoned once). ``context`` marks an example from another environment than the
    problem's (a transfer setting): it is shown before the example and the example is never the problem."""

    start: dict[str, Any]
    goal: dict[str, Any]
    steps: list[dict[str, Any]]
    reasoning: str = ""
    context: str = ""


def examples(task: Task, problem: Problem, file: str) -> list[Example]:
    """The examples of ``file``; one whose start and goal are the problem's own is left out (the original's
    fixed examples include a few test instances, whose answer it would show)."""
    start, goal = canonical(task.start(problem)), canonical(task.goal(problem))
    return [shot for shot, key in _examples(task.name, prompt_file(task, problem, file))
            if shot.context or key != (start, goal)]


@cache
def _examples(task_name: str, path: Path) -> tuple[tuple[Example, tuple[str, str]], ...]:
    """A file's examples, validated once, each with the canonical key of its start and goal."""
    from map_agent.task import get_task

    task = get_task(task_name)
    try:
        shots = files.load_file(path, list[Example], text=read_text(path))
    except FileNotFoundError:
        raise FileNotFoundError(f"{task_name}: no baseline examples {path}") from None
    return tuple((s, (canonical(task.State.model_validate(s.start)), canonical(task.Goal.model_validate(s.goal))))
                 for s in shots)


def example_messages(task: Task, shots: list[Example], request: str, reply: type[BaseModel]) -> list[BaseMessage]:
    """Each example as a user turn (its problem and the request) and the assistant's reply in the schema."""
    messages: list[BaseMessage] = []
    for shot in shots:
        messages += _example_turn(task.name, shot.model_dump_json(), request, reply)
    return messages


@cache
def _example_turn(task_name: str, shot_json: str, request: str, reply: type[BaseModel]) -> tuple[BaseMessage, ...]:
    from map_agent.task import get_task

    task, shot = get_task(task_name), Example.model_validate_json(shot_json)
    text = problem_text(task, task.State.model_validate(shot.start), task.Goal.model_validate(shot.goal))
    answer = reply.model_validate({"steps": shot.steps, "reasoning": shot.reasoning})
    context = f"{shot.context.strip()}\n" if shot.context else ""
    return HumanMessage(f"{context}{text}\n{request}"), AIMessage(answer.model_dump_json(exclude_none=True))


def plan_request(task: Task, problem: Problem, file: str, max_actions: int) -> str:
    """The request of a whole-plan prompt (``{max_actions}`` in it is N, for tasks whose original named it)."""
    return read_prompt(task, problem, file, max_actions=max_actions)


def plan_messages(method: Method, *, reasoning: Reasoning, shots_file: str | None) -> tuple[list[BaseMessage], str,
                                                                                             type[BaseModel]]:
    """The messages of a whole-plan request: system, examples (if any), the problem; plus the request text
    (``plan.md``; chain of thought ``cot.md``, or ``cot.once.md`` where it reasons once before the plan)."""
    task, problem = method.task, method.problem
    reply = plan_reply(task.name, reasoning)
    file = {"none": "plan", "per_step": "cot", "once": "cot.once"}[reasoning]
    variant = method.request_variant()
    request = plan_request(task, problem, f"{file}.{variant}.md" if variant else f"{file}.md", method.max_actions)
    intro = read_prompt(task, problem, "intro.md")
    messages: list[BaseMessage] = [system_message(task, transfer_form(problem, method.transfer_form()), intro, reply)]
    if shots_file:
        messages += example_messages(task, examples(task, problem, shots_file), request, reply)
    messages.append(HumanMessage(f"{problem_text(task, task.start(problem), task.goal(problem))}\n{request}"))
    return messages, request, reply


def actions_of(reply: BaseModel | None) -> list[Any]:
    return [step.action for step in reply.steps] if reply is not None else []  # type: ignore[attr-defined]


def states_of(reply: BaseModel | None) -> list[Any]:
    return [step.state for step in reply.steps] if reply is not None else []  # type: ignore[attr-defined]


class WholePlanMethod(Method):
    """One request for the whole plan at temperature 0 and top-p 0 (zero-shot, ICL, CoT)."""

    shots_file: ClassVar[str | None] = None

    def shots(self) -> str | None:
        return self.shots_file

    def reasoning(self) -> Reasoning:
        return "none"

    def first_prompts(self) -> list[list[BaseMessage]]:
        return [plan_messages(self, reasoning=self.reasoning(), shots_file=self.shots())[0]]

    def solve(self) -> Attempt:
        messages, _, reply = plan_messages(self, reasoning=self.reasoning(), shots_file=self.shots())
        result = self.ask("plan", messages, reply, Sampling(max_tokens=self.budget),
                          Request(kind="plan", state=self.problem.start))
        if not result.ok:
            return Attempt(records=self.records, status="no_plan")
        return self.attempt(actions_of(result.output), states_of(result.output),
                            reply=result.output.model_dump(mode="json", exclude_none=True))
