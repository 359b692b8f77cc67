"""Every command-line option, defined once: one registry that every subcommand takes its options from.

Six hand-made parsers had drifted apart (``reproduce`` crashed on a ``--timeout`` it never defined, ``eval
maze-code`` rejected the ``--base-url`` its own error message asked for, ``--timeout`` meant a model request in one
command and a script in another). Here each option has one flag, one type, one help text and one meaning; a
subcommand names the options it takes (``add_options``) and may only change a default (``defaults=``), never the
meaning. What the options configure is read back in one place as well: ``chat_options`` (the chat model),
``map_config`` (a MAP run) and ``check_applicable`` (an option given to a backend it does not apply to is an
error, not silently ignored).

>>> import argparse
>>> p = argparse.ArgumentParser()
>>> add_options(p, "backend", "model", "base_url", "timeout", "json_schema", "cache_dir", "no_cache")
>>> args = p.parse_args(["--backend", "openai", "--model", "m", "--base-url", "http://127.0.0.1:8000/v1"])
>>> chat_options(args)["base_url"], chat_options(args)["json_schema"]
('http://127.0.0.1:8000/v1', 'auto')
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, get_args

from pydantic import StringConstraints

from map_agent.config import DEVIATIONS, ERROR_KINDS, Corruption, Impl, MAPConfig
from map_agent.files import load_file
from map_agent.llm.endpoint import DEFAULT_API_KEY_ENV, JSON_SCHEMA_CHOICES, env_api_key
from map_agent.task import MODULES

#: chat-model backends ("oracle": the task's symbolic modules, no language model)
BACKEND_CHOICES = ("local", "openai", "oracle")
#: where an evaluation's jobs run (``map_agent.eval.executors``): threads here, or Ray tasks on a cluster
EXECUTOR_CHOICES = ("local", "ray")


def int_in(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number in ``[low, high]``, with a message naming the range."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range: {low} to {high}")
        return value

    parse.__name__ = "integer"
    return parse


def seconds(text: str) -> float:
    """An argparse type: seconds, more than 0 and at most an hour."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{value:g} is out of range: more than 0, at most 3600 seconds")
    return value


@dataclass(frozen=True)
class Option:
    """One option: its flags, argparse settings, the help group it is listed under and, for options of a chat
    model, the backends it applies to (given with another backend it is an error)."""

    flags: tuple[str, ...]
    settings: dict[str, Any]
    group: str
    backends: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


MODEL, CACHE, RUN, MAP = "model", "prompt cache", "run", "MAP configuration (defaults: the paper's, per task)"
SCALE = "scaling out (extra [ray])"

