"""The embedded backend: llama.cpp through LangChain's ChatLlamaCpp, made thread-safe and grammar-friendly, and
quick on each module's first call.

A module's first call reads its whole prompt -- task description, role, schema and in-context examples, ~1,100 of
its ~1,240 tokens on Hanoi -- into a fresh llama.cpp context: ~11 CPU-seconds at one thread on the 2-core machine
this was measured on; later calls re-read only the new input. ``LocalChatModel`` gets that fixed prefix cheaper:
from the KV cache an earlier process saved (``state_dir``), else partly from a live context of another module (all
modules of a task open with the same task description). On the CPU, llama.cpp's logits do not depend on how a
prompt is split into evaluations, nor on the number of threads, so no answer changes (``tests/test_local_prefix.py``;
``bench/bench_embedded.py`` measures the gain and compares the replies).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import llama_cpp
from langchain_community.chat_models import ChatLlamaCpp
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatResult

from map_agent.llm.cache import default_cache_dir
from map_agent.llm.context import TOKENS_PER_MESSAGE, TOKENS_PER_PROMPT
from map_agent.llm.schema import grammar_friendly

#: Serialises all llama.cpp work in the process. llama-cpp-python silences the C library by pointing file
#: descriptors 1 and 2 at /dev/null and back around loads and grammar builds; two threads doing that at once
#: restore each other's /dev/null and leave stdout and stderr silenced for good. Contexts are not thread-safe
#: either, and LangGraph runs ``Send`` branches (and evaluations run problems) in threads.
LLAMA_LOCK = threading.RLock()

#: bytes of saved prefix states a directory keeps, the least recently used deleted first: ~40 module prefixes of
#: the embedded model (~23 kB of KV cache a token, ~25 MB for a 1,100-token prefix)
STATE_DIR_LIMIT = 2**30
#: the fewest tokens worth copying from another context: the copy moves the donor's whole KV cache, which costs
#: about what evaluating a few dozen tokens does
MIN_SHARED_TOKENS = 64
#: model arguments that change how fast llama.cpp computes, not what: left out of a saved state's key
_SPEED_ONLY = frozenset({"n_threads", "n_threads_batch", "n_batch", "n_ubatch", "verbose"})


def default_state_dir() -> Path:
    """``llama-states`` in the default prompt cache directory, so ``$MAP_AGENT_CACHE_DIR`` moves both caches."""
    return default_cache_dir() / "llama-states"


class LocalChatModel(ChatLlamaCpp):
    """ChatLlamaCpp that is safe to share between graph branches and problems, reports token usage, and starts each
    module's context with its prompt prefix already read.

    Loading and every call hold ``LLAMA_LOCK``. Token counts move from ``llm_output`` onto the message's
    ``usage_metadata`` where every other backend puts them.
    """

    json_schema_decoding: ClassVar[bool] = True
    #: llama.cpp contexts kept warm, one per distinct system prompt (that is, per MAP module and task)
    max_contexts: int = 6
    #: RoPE as the GGUF says (0). ChatLlamaCpp's defaults (base 10000, LLaMA-1's) reached the first context only,
    #: so SmolLM2 (trained with 100000) computed differently in whichever module's context was made first
    rope_freq_base: float = 0.0
    rope_freq_scale: float = 0.0
    #: where each context's prompt prefix is kept as llama.cpp state for later processes (``None``: not kept)
    state_dir: Path | None = None
    #: whether a new context copies the prompt prefix it shares with a live one instead of reading it again
    share_prefixes: bool = True
    _contexts: OrderedDict
    _formatter: Any
    _state_key: Any

    def __init__(self, **kwargs: Any) -> None:
        with LLAMA_LOCK:  # the validator loads the model
            super().__init__(**kwargs)

    def model_post_init(self, context: Any) -> None:
        super().model_post_init(context)
        self._contexts = OrderedDict()
        self._formatter = self._state_key = None

    def _context_for(self, messages: list[BaseMessage]) -> Any:
        """The llama.cpp context whose KV cache already holds this prompt's prefix.

        A context re-evaluates only the tokens after the longest prefix it shares with its previous prompt. MAP
        alternates modules whose prompts part after the task description (role, schema, examples follow), so one
        shared context would re-read ~1,000 tokens on every call; one context per system prompt re-reads only
        the new input. Contexts share the memory-mapped weights; least recently used ones are dropped. A new
        context starts with the prompt's prefix read (``_prime``).
        """
        key = hashlib.sha1(str(messages[0].content if messages else "").encode()).hexdigest()
        if key in self._contexts:
            self._contexts.move_to_end(key)
            return self._contexts[key]
        if not self._contexts:
            client = self.client
        else:
            client = type(self.client)(model_path=self.model_path, n_ctx=self.n_ctx, n_threads=self.n_threads,
                                       n_batch=self.n_batch, lora_path=self.lora_path, verbose=self.verbose,
                                       rope_freq_base=self.rope_freq_base, rope_freq_scale=self.rope_freq_scale,
                                       **self.model_kwargs)
        self._prime(client, messages)
        self._contexts[key] = client
        if len(self._contexts) > self.max_contexts:
            self._contexts.popitem(last=False)
        return client

    def _prime(self, client: Any, messages: list[BaseMessage]) -> None:
        """Read the prompt's fixed prefix -- every message before the last: system prompt and in-context examples,
        the part a module's later calls share -- into a new context as cheaply as it can be had: the state an
        earlier process saved in ``state_dir``; else the part a live context shares is copied (``share_prefixes``)
        and the rest read, and the state saved for the next process.

        The call that follows reads only what comes after the prefix (llama-cpp-python reuses the longest common
        prefix of the context's tokens): the same logits, bit for bit, as reading the whole prompt at once.
        """
        if self.state_dir is None and not self.share_prefixes:
            return
        prefix = self.prefix_tokens(messages)
        if not prefix or len(prefix) >= self.n_ctx:
            return
        path = self.state_path(prefix)
        if path is not None and path.exists() and _load_state(client, path, prefix):
            _touch(path)
            return
        if self.share_prefixes:
            donor, shared = None, 0
            for other in self._contexts.values():
                n = llama_cpp.Llama.longest_token_prefix(other.input_ids[:other.n_tokens].tolist(), prefix)
                if n > shared:
                    donor, shared = other, n
            if donor is not None and shared >= MIN_SHARED_TOKENS:
                _copy_state(donor, client, shared)
        client.eval(prefix[client.n_tokens:])
        if path is not None:
            try:
                _save_state(client, path, prefix)
            except OSError as e:  # a speed-up only: the run goes on without it
                warnings.warn(f"llama.cpp prompt prefixes are not kept in {self.state_dir}: {e}", RuntimeWarning,
                              stacklevel=2)
                self.state_dir = None

    def prefix_tokens(self, messages: list[BaseMessage]) -> list[int]:
        """The tokens of the prompt before its last message, as the model's chat template lays them out (``[]``:
        no prefix, or a chat format other than the GGUF's own template, whose layout this does not know)."""
        if len(messages) < 2:
            return []
        if self._formatter is None:
            self._formatter = _prefix_formatter(self.client) or False
        if not self._formatter:
            return []
        text = self._formatter(messages=self._create_message_dicts(messages[:-1])).prompt
        # tokenized as llama-cpp-python tokenizes a templated prompt: its special tokens parsed, no BOS added
        return self.client.tokenize(text.encode(), add_bos=False, special=True)

    def state_path(self, tokens: Sequence[int]) -> Path | None:
        """The file of the KV cache after ``tokens`` in ``state_dir``. Its name hashes everything that decides
        that cache: the tokens, the model and LoRA files (path, size, modification time), llama-cpp-python's
        version and build, and the model arguments other than thread counts; a changed model file or runtime is
        a new name, and the old files age out (``STATE_DIR_LIMIT``)."""
        if self.state_dir is None:
            return None
        if self._state_key is None:
            files = [(str(Path(f).resolve()), os.stat(f).st_size, os.stat(f).st_mtime_ns)
                     for f in (self.model_path, self.lora_path) if f]
            kwargs = {k: v for k, v in self.model_kwargs.items() if k not in _SPEED_ONLY}
            self._state_key = json.dumps([files, llama_cpp.__version__, llama_cpp.llama_print_system_info().decode(),
                                          self.rope_freq_base, self.rope_freq_scale, kwargs], sort_keys=True,
                                         default=str)
        digest = hashlib.sha256(self._state_key.encode())
        digest.update(b"\0" + ",".join(map(str, tokens)).encode())
        return Path(self.state_dir) / f"{digest.hexdigest()[:40]}.llama-state"

    @property
    def context_length(self) -> int:
        """The window llama.cpp allocated (``n_ctx``), which prompt plus reply must fit."""
        return self.n_ctx

    def prompt_tokens(self, messages: list[BaseMessage]) -> int:
        """The prompt's size in this model's tokens, each message counted with the chat template's overhead."""
        with LLAMA_LOCK:
            counts = [len(self.client.tokenize(str(m.content).encode(), add_bos=False, special=True))
                      for m in messages]
        return sum(n + TOKENS_PER_MESSAGE for n in counts) + TOKENS_PER_PROMPT

    @staticmethod
    def response_format_for(schema: dict) -> dict:
        return {"type": "json_object", "schema": grammar_friendly(schema)}

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        with LLAMA_LOCK:
            default = self.client
            self.client = self._context_for(messages)
            try:
                result = super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)
            finally:
                self.client = default
        usage = (result.llm_output or {}).get("token_usage") or {}
        for gen in result.generations:
            if isinstance(gen.message, AIMessage) and usage:
                gen.message.usage_metadata = {
                    "input_tokens": usage.get("prompt_tokens", 0),
                    "output_tokens": usage.get("completion_tokens", 0),
                    "total_tokens": usage.get("total_tokens", 0),
                }
        return result


