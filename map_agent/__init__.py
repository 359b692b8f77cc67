"""map-agent: MAP, the Modular Agentic Planner, with symbolic verifier tools.

>>> from map_agent import MAPAgent
>>> from map_agent.tasks import hanoi
>>> MAPAgent(hanoi.problem(7), backend="oracle").plan().solved
True
"""

from typing import TYPE_CHECKING

from map_agent.lazy import lazy_exports

if TYPE_CHECKING:
    from map_agent.agent import MAPAgent, PlanResult, Usage
    from map_agent.config import MAPConfig
    from map_agent.task import Problem, Task, get_task

#: public name -> the module defining it. Imported on first use (PEP 562): ``import map_agent.task`` or the CLI's
#: ``--help`` must not pay for LangGraph and the chat-model backends that ``MAPAgent`` brings in
_EXPORTS = {"MAPAgent": "map_agent.agent", "PlanResult": "map_agent.agent", "Usage": "map_agent.agent",
            "MAPConfig": "map_agent.config", "Problem": "map_agent.task", "Task": "map_agent.task",
            "get_task": "map_agent.task"}

__all__ = ["MAPAgent", "MAPConfig", "PlanResult", "Problem", "Task", "Usage", "get_task"]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
