"""What every MAP module shares: the LLM adapter (prompt in, typed output out) and the call accounting.

A module is a plain typed callable: ``module(ModuleInput) -> ModuleResult``. The LLM variant renders its input
into messages (task description + the module's role + in-context examples + the JSON schema of its output),
invokes a LangChain chat model, and parses the reply into the output model. Real models wrap the
object in prose or code fences, echo the input, stop at the token limit or refuse: what is unambiguous is parsed
(``parse_reply``), and a reply that cannot be used is sent back with feedback saying why (bounded by
``parse_retries``); transient network errors are retried with backoff (tenacity). Whatever still fails is returned
as a failed ``ModuleResult`` -- never raised -- so one bad reply is recorded as a failure of that step and the run
goes on. Every reply's raw text is kept on the call's record (``CallRecord.replies``), parsed or not, so a failed
call can be read afterwards.
"""

from __future__ import annotations

import json
import re
import time
from abc import ABC, abstractmethod
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, Field, ValidationError
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from map_agent.files import entry_of, load_file, read_text
from map_agent.llm.cache import CACHE_HIT, forget
from map_agent.modules.schemas import INPUTS, outputs_for
from map_agent.task import Problem, Task, transfer_form

#: the prompt variant of fine-tuned models (``MAPConfig.prompts="ft"``)
FINE_TUNED = "ft"


#: The original scripts' reply budget (``max_tokens``) per task and module (``toh/gpt4_map_toh.py``,
#: ``cogeval/gpt4_map_valuepath.py`` and ``_steppath.py``, ``strategyQA/map_strategyqa.py``, the PlanBench MAP
#: scripts); a module not listed, or ``MAPConfig.reply_budget="model"``, gets the chat model's ``max_tokens``.
REPLY_BUDGETS: dict[str, dict[str, int]] = {
    "hanoi": {"Actor": 500, "Monitor": 500, "Predictor": 200, "Orchestrator": 200, "Evaluator": 2000,
              "TaskDecomposer": 200},
    "cogeval": {"Actor": 200, "Monitor": 500, "Orchestrator": 500, "Evaluator": 500},
    "strategyqa": {"Actor": 1000, "Monitor": 500, "Predictor": 1000, "TaskDecomposer": 1000},
    "mystery_blocksworld": {"Actor": 200, "Monitor": 1000, "Predictor": 1000, "Orchestrator": 1000},
    "logistics": {"Actor": 200, "Monitor": 1000, "Predictor": 1000, "Orchestrator": 1000, "TaskDecomposer": 500},
}

#: this project's additions to the original's prompts, written ``[[hint: text]]`` in ``prompts/``: shown with
#: ``MAPConfig.prompt_hints``, dropped (with the space before them) otherwise
_HINT = re.compile(r"([ \t]*)\[\[hint:(.*?)\]\]", re.DOTALL)


def apply_hints(text: str, hints: bool) -> str:
    """``text`` with its ``[[hint: ...]]`` additions kept as plain text (``hints``) or removed (the original)."""
    return _HINT.sub((lambda m: m.group(1) + m.group(2)) if hints else "", text)


#: characters of a reply's text a record keeps (the head and the tail, with a marker saying how much was cut)
REPLY_CHARS = 2000
_REPLY_TAIL = 500


class RawReply(BaseModel):
    """One reply of a module call as the model wrote it: why a call failed can only be read from these."""

    text: str = Field(description=f"the reply, its first {REPLY_CHARS - _REPLY_TAIL} and last {_REPLY_TAIL} "
                                  "characters when longer, with a marker saying how many were cut")
    chars: int = Field(description="the reply's full length in characters")
    finish_reason: str | None = Field(default=None, description="why the model stopped: stop, length, ...")
    cache_hit: bool = Field(default=False, description="served from the prompt cache, not sent to a model")
    error: str | None = Field(default=None, description="why this reply was not used; None for the parsed one")

    @classmethod
    def of(cls, text: str, finish_reason: str | None, cache_hit: bool) -> RawReply:
        kept = text
        if len(text) > REPLY_CHARS:
            head, tail = text[:REPLY_CHARS - _REPLY_TAIL], text[-_REPLY_TAIL:]
            kept = f"{head}[... {len(text) - REPLY_CHARS} characters cut ...]{tail}"
        return cls(text=kept, chars=len(text), finish_reason=finish_reason, cache_hit=cache_hit)


