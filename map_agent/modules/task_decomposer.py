"""TaskDecomposer (aPFC): from the start state and the goal, the subgoals S_Z pursued in order (eq. 3)."""

from __future__ import annotations

from map_agent.modules.base import LLMModule
from map_agent.modules.oracle import OracleModule
from map_agent.modules.schemas import TaskDecomposerInput
from map_agent.task import shortest_path


class TaskDecomposer(LLMModule):
    name = "TaskDecomposer"
    stem = "task_decomposer"
    request = "Give {n_subgoals} subgoal(s) on the way from the start state to the goal."

    def closing(self, inp: TaskDecomposerInput) -> str:
        if inp.n_subgoals is None:  # as many as the model needs (StrategyQA's sub-questions)
            return "Give as many subgoals as needed, in order, on the way to the goal."
        return super().closing(inp)

    def fields(self, inp: TaskDecomposerInput) -> list[tuple[str, str]]:
        return [("Start state", self.task.render_state(inp.state)), ("Goal", self.task.render_goal(inp.goal))]


class OracleTaskDecomposer(OracleModule):
    """States evenly spaced along an optimal path: the subgoals a perfect decomposer could set."""

    name = "TaskDecomposer"

    def compute(self, inp: TaskDecomposerInput):
        known = self.task.oracle_subgoals(inp.state, inp.goal, inp.n_subgoals, self.problem)
        if known is not None:
            return self.output_model.model_validate(
                {"reasoning": "the task's own decomposition", "subgoals": known or [inp.goal]})
        path = shortest_path(self.task, inp.state, inp.goal, self.problem)
        states = path.states[1:-1]
        k = inp.n_subgoals or 1
        picks = sorted({round(len(path.actions) * (i + 1) / (k + 1)) - 1 for i in range(k)} - {-1})
        subgoals = [self.task.as_goal(self.task.State.model_validate(states[i])) for i in picks if i < len(states)]
        return self.output_model.model_validate(
            {"reasoning": f"{len(subgoals)} state(s) evenly spaced on an optimal {len(path.actions)}-action path",
             "subgoals": subgoals or [inp.goal]})
