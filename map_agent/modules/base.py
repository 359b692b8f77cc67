"""What every MAP module shares: the LLM adapter (prompt in, typed output out) and the call accounting.

A module is a plain typed callable: ``module(ModuleInput) -> ModuleResult``. The LLM variant renders its input
into messages (task description + the module's role + in-context examples + the JSON schema of its output),
invokes a LangChain chat model, and parses the reply into the output model. A reply that does not parse is sent
back with the parse error as feedback (bounded by ``parse_retries``); transient network errors are retried with
backoff (tenacity). Whatever still fails is returned as a failed ``ModuleResult`` -- never raised -- so one bad
reply is recorded as a failure of that step and the run goes on.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, ValidationError
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from map_agent.llm.cache import CACHE_HIT, forget
from map_agent.modules.schemas import INPUTS, outputs_for
from map_agent.task import Problem, Task

#: the prompt variant of fine-tuned models (``MAPConfig.prompts="ft"``)
FINE_TUNED = "ft"


class CallRecord(BaseModel):
    """Accounting for one module call: model invocations (parse retries included), cache hits, tokens, time."""

    module: str
    calls: int = 0
    cache_hits: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    seconds: float = 0.0
    model_seconds: float = 0.0
    failed: bool = False
    error: str | None = None


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


def extract_json(text: str) -> Any:
    """The first JSON object in a reply (models like to wrap it in prose or code fences)."""
    start = text.find("{")
    if start < 0:
        raise ValueError("the reply contains no JSON object")
    try:
        value, _ = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError as e:
        raise ValueError(f"the JSON object is malformed: {e.msg} at character {e.pos}") from None
    return value


@cache
def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


class LLMModule(Module):
    """A module implemented by a chat model, specialised by its prompt files ``prompts/<task>/<stem>.*``."""

    stem: ClassVar[str]
    request: ClassVar[str]  # the closing line of the user message: what the module must produce

    def __init__(self, task: Task, problem: Problem, llm: BaseChatModel, *, parse_retries: int = 9,
                 temperature: float = 0.0, top_p: float | None = 0.0, seed: int = 0, examples: bool = True,
                 reasoning: bool = True, variant: str | None = None, network_attempts: int = 4) -> None:
        # a model sees the public problem only: no prompt can be rendered from ground truth
        super().__init__(task, problem.public(), reasoning=reasoning)
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
        """``<stem>.<variant><suffix>`` when the variant has its own file (e.g. the two-subgoal examples),
        else ``<stem><suffix>``."""
        folder = self.task.prompt_dir(self.problem)
        if self.variant and (folder / f"{self.stem}.{self.variant}{suffix}").exists():
            return folder / f"{self.stem}.{self.variant}{suffix}"
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
        schema = json.dumps(self.output_model.model_json_schema())
        system = "\n\n".join([
            self.task.describe(self.problem),
            _read(role_file).strip(),
            f"Reply with only a JSON object that follows this JSON schema:\n{schema}",
        ])
        messages: list[BaseMessage] = [SystemMessage(system)]
        example_file = self.prompt_file(".examples.json")
        if examples and example_file.exists():
            try:
                shots = json.loads(_read(example_file))
            except json.JSONDecodeError as e:
                raise ValueError(f"{example_file}: not JSON: {e}") from None
            for i, shot in enumerate(shots):
                try:
                    inp = make_input(self.name, self.task, shot["input"])
                    out = self.output_model.model_validate(shot["output"])
                except KeyError as e:
                    raise ValueError(f"{example_file}: example {i}: missing field {e}") from None
                except ValidationError as e:
                    raise ValueError(f"{example_file}: example {i}: {_short(e)}") from None
                # an example from another instance than the one described above carries its own "context"
                # (e.g. its maze), shown before its input
                context = f"{shot['context'].strip()}\n\n" if shot.get("context") else ""
                messages += [HumanMessage(context + self.render(inp)), AIMessage(out.model_dump_json())]
        return messages

    def messages(self, inp: BaseModel) -> list[BaseMessage]:
        return [*self._prefix, HumanMessage(self.render(inp))]

    # -- call ----------------------------------------------------------------------------------------------
    def invoke_kwargs(self, inp: BaseModel, attempt: int = 0) -> dict[str, Any]:
        """Sampling parameters of one request. ``seed`` is the run index, so it is part of every cache key: run 2
        never replays run 1's answers, while a rerun of run 2 is free."""
        kwargs: dict[str, Any] = {"temperature": self.temperature, "seed": self.seed}
        if self.top_p is not None:
            kwargs["top_p"] = self.top_p
        if getattr(self.llm, "json_schema_decoding", False):
            kwargs["response_format"] = self.llm.response_format_for(  # type: ignore[attr-defined]
                self.output_model.model_json_schema())
        return kwargs

    def parse(self, text: str, inp: BaseModel) -> BaseModel:
        return self.output_model.model_validate(extract_json(text))

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
                try:
                    return ModuleResult(output=self.parse(text, inp), record=record)
                except (ValidationError, ValueError) as e:
                    forget(self.llm, reply)  # an unusable reply must not be replayed to later calls or runs
                    error = _short(e)
                    record.error = f"unparseable reply after {attempt + 1} attempt(s): {error}"
                    messages = [*messages, AIMessage(text), HumanMessage(
                        f"Your reply could not be used: {error}\nReply again with only the JSON object.")]
            record.failed = True
            return ModuleResult(output=None, record=record)
        except Exception as e:  # a model/network failure is this step's failure, never the run's
            record.failed = True
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
        record.calls += 1
        if reply.response_metadata.get(CACHE_HIT):
            record.cache_hits += 1
        elif reply.usage_metadata:
            record.input_tokens += reply.usage_metadata.get("input_tokens", 0)
            record.output_tokens += reply.usage_metadata.get("output_tokens", 0)
        return reply  # type: ignore[return-value]


def _short(error: BaseException, limit: int = 600) -> str:
    if isinstance(error, ValidationError):
        text = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'reply'}: {e['msg']}" for e in error.errors()[:5])
    else:
        text = str(error)
    return text if len(text) <= limit else text[:limit] + "..."