class CallRecord(BaseModel):
    """Accounting for one module call: requests sent to a model and replies served from the prompt cache (parse
    retries included in both), tokens, time, and every reply's raw text."""

    module: str
    model_calls: int = 0  # requests actually sent to a model (a cache hit is not one)
    cache_hits: int = 0  # replies served from the prompt cache
    input_tokens: int = 0
    output_tokens: int = 0
    seconds: float = 0.0
    model_seconds: float = 0.0
    failed: bool = False
    error: str | None = None
    #: failed because the endpoint did not serve it (unreachable, timeouts, 5xx, rate limit), not by the model
    infrastructure: bool = False
    replies: list[RawReply] = Field(default_factory=list)  # every attempt's reply, in order


class ModuleCall(BaseModel):
    """One module call as a record logs it (``calls`` of MAP's and the baselines' records alike): what was asked,
    what came back, and the raw replies it came from."""

    module: str
    impl: str  # llm | oracle | learned
    input: Any
    output: Any = None
    failed: bool = False
    error: str | None = None
    #: the call failed at the endpoint (``CallRecord.infrastructure``): the problem's end is not the model's
    infrastructure: bool = False
    replies: list[RawReply] = Field(default_factory=list)

    @classmethod
    def of(cls, result: ModuleResult, impl: str, inp: Any) -> ModuleCall:
        output = result.output.model_dump(mode="json") if result.ok else None
        return cls(module=result.record.module, impl=impl, input=inp, output=output, failed=not result.ok,
                   error=result.record.error, infrastructure=result.record.infrastructure,
                   replies=result.record.replies)


class ModuleResult(BaseModel):
    """A module's typed output, or ``None`` with ``record.failed`` and the reason."""

    output: Any = None
    record: CallRecord

    @property
    def ok(self) -> bool:
        return not self.record.failed


class Module(ABC):
    """A MAP module bound to one task and problem."""

    name: ClassVar[str]

    def __init__(self, task: Task, problem: Problem, *, reasoning: bool = True) -> None:
        self.task = task
        self.problem = problem
        # the module reasons before its verdict where the task's original does (``Task.reasoning_modules``)
        self.output_model = outputs_for(task, reasoning)[self.name]

    @abstractmethod
    def __call__(self, inp: BaseModel) -> ModuleResult: ...


def make_input(module: str, task: Task, raw: dict[str, Any]) -> BaseModel:
    """Build a module input from JSON, typing ``state``/``goal``/``action`` with the task's models."""
    types = {"state": task.State, "goal": task.Goal, "action": task.Action}
    values = {k: (types[k].model_validate(v) if k in types else v) for k, v in raw.items()}
    return INPUTS[module].model_validate(values)


def is_transient(error: BaseException) -> bool:
    """Network errors, timeouts, rate limits and 5xx: worth a retry with backoff."""
    names = {c.__name__ for c in type(error).__mro__}
    return bool(names & {"APIConnectionError", "APITimeoutError", "RateLimitError", "InternalServerError",
                         "ConnectError", "ReadTimeout", "TimeoutException", "ConnectionError", "TimeoutError"})


class ReplyError(ValueError):
    """Why a reply cannot be used: the record's error, and what the model is told on the re-ask."""


#: the feedback for a reply the model stopped at its token limit (``finish_reason == "length"``)
CUT_OFF = "Your reply was cut off at the token limit: reply with only the JSON object, keep reasoning short."

_FENCE = re.compile(r"```[ \t]*[A-Za-z]*[ \t]*\n?(.*?)```", re.DOTALL)


def _objects(text: str) -> tuple[list[tuple[dict, int]], tuple[str, int] | None]:
    """Every JSON object decodable in ``text``, left to right, outermost only, each with its length; and the
    decode error that spanned the most text (the object the model most likely meant), with that span."""
    decoder = json.JSONDecoder()
    found: list[tuple[dict, int]] = []
    worst: tuple[str, int] | None = None
    start = text.find("{")
    while start >= 0:
        try:
            value, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError as e:
            span = e.pos - start
            if worst is None or span > worst[1]:
                worst = (f"the JSON object is malformed: {e.msg} at character {e.pos}", span)
            start = text.find("{", start + 1)
            continue
        if isinstance(value, dict):
            found.append((value, end - start))
        start = text.find("{", end)
    return found, worst


