"""The six MAP modules, each a typed callable in an LLM and an oracle variant.

``build_modules`` binds them to a task, a problem and a configuration: per module an ``LLMModule`` on the chat
model, the symbolic oracle, a learned network ("learned": ``map_agent.learned.critic``), or nothing ("off").
"""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel

from map_agent.config import GRAMMARS, Resolved
from map_agent.modules.actor import Actor, OracleActor
from map_agent.modules.base import REPLY_BUDGETS, CallRecord, LLMModule, Module, ModuleResult
from map_agent.modules.corrupted import Corrupted
from map_agent.modules.evaluator import Evaluator, OracleEvaluator
from map_agent.modules.monitor import Monitor, OracleMonitor
from map_agent.modules.oracle import OracleChatModel, OracleModule
from map_agent.modules.orchestrator import OracleOrchestrator, Orchestrator
from map_agent.modules.predictor import OraclePredictor, Predictor
from map_agent.modules.task_decomposer import OracleTaskDecomposer, TaskDecomposer
from map_agent.task import Problem, Task

LLM_MODULES: dict[str, type[LLMModule]] = {
    m.name: m for m in (TaskDecomposer, Actor, Monitor, Predictor, Evaluator, Orchestrator)
}
ORACLES: dict[str, type[OracleModule]] = {
    m.name: m for m in (OracleTaskDecomposer, OracleActor, OracleMonitor, OraclePredictor, OracleEvaluator,
                        OracleOrchestrator)
}


def build_modules(task: Task, problem: Problem, config: Resolved,
                  llm: BaseChatModel | None) -> dict[str, Module]:
    """The modules a run uses, by name; modules that are "off" are absent."""
    modules: dict[str, Module] = {}
    for name, impl in config.modules.items():
        if impl == "oracle":
            modules[name] = ORACLES[name](task, problem, reasoning=config.reasoning)
        elif impl == "learned":  # the task's trained network (numpy inference); imported only when asked for
            from map_agent.learned.critic import LEARNED_MODULES

            modules[name] = LEARNED_MODULES[name](task, problem, reasoning=config.reasoning)
        elif impl == "llm":
            if llm is None:
                raise ValueError(f"modules.{name} is 'llm' but no chat model was given")
            options: dict = {"temperature": 0.0}
            if name == "Actor":
                options = {"temperature": config.actor_temperature,
                           "retry_temperature_step": config.retry_temperature_step}
            if config.prompts == "ft":
                options["variant"] = "ft"  # the short prompt a fine-tuned model was trained on
            elif name == "TaskDecomposer" and config.n_subgoals and config.n_subgoals > 1:
                options["variant"] = f"k{config.n_subgoals}"  # the K-subgoal ablation has its own examples
            if name == "Actor":  # how a transfer split's examples read (the original: bare action lists)
                options["transfer_form"] = config.transfer_examples
            if name == "Monitor":
                options["read_last_line"] = config.parse_reask == "actor"
            if name in GRAMMARS:  # the reply grammar: the module's static schema, or the task's state-dependent one
                options["grammar"] = getattr(config, GRAMMARS[name])
            # the original re-asks only the Actor; the other modules' unparseable replies take its fallbacks
            retries = config.parse_retries if name == "Actor" or config.parse_reask == "all" else 0
            if config.reply_budget == "original":  # the original script's max_tokens for this module
                options["max_tokens"] = REPLY_BUDGETS.get(task.name, {}).get(name)
            modules[name] = LLM_MODULES[name](task, problem, llm, parse_retries=retries,
                                              top_p=config.top_p, seed=config.seed, examples=config.examples,
                                              reasoning=config.reasoning, hints=config.prompt_hints, **options)
    for spec in config.corrupt:  # errors injected at known rates (``map-agent sensitivity``); seed = run index
        modules[spec.module] = Corrupted(modules[spec.module], spec, run=config.seed)
    return modules


__all__ = ["LLM_MODULES", "ORACLES", "CallRecord", "LLMModule", "Module", "ModuleResult", "OracleChatModel",
           "OracleModule", "build_modules"]
