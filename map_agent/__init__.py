"""map-agent: MAP, the Modular Agentic Planner, with symbolic verifier tools.

>>> from map_agent import MAPAgent
>>> from map_agent.tasks import hanoi
>>> MAPAgent(hanoi.problem(7), backend="oracle").plan().solved
True
"""

from map_agent.agent import MAPAgent, PlanResult, Usage
from map_agent.config import MAPConfig
from map_agent.task import Problem, Task, get_task

__all__ = ["MAPAgent", "MAPConfig", "PlanResult", "Problem", "Task", "Usage", "get_task"]