#: dest -> option. The order is the order of ``--help``.
OPTIONS: dict[str, Option] = {
    # -- the model ------------------------------------------------------------------------------------------
    "backend": Option(("--backend",), {"choices": BACKEND_CHOICES, "default": "local", "help": (
        "local: the embedded SmolLM2-135M on llama.cpp, offline; openai: any OpenAI-compatible endpoint "
        "(OpenAI, vLLM, Ollama, llama.cpp servers); oracle: the task's symbolic modules, no model")}, MODEL),
    "model": Option(("--model",), {"help": "model name (openai), GGUF path or shipped adapter name such as "
                                           "map-hanoi (local)"}, MODEL, ("local", "openai")),
    "base_url": Option(("--base-url",), {"help": "OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 "
                                                 "(else MAP_AGENT_BASE_URL, else OPENAI_BASE_URL)"},
                       MODEL, ("openai",)),
    "api_key_env": Option(("--api-key-env",), {"default": DEFAULT_API_KEY_ENV, "metavar": "VAR", "help": (
        "environment variable holding the API key (the key itself never goes on the command line, in a "
        "record or in the prompt cache's keys)")}, MODEL, ("openai",)),
    "timeout": Option(("--timeout",), {"type": seconds, "default": 120.0, "help": (
        "seconds one model request may take; then it is retried, then recorded as that call's failure")},
        MODEL, ("openai",)),
    "json_schema": Option(("--json-schema",), {"choices": JSON_SCHEMA_CHOICES, "default": "auto", "help": (
        "how each reply's JSON schema is sent: auto asks the server before the run; json_schema (OpenAI, vLLM, "
        "Ollama, llama-server), json_object (llama-cpp-python's server), guided_json (vLLM), off (the schema is "
        "only in the prompt)")}, MODEL, ("openai",)),
    "context_length": Option(("--context-length",), {"type": int_in(256, 10**7), "metavar": "TOKENS", "help": (
        "the model's context window; default: the server's own answer (openai) or 8192 (local). No request's "
        "prompt plus reply budget exceeds it")}, MODEL, ("local", "openai")),
    "max_tokens": Option(("--max-tokens",), {"type": int_in(16, 10**6), "metavar": "TOKENS", "help": (
        "reply budget of one model call (default: the command's own: 512 for a MAP module, 2048 for a "
        "script or a PDDL problem)")}, MODEL, ("local", "openai")),
    "threads": Option(("--threads",), {"type": int_in(1, 256), "help": "CPU threads of the local model "
                                                                        "(llama.cpp) or of training (torch)"},
                      MODEL, ("local",)),
    "module_model": Option(("--module-model",), {"action": "append", "default": [], "metavar": "NAME=MODEL",
                                                 "help": (
        "the model name one module's requests ask for, e.g. Actor=map-hanoi-actor: one server holding a base model "
        "and an adapter per module (llama.cpp's server, vLLM --lora-modules); other modules ask for --model")},
        MODEL, ("openai",)),
    "module_models": Option(("--module-models",), {"metavar": "FILE", "help": (
        "the same for several modules: a JSON file, or YAML if named .yaml or .yml, {module: model name} "
        "(--module-model wins)")},
        MODEL, ("openai",)),
    "lora": Option(("--lora",), {"metavar": "GGUF", "help": "LoRA adapter (GGUF) for the local model"},
                   MODEL, ("local",)),
    # -- the prompt cache ----------------------------------------------------------------------------------
    "cache_dir": Option(("--cache-dir",), {"help": "prompt cache directory (default: $MAP_AGENT_CACHE_DIR, "
                                                   "else the user cache dir)"}, CACHE),
    "cache": Option(("--cache",), {"metavar": "URL", "help": (
        "a prompt cache several machines share: redis://host:port/db (extra [redis]; default: "
        "$MAP_AGENT_CACHE_URL, which may also carry the password; else the disk cache)")}, CACHE),
    "no_cache": Option(("--no-cache",), {"action": "store_true", "help": "bypass the prompt cache"}, CACHE),
    # -- what is run ---------------------------------------------------------------------------------------
    "runs": Option(("--runs",), {"type": int_in(1, 1000), "help": (
        "runs per problem (default: the paper's for the split, e.g. Hanoi test3 5, test4 1)")}, RUN),
    "limit": Option(("--limit",), {"type": int_in(1, 10**6), "metavar": "K", "help": "the first K problems only"},
                    RUN),
    "concurrency": Option(("--concurrency",), {"type": int_in(1, 64), "default": 1,
                                               "help": "problems planned at once"}, RUN),
    "out": Option(("--out",), {"default": "runs", "help": "folder this command writes into (for evaluations: "
                                                          "the parent of run directories)"}, RUN),
    "run_id": Option(("--run-id",), {"help": "name of the run directory under --out; an existing one is "
                                             "resumed (default: derived from the command)"}, RUN),
    "seed": Option(("--seed",), {"type": int_in(0, 2**31 - 1), "help": "seed of the command's random choices "
                                                                       "(data, sampling, training)"}, RUN),
    # -- where the jobs run ---------------------------------------------------------------------------------
    "executor": Option(("--executor",), {"choices": EXECUTOR_CHOICES, "default": "local", "help": (
        "local: problems run in threads of this process (--concurrency); ray: each (problem, run) is a Ray task "
        "on a cluster, records written here as by local")}, SCALE),
    "ray_address": Option(("--ray-address",), {"metavar": "ADDRESS", "help": (
        "with --executor ray: the cluster to run on, e.g. auto (the one this machine joined with `ray start`) or "
        "ray://HEAD:10001 (Ray Client, extra ray[client]); default: $RAY_ADDRESS, else a local cluster on this "
        "machine's CPUs")}, SCALE),
    "max_in_flight": Option(("--max-in-flight",), {"type": int_in(1, 10**5), "metavar": "K", "help": (
        "with --executor ray: most jobs running at once per model endpoint (default: as many as the cluster's "
        "CPUs take)")}, SCALE),
    # -- MAP -----------------------------------------------------------------------------------------------
    "branches": Option(("--branches", "-B"), {"type": int_in(1, 4),
                                              "help": "B: actions proposed and searched per state (default 2)"}, MAP),
    "layers": Option(("--layers", "-L"), {"type": int_in(1, 4), "help": "L: depth of the tree search (default 2)"},
                     MAP),
    "max_actions": Option(("--max-actions", "-N"), {"type": int_in(1, 1000),
                                                    "help": "action budget N (default: the problem's)"}, MAP),
    "search": Option(("--search",), {"action": argparse.BooleanOptionalAction, "default": None,
                                     "help": "tree search (default: the task's)"}, MAP),
    "subgoals": Option(("--subgoals",), {"type": int_in(1, 4), "help": "TaskDecomposer subgoals K"}, MAP),
    "no_monitor": Option(("--no-monitor",), {"action": "store_true", "help": "ablation: every proposal is "
                                                                             "accepted"}, MAP),
    "no_decomposer": Option(("--no-decomposer",), {"action": "store_true",
                                                   "help": "ablation: pursue the final goal only"}, MAP),
    "module": Option(("--module",), {"action": "append", "default": [], "metavar": "NAME=IMPL", "help": (
        f"per-module implementation, IMPL one of {', '.join(get_args(Impl))}; modules: {', '.join(MODULES)}")},
        MAP),
    "corrupt": Option(("--corrupt",), {"action": "append", "default": [], "metavar": "MODULE:KIND:RATE", "help": (
        "inject errors into an oracle module (--backend oracle): KIND on a share RATE of its calls, e.g. "
        f"Actor:fresh_wrong_move:0.1; kinds: {', '.join(ERROR_KINDS)} (map-agent sensitivity sweeps them)")}, MAP),
    "prompts": Option(("--prompts",), {"choices": ["paper", "ft"], "help": (
        "module prompts: the paper's (default), or 'ft', the short ones a fine-tuned adapter learnt (default "
        "with a shipped adapter, e.g. --model map-hanoi)")}, MAP),
    "monitor_retries": Option(("--monitor-retries",), {"type": int_in(0, 20), "help": (
        "extra Actor rounds after rejections (default 9: 10 rounds)")}, MAP),
    "parse_retries": Option(("--parse-retries",), {"type": int_in(0, 20), "help": (
        "re-asks after an unparseable reply (default 9: 10 attempts)")}, MAP),
}