def parse_reply(text: str, model: type[BaseModel]) -> BaseModel:
    """The one object of ``model`` a reply holds, wherever it stands in the reply.

    Candidates are the JSON objects inside code fences, else every JSON object in the text (prose around it, the
    input lines echoed before it, a stray brace in the prose); those that validate against ``model`` count. One
    distinct valid object is the answer; several distinct ones are ambiguous (the model is asked for exactly
    one); with none, the error is the most informative failure: the candidate that spans the most text, whether
    it failed to decode or to validate.
    """
    if not text.strip():
        raise ReplyError("the reply was empty")
    fenced = [m.group(1) for m in _FENCE.finditer(text)]
    best: tuple[str, int] | None = None
    for scope in (["\n".join(fenced)] if fenced else []) + [text]:
        found, best = _objects(scope)
        valid: dict[str, BaseModel] = {}
        for value, span in found:
            try:
                parsed = model.model_validate(value)
            except ValidationError as e:
                if best is None or span > best[1]:
                    best = (f"the JSON object does not fit the schema: {_short(e)}", span)
                continue
            valid.setdefault(parsed.model_dump_json(), parsed)
        if len(valid) == 1:
            return next(iter(valid.values()))
        if len(valid) > 1:
            raise ReplyError(f"the reply holds {len(valid)} different JSON objects that fit the schema; "
                             "reply with exactly one")
    if best is None:
        raise ReplyError("no JSON object was found in the reply")
    raise ReplyError(best[0])


@cache
def _read(path: Path) -> str:
    return read_text(path)


@cache
def _output_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema, built once: pydantic builds it anew on every call, a fifth of a millisecond of CPU
    on every request that carries its schema. Shared by every caller: read, never changed."""
    return model.model_json_schema()


@cache
def schema_line(model: type[BaseModel]) -> str:
    """The instruction that closes every system prompt, a module's or a baseline's: reply with ``model``'s JSON."""
    return f"Reply with only a JSON object that follows this JSON schema:\n{json.dumps(_output_schema(model))}"


class PromptExample(BaseModel):
    """One entry of ``<stem>.examples.json``: the module's input and its answer as JSON objects (typed with the
    task's models when rendered), and, for an example from another instance, the context shown before it."""

    input: dict[str, Any]
    output: dict[str, Any]
    context: str = ""