def _prefix_formatter(client: Any) -> Any:
    """The GGUF's own chat template as llama-cpp-python applies it, without the reply header, or ``None``."""
    template = client.metadata.get("tokenizer.chat_template")
    if not template or client.chat_handler is not None or client.chat_format != "chat_template.default":
        return None
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    def text(token: int) -> str:
        return client.detokenize([token], special=True).decode() if token != -1 else ""

    return Jinja2ChatFormatter(template=template, eos_token=text(client.token_eos()),
                               bos_token=text(client.token_bos()), add_generation_prompt=False)


def _holds(client: Any, tokens: Sequence[int]) -> None:
    """Tell llama-cpp-python that the context's KV cache holds ``tokens`` (as ``Llama.load_state`` does)."""
    client.input_ids[:len(tokens)] = tokens
    client.n_tokens = len(tokens)
    client._requires_eval = True  # no logits yet: the next call reads at least one token before sampling


def _load_state(client: Any, path: Path, tokens: Sequence[int]) -> bool:
    """Load the state saved in ``path`` into ``client`` if it holds exactly ``tokens``; else leave it empty."""
    saved = (llama_cpp.llama_token * len(tokens))()
    count = ctypes.c_size_t(0)
    if (llama_cpp.llama_state_load_file(client.ctx, str(path).encode(), saved, len(tokens), ctypes.byref(count))
            and list(saved[:count.value]) == list(tokens)):
        _holds(client, tokens)
        return True
    client.reset()  # whatever a refused file left in the cache is dropped before the next evaluation
    return False