#: the options of a chat model (every command that calls one)
MODEL_OPTIONS = ("backend", "model", "base_url", "api_key_env", "timeout", "json_schema", "context_length",
                 "max_tokens", "threads", "lora", "cache", "cache_dir", "no_cache")
#: the options that send each MAP module's requests to its own model name on one server (``module_models``)
ROUTING_OPTIONS = ("module_model", "module_models")
#: the options of where an evaluation's jobs run (``executor_options``)
EXECUTOR_OPTIONS = ("executor", "ray_address", "max_in_flight")
#: the options of a MAP run, named deviations from the original code included (``deviation_options``)
MAP_OPTIONS = ("branches", "layers", "max_actions", "search", "subgoals", "no_monitor", "no_decomposer", "module",
               "corrupt", "prompts", "monitor_retries", "parse_retries")
DEVIATIONS_GROUP = "differences from the original MAP code (default: the original's)"


def deviation_options() -> dict[str, Option]:
    """One flag per named deviation (``config.DEVIATIONS``), generated so the CLI can never miss one."""
    options = {}
    for name, (original, ours, why) in DEVIATIONS.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(original, bool):
            settings = {"action": argparse.BooleanOptionalAction, "default": None, "help": (
                f"original: {'on' if original else 'off'}; --{'no-' if original else ''}"
                f"{name.replace('_', '-')}: {why}")}
        elif isinstance(original, str):
            settings = {"choices": list(get_args(MAPConfig.model_fields[name].annotation)),
                        "help": f"original: {original}; {ours}: {why}"}
        else:
            settings = {"type": type(original), "help": f"original: {original}; e.g. {ours}: {why}"}
        options[name] = Option((flag,), settings, DEVIATIONS_GROUP)
    return options