class LLMModule(Module):
    """A module implemented by a chat model, specialised by its prompt files ``prompts/<task>/<stem>.*``."""

    stem: ClassVar[str]
    request: ClassVar[str]  # the closing line of the user message: what the module must produce
    #: how a transfer split's examples from another problem read in this module's task description
    #: (``map_agent.task.TRANSFER_FORMS``): the worked moves, nearest to the original's own single-step examples
    #: of Monitor, Predictor and Orchestrator; the Actor's are the original's bare action lists
    default_transfer_form: ClassVar[str] = "worked"
    #: the task type ("Action", "State") whose schema a state-dependent grammar replaces in this module's reply
    #: (``Task.reply_schema``); None: the module has no such grammar
    grammar_type: ClassVar[str | None] = None
    #: the grammar this instance asks for (a ``MAPConfig`` grammar field); baseline calls keep the static schema
    grammar: str = "static"
    #: the static schema's ``response_format``, rewritten grammar-safe on first use (``_response_format``)
    _static_format: dict[str, Any] | None = None

    def __init__(self, task: Task, problem: Problem, llm: BaseChatModel, *, parse_retries: int = 9,
                 temperature: float = 0.0, top_p: float | None = 0.0, seed: int = 0, examples: bool = True,
                 reasoning: bool = True, variant: str | None = None, network_attempts: int = 4,
                 hints: bool = False, max_tokens: int | None = None, transfer_form: str | None = None,
                 grammar: str = "static") -> None:
        # a model sees the public problem only: no prompt can be rendered from ground truth
        super().__init__(task, problem.public(), reasoning=reasoning)
        if grammar != "static" and self.grammar_type is None:
            raise ValueError(f"the {self.name} has no state-dependent grammar ({grammar!r})")
        self.grammar = grammar
        self.hints = hints
        self.examples_form = transfer_form or self.default_transfer_form  # None: the module's own (above)
        self.max_tokens = max_tokens  # None: the chat model's own budget
        self.llm = llm
        self.parse_retries = parse_retries
        self.temperature = temperature
        self.top_p = top_p
        self.seed = seed
        self.network_attempts = network_attempts
        self.variant = variant
        self._prefix = self._prompt_prefix(examples)

    # -- prompt -----------------------------------------------------------------------------------------
    def render(self, inp: BaseModel) -> str:
        """The user message for one input: labelled fields, then the request."""
        lines = [f"{label}: {text}" for label, text in self.fields(inp)]
        return "\n".join([*lines, self.closing(inp)])

    def closing(self, inp: BaseModel) -> str:
        """The request that ends the user message, filled from the input."""
        return self.request.format(**inp.model_dump())

    @abstractmethod
    def fields(self, inp: Any) -> list[tuple[str, str]]:
        """(label, text) pairs describing the input, rendered with the task's renderers."""

    def prompt_file(self, suffix: str) -> Path:
        """``<stem>.<variant><suffix>`` when the variant has its own file (e.g. the two-subgoal examples), else
        ``<stem>.<problem variant><suffix>`` when the problem's condition has its own (``info["prompt_variant"]``:
        Reward Revaluation's Actor examples, which its script words differently from Valuepath's), else
        ``<stem><suffix>``."""
        folder = self.task.prompt_dir(self.problem)
        for variant in (self.variant, self.problem.info.get("prompt_variant")):
            if variant and (folder / f"{self.stem}.{variant}{suffix}").exists():
                return folder / f"{self.stem}.{variant}{suffix}"
        return folder / f"{self.stem}{suffix}"

    def _prompt_prefix(self, examples: bool) -> list[BaseMessage]:
        if self.variant == FINE_TUNED:
            # a fine-tuned model learnt the task and the format: a one-line role, then the input (short prompts
            # are what makes LoRA training on a CPU affordable)
            role = self.prompt_file(".md")
            line = (_read(role).strip() if role.name.endswith(f".{FINE_TUNED}.md") else
                    f"You are the {self.name} of a planner for the {self.task.name} task. Reply in JSON.")
            return [SystemMessage(line)]
        role_file = self.prompt_file(".md")
        if not role_file.exists():
            raise FileNotFoundError(f"{self.task.name}: no prompt for the {self.name} at {role_file}")
        system = apply_hints("\n\n".join([
            self.task.describe(transfer_form(self.problem, self.examples_form)),
            _read(role_file).strip(),
            schema_line(self.output_model),
        ]), self.hints)
        messages: list[BaseMessage] = [SystemMessage(system)]
        example_file = self.prompt_file(".examples.json")
        if examples and example_file.exists():
            for i, shot in enumerate(load_file(example_file, list[PromptExample], text=_read(example_file))):
                with entry_of(example_file, i):
                    inp = make_input(self.name, self.task, shot.input)
                    out = self.output_model.model_validate(shot.output)
                # an example from another instance than the one described above carries its own "context"
                # (e.g. its maze), shown before its input
                context = f"{shot.context.strip()}\n\n" if shot.context else ""
                messages += [HumanMessage(context + self.render(inp)), AIMessage(out.model_dump_json())]
        return messages

    def messages(self, inp: BaseModel) -> list[BaseMessage]:
        return [*self._prefix, HumanMessage(self.render(inp))]

    # -- call ----------------------------------------------------------------------------------------------
    def invoke_kwargs(self, inp: BaseModel, attempt: int = 0) -> dict[str, Any]:
        """Sampling parameters of one request. ``seed`` is the run index, so it is part of every cache key: run 2
        never replays run 1's answers, while a rerun of run 2 is free."""
        kwargs: dict[str, Any] = {"temperature": self.temperature, "seed": self.seed}
        if self.max_tokens is not None:  # the module's own reply budget (sent per call, so part of the cache key)
            kwargs["max_tokens"] = self.max_tokens
        if self.top_p is not None:
            kwargs["top_p"] = self.top_p
        if getattr(self.llm, "json_schema_decoding", False):
            kwargs["response_format"] = self._response_format(inp)
        return kwargs

    def _response_format(self, inp: BaseModel) -> dict[str, Any]:
        """The request's ``response_format``: the static schema's is rewritten grammar-safe once per module (every
        call would otherwise walk the whole schema again), a state-dependent grammar's on every call."""
        schema = self.reply_schema(inp)
        if schema is not _output_schema(self.output_model):
            return self.llm.response_format_for(schema)  # type: ignore[attr-defined]
        if self._static_format is None:
            self._static_format = self.llm.response_format_for(schema)  # type: ignore[attr-defined]
        return self._static_format

    def reply_schema(self, inp: BaseModel) -> dict[str, Any]:
        """The JSON schema one request's reply must follow: the output model's, or -- with a grammar -- the same
        with the task's value type restricted to what the grammar admits in the input's state. Only the request's
        grammar changes; the prompt keeps the static schema, so its prefix stays cached."""
        schema = _output_schema(self.output_model)
        if self.grammar == "static":
            return schema
        restricted = self.task.reply_schema(self.name, self.grammar, inp.state, self.problem)  # type: ignore
        if restricted is None:
            return schema
        name = getattr(self.task, self.grammar_type).__name__  # type: ignore[arg-type]
        return {**schema, "$defs": {**schema["$defs"], name: restricted}}

    def parse(self, text: str, inp: BaseModel) -> BaseModel:
        """The reply's output object; raises ``ReplyError``."""
        return parse_reply(text, self.output_model)

    def __call__(self, inp: BaseModel) -> ModuleResult:
        record = CallRecord(module=self.name)
        started = time.perf_counter()
        messages = self.messages(inp)
        config = {"metadata": {"map_agent_module": self.name, "map_agent_task": self.task.name,
                               "map_agent_problem": self.problem.id,
                               "map_agent_phase": self.problem.info.get("phase", 0),
                               "map_agent_input": inp.model_dump(mode="json")},
                  "run_name": self.name}
        try:
            for attempt in range(self.parse_retries + 1):
                reply = self._invoke(messages, inp, config, record, attempt)
                text = reply.content if isinstance(reply.content, str) else str(reply.content)
                metadata = reply.response_metadata or {}
                finish = metadata.get("finish_reason")
                raw = RawReply.of(text, finish, bool(metadata.get(CACHE_HIT)))
                record.replies.append(raw)
                try:
                    return ModuleResult(output=self.parse(text, inp), record=record)
                except ReplyError as e:
                    forget(self.llm, reply)  # an unusable reply must not be replayed to later calls or runs
                    error = _short(e)
                    feedback = f"Your reply could not be used: {error}\nReply again with only the JSON object."
                    if finish == "length":  # the cause is the reply's length, whatever broke in the JSON
                        error, feedback = f"the reply was cut off at the token limit ({error})", CUT_OFF
                    raw.error = error
                    record.error = f"unparseable reply after {attempt + 1} attempt(s): {error}"
                    messages = [*messages, AIMessage(text), HumanMessage(feedback)]
            record.failed = True
            return ModuleResult(output=None, record=record)
        except Exception as e:  # a model/network failure is this step's failure, never the run's
            record.failed = True
            record.infrastructure = is_transient(e)  # still failing after the retries: the endpoint's doing
            record.error = f"{type(e).__name__}: {_short(e)}"
            return ModuleResult(output=None, record=record)
        finally:
            record.seconds = time.perf_counter() - started

    def _invoke(self, messages: list[BaseMessage], inp: BaseModel, config: dict, record: CallRecord,
                parse_attempt: int = 0) -> AIMessage:
        for attempt in Retrying(stop=stop_after_attempt(self.network_attempts),
                                wait=wait_exponential(multiplier=0.5, max=20),
                                retry=retry_if_exception(is_transient), reraise=True):
            with attempt:
                t0 = time.perf_counter()
                try:
                    reply = self.llm.invoke(messages, config=config, **self.invoke_kwargs(inp, parse_attempt))
                finally:
                    record.model_seconds += time.perf_counter() - t0
        if reply.response_metadata.get(CACHE_HIT):
            record.cache_hits += 1
            return reply  # type: ignore[return-value]
        record.model_calls += 1
        if reply.usage_metadata:
            record.input_tokens += reply.usage_metadata.get("input_tokens", 0)
            record.output_tokens += reply.usage_metadata.get("output_tokens", 0)
        return reply  # type: ignore[return-value]


def _short(error: BaseException, limit: int = 600) -> str:
    if isinstance(error, ValidationError):
        text = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'reply'}: {e['msg']}" for e in error.errors()[:5])
    else:
        text = str(error)
    return text if len(text) <= limit else text[:limit] + "..."