def _save_state(client: Any, path: Path, tokens: Sequence[int]) -> None:
    """Save the context's state (KV cache and ``tokens``) to ``path``, whole or not at all, and keep the directory
    under ``STATE_DIR_LIMIT``. Several processes may save the same prefix at once: the last rename wins."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    if not llama_cpp.llama_state_save_file(client.ctx, str(partial).encode(),
                                           (llama_cpp.llama_token * len(tokens))(*tokens), len(tokens)):
        partial.unlink(missing_ok=True)
        raise OSError(f"llama.cpp could not write {partial}")
    os.replace(partial, path)
    _prune(path.parent, STATE_DIR_LIMIT)


def _copy_state(source: Any, target: Any, n_tokens: int) -> None:
    """Give ``target`` the first ``n_tokens`` of ``source``'s KV cache (its only sequence, copied whole; the rest
    is dropped by the next evaluation)."""
    size = llama_cpp.llama_state_seq_get_size(source.ctx, 0)
    data = (ctypes.c_uint8 * size)()
    written = llama_cpp.llama_state_seq_get_data(source.ctx, data, size, 0)
    if written and llama_cpp.llama_state_seq_set_data(target.ctx, data, written, 0):
        _holds(target, source.input_ids[:n_tokens].tolist())
    else:
        target.reset()


def _touch(path: Path) -> None:
    """Mark a state file used, so pruning keeps it longest."""
    try:
        os.utime(path)
    except OSError:
        pass


def _prune(directory: Path, limit: int) -> None:
    """Delete the least recently used state files until the rest fit in ``limit`` bytes."""
    files = []
    for f in directory.glob("*.llama-state"):
        try:
            files.append((f.stat().st_mtime, f.stat().st_size, f))
        except OSError:  # deleted by another process meanwhile
            pass
    total = 0
    for _, size, f in sorted(files, key=lambda t: t[0], reverse=True):
        total += size
        if total > limit:
            f.unlink(missing_ok=True)