def add_options(parser: argparse.ArgumentParser, *names: str, defaults: dict[str, Any] | None = None,
                backends: Iterable[str] = BACKEND_CHOICES) -> None:
    """Add the named options (and, with "map", every MAP option and deviation) to ``parser``, grouped as in
    ``--help``. ``defaults`` changes a default for this command only; ``backends`` narrows ``--backend``'s
    choices (an evaluation of model-written code has no oracle backend)."""
    registry = {**OPTIONS, **deviation_options()}
    wanted = [n for name in names for n in ((*MAP_OPTIONS, *DEVIATIONS) if name == "map" else
                                            MODEL_OPTIONS if name == "chat model" else (name,))]
    groups: dict[str, argparse._ArgumentGroup] = {}
    for name in wanted:
        option = registry[name]
        settings = dict(option.settings)
        if name == "backend":
            settings["choices"] = [b for b in BACKEND_CHOICES if b in set(backends)]
            settings["default"] = settings["choices"][0] if "local" not in settings["choices"] else "local"
        if defaults and name in defaults:
            settings["default"] = defaults[name]
        group = groups.get(option.group) or groups.setdefault(option.group, parser.add_argument_group(option.group))
        group.add_argument(*option.flags, dest=name, **settings)


def check_applicable(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """An option given with a backend it does not apply to (``--lora`` with openai, ``--base-url`` with local)
    is a usage error naming both, not a setting silently ignored."""
    backend = getattr(args, "backend", None)
    for name, option in OPTIONS.items():
        if not option.backends or backend is None or backend in option.backends or not hasattr(args, name):
            continue
        if getattr(args, name) != parser.get_default(name):
            raise ValueError(f"{option.flags[0]} applies to the {' and '.join(option.backends)} backend"
                             f"{'s' if len(option.backends) > 1 else ''}, not --backend {backend}")


def api_key(args: argparse.Namespace) -> str | None:
    """The API key from the environment variable ``--api-key-env`` names (never from the command line)."""
    return env_api_key(getattr(args, "api_key_env", None))


def chat_options(args: argparse.Namespace, **command_defaults: Any) -> dict[str, Any]:
    """What the options say about the chat model, as keyword arguments of ``make_chat_model`` (and of
    ``MAPAgent``/``Evaluation``, which pass them on): only those of the chosen backend. ``command_defaults``
    fills what the user left unset with the command's own default (e.g. ``max_tokens=2048``)."""
    options: dict[str, Any] = {"cache": False if getattr(args, "no_cache", False) else prompt_cache(args)}
    chosen = {name: getattr(args, name, None) for name in MODEL_OPTIONS}
    for name, value in command_defaults.items():
        if chosen.get(name) is None:
            chosen[name] = value
    if chosen["max_tokens"] is not None:
        options["max_tokens"] = chosen["max_tokens"]
    if args.backend == "local":
        options.update(threads=chosen["threads"], lora_path=chosen["lora"])
        if chosen["context_length"] is not None:
            options["n_ctx"] = chosen["context_length"]
    elif args.backend == "openai":
        options.update(base_url=chosen["base_url"], json_schema=chosen["json_schema"] or "auto",
                       timeout=chosen["timeout"] or OPTIONS["timeout"].settings["default"],
                       api_key_env=chosen["api_key_env"] or DEFAULT_API_KEY_ENV,
                       context_length=chosen["context_length"])
        if routes := module_models(args):
            options["module_models"] = routes
    return options


def module_models(args: argparse.Namespace) -> dict[str, str]:
    """Module -> model name, from ``--module-models FILE`` then ``--module-model NAME=MODEL`` (which wins); every
    name a MAP module's."""
    routes: dict[str, str] = {}
    path = getattr(args, "module_models", None)
    if path:  # a mapping of module to model name, e.g. {"Actor": "map-hanoi-actor"}; a broken file names itself
        try:
            routes.update(load_file(path, dict[str, Annotated[str, StringConstraints(min_length=1)]]))
        except OSError as e:
            raise ValueError(f"--module-models {path}: {e.strerror or e}") from None
    for spec in getattr(args, "module_model", None) or []:
        name, sep, model = spec.partition("=")
        if not sep or not model:
            raise ValueError(f"--module-model {spec!r}: expected NAME=MODEL (e.g. Actor=map-hanoi-actor)")
        routes[name] = model
    unknown = sorted(set(routes) - set(MODULES))
    if unknown:
        raise ValueError(f"--module-model: no module {', '.join(unknown)}; modules: {', '.join(MODULES)}")
    return routes


def prompt_cache(args: argparse.Namespace) -> str | None:
    """The prompt cache the options name: a Redis URL (``--cache``), a directory (``--cache-dir``), or None (then
    ``$MAP_AGENT_CACHE_URL``, else the default directory: ``map_agent.llm.cache.open_cache``)."""
    from map_agent.llm.cache import is_cache_url

    url, directory = getattr(args, "cache", None), getattr(args, "cache_dir", None)
    if url and directory:
        raise ValueError("--cache and --cache-dir name two prompt caches: give one")
    if url and not is_cache_url(url):
        raise ValueError(f"--cache {url!r}: expected redis://host:port/db (a directory is --cache-dir)")
    return url or directory


def executor_options(args: argparse.Namespace) -> dict[str, Any]:
    """Where the jobs run, as keyword arguments of ``Evaluation`` and ``Reproduction``; a Ray option without
    ``--executor ray`` is an error, not a setting silently ignored."""
    chosen = {name: getattr(args, name, None) for name in EXECUTOR_OPTIONS}
    if chosen["executor"] != "ray":
        for name in ("ray_address", "max_in_flight"):
            if chosen[name] is not None:
                raise ValueError(f"{OPTIONS[name].flags[0]} applies to --executor ray")
    return {"executor": chosen["executor"] or "local", "ray_address": chosen["ray_address"],
            "max_in_flight": chosen["max_in_flight"]}


def map_config(args: argparse.Namespace) -> MAPConfig:
    """The MAP configuration the options describe; its ``model_fields_set`` is what the user gave, so fields left
    unset keep the task's original protocol (``MAPConfig.for_task``) or an experiment cell's own setting."""
    modules: dict[str, str] = {}
    impls = get_args(Impl)
    for spec in args.module:
        name, _, impl = spec.partition("=")
        if name not in MODULES or impl not in impls:
            raise ValueError(f"--module {spec!r}: expected NAME=IMPL, NAME one of {', '.join(MODULES)} and IMPL one "
                             f"of {', '.join(impls)} (e.g. --module Evaluator=oracle)")
        modules[name] = impl
    if args.no_monitor:
        modules["Monitor"] = "off"
    if args.no_decomposer:
        modules["TaskDecomposer"] = "off"
    given = {"branches": args.branches, "layers": args.layers, "max_actions": args.max_actions,
             "search": args.search, "n_subgoals": args.subgoals, "modules": modules or None,
             "corrupt": tuple(Corruption.parse(c, getattr(args, "seed", None) or 0) for c in args.corrupt) or None,
             **{f: getattr(args, f, None) for f in (*DEVIATIONS, "monitor_retries", "parse_retries", "prompts")}}
    # only what the user gave is set: the rest stays the task's protocol, or an experiment cell's setting
    config = MAPConfig(**{f: v for f, v in given.items() if v is not None})
    # a shipped adapter runs under the settings it was trained with
    if args.backend == "local" and getattr(args, "model", None):
        from map_agent.learned.adapters import ADAPTERS, adapter_config

        if args.model in ADAPTERS:
            return adapter_config(args.model, config)
    return config
