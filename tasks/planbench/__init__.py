"""PlanBench's Mystery Blocksworld and Logistics plan-generation tasks (Valmeekam et al.) as MAP tasks.

All 500 Mystery Blocksworld and 285 Logistics instances of PlanBench's ``task_1_plan_generation``. The MAP paper's
setup (Methods) and code (``planbench/*/gpt4_map_*_plan_generation.py``): Actor, Monitor, Predictor and
Orchestrator, no tree search, no Evaluator; Logistics adds a TaskDecomposer that sets one subgoal (the code's
``subgoal_module``), Mystery Blocksworld runs without it; one run (no search, temperature 0: deterministic);
N = optimal plan length + 4, never shown to a model. The optimal lengths come from a cached table
(``optimal_lengths.py``) and, with PlanBench's ground-truth plans, are ground truth: ``Problem.hidden`` and
``optimal_length``, never rendered. The environment (``environment``) is the PDDL model of
``map_agent.tools.strips``; prompts render it in PlanBench's own sentences (``language``), and the in-context
examples are the original's (``prompts/<domain>/*.examples.json`` name their source). Mystery Blocksworld's
``transfer_blocksworld`` and ``transfer_hanoi`` splits run the test instances with Blocksworld's or the Tower of
Hanoi's examples instead (the paper's in-context transfer experiments; ``transfer``).

>>> task = MysteryBlocksworldTask()
>>> p = task.problem(2)
>>> task.render_goal(task.goal(p)), p.optimal_length, p.max_actions
('My goal is to have that object c craves object a.', 4, 8)
"""

from __future__ import annotations

from map_agent.tasks.planbench.environment import EXTRA_ACTIONS, PlanBenchTask, _Action, _Facts
from map_agent.tasks.planbench.transfer import SOURCES

__all__ = ["EXTRA_ACTIONS", "LogisticsTask", "MysteryBlocksworldTask", "PlanBenchTask"]


class MysteryBlocksworldFacts(_Facts):
    """A Mystery Blocksworld state or goal: facts over province, planet, harmony, pain and craves."""

    domain = "mystery_blocksworld"


class MysteryBlocksworldAction(_Action):
    """attack / succumb (one object), feast / overcome (object, other object)."""

    domain = "mystery_blocksworld"


class LogisticsFacts(_Facts):
    """A Logistics state or goal: at, in, in-city and airport facts (type facts are implicit)."""

    domain = "logistics"


class LogisticsAction(_Action):
    """load-/unload-truck and -airplane (package, vehicle, location), drive-truck, fly-airplane."""

    domain = "logistics"


class MysteryBlocksworldTask(PlanBenchTask):
    """Mystery (deceptive) Blocksworld: Blocksworld with meaningless names; no TaskDecomposer (paper)."""

    name = "mystery_blocksworld"
    domain = "mystery_blocksworld"
    State = MysteryBlocksworldFacts
    Action = MysteryBlocksworldAction
    Goal = MysteryBlocksworldFacts
    default_modules = {"TaskDecomposer": "off", "Actor": "llm", "Monitor": "llm", "Predictor": "llm",
                       "Evaluator": "off", "Orchestrator": "llm"}
    #: the original's Predictor and Orchestrator also reason before they answer
    reasoning_modules = frozenset({"TaskDecomposer", "Monitor", "Evaluator", "Predictor", "Orchestrator"})
    #: the paper's transfer experiments: Blocksworld's and the Tower of Hanoi's examples instead of this domain's
    transfer_sources = SOURCES


class LogisticsTask(PlanBenchTask):
    """Logistics: trucks within cities, airplanes between airports; a TaskDecomposer sets one subgoal (paper)."""

    name = "logistics"
    domain = "logistics"
    State = LogisticsFacts
    Action = LogisticsAction
    Goal = LogisticsFacts
    #: Logistics' state spaces outgrow breadth-first search (~700 states/s here) beyond the smallest instances:
    #: past 300 states (~0.4 s, as long as a Fast Downward call) the distance goes to Fast Downward
    bfs_states = 300
    default_modules = {"TaskDecomposer": "llm", "Actor": "llm", "Monitor": "llm", "Predictor": "llm",
                       "Evaluator": "off", "Orchestrator": "llm"}
    #: the original's Orchestrator checks the pursued goal only: the subgoal until it is reached, then the goal
    protocol = {"final_goal_first": False}
    #: the original's Orchestrator reasons before it answers
    reasoning_modules = frozenset({"TaskDecomposer", "Monitor", "Evaluator", "Orchestrator"})
