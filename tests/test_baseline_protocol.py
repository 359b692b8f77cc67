"""Whole-plan baselines get the original scripts' reply budget and reasoning shape, and a cut reply is counted as
what it is (issue 15, item 2): ``summary.json`` reports ``no_plan`` and ``truncated_replies`` apart from unsolved
problems."""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from messy_model import MessyChatModel
from pydantic import PrivateAttr

from map_agent.baselines import get_method
from map_agent.baselines.agent import BaselineAgent
from map_agent.baselines.base import BaselineConfig
from map_agent.baselines.oracle import BaselineOracleChatModel
from map_agent.config import MAPConfig
from map_agent.eval.runner import Evaluation, RunSpec
from map_agent.task import get_task


class Recording(BaselineOracleChatModel):
    """The ground truth's replies; keeps each request's sampling parameters."""

    _sent: list[dict[str, Any]] = PrivateAttr(default_factory=list)

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        self._sent.append(kwargs)
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)


def first_problem(task: str, split: str = "test"):
    return get_task(task).problems(split)[0]


@pytest.mark.parametrize(("task", "split", "method", "tokens"), [
    ("logistics", "test", "cot", 4000),  # planbench/logistics/gpt4_logistics_plan_generation_coticl.py
    ("mystery_blocksworld", "test", "cot", 4000),
    ("logistics", "test", "icl", 2000),
    ("hanoi", "test3", "cot", 2000),  # toh/gpt4_cot_icl_toh.py
    ("cogeval", "valuepath", "icl", 1000),  # cogeval/gpt4_standard_icl_valuepath.py
    ("strategyqa", "dev100", "cot", 2000),  # strategyQA/cot_strategyqa.py
    ("hanoi", "test3", "tot", 1000),  # models.gpt's default
])
def test_each_method_and_task_sends_the_originals_reply_budget(task, split, method, tokens):
    llm = Recording()
    result = BaselineAgent(first_problem(task, split), method, llm=llm, cache=False).plan()
    assert result.solved
    assert llm._sent and {k["max_tokens"] for k in llm._sent} == {tokens}


def test_logistics_cot_reasons_once_before_the_plan_as_the_original():
    task = get_task("logistics")
    problem = first_problem("logistics")
    [prompt] = get_method("cot")(task, problem, None, BaselineConfig(method="cot")).first_prompts()
    schema = json.loads(prompt[0].content.split("JSON schema:\n", 1)[1])
    assert "reasoning" in schema["properties"]  # once, before the plan ...
    step = schema["$defs"][schema["properties"]["steps"]["items"]["$ref"].split("/")[-1]]
    assert "reasoning" not in step["properties"]  # ... not before every action
    example = json.loads(prompt[2].content)
    assert example["reasoning"].startswith("p0 is at l1-0") and "reasoning" not in example["steps"][0]
    per_step = get_method("cot")(task, problem, None, BaselineConfig(method="cot", settings={
        "reasoning": "per_step"})).first_prompts()[0]
    assert "reasoning" in json.loads(per_step[2].content)["steps"][0]


def test_a_cut_plan_is_counted_as_truncated_and_no_plan_not_as_a_planning_failure(tmp_path):
    ids = [p.id for p in get_task("logistics").problems("test")[:2]]
    spec = RunSpec(task="logistics", split="test", runs=1, backend="scripted", model=None,
                   config=MAPConfig(parse_retries=1), problem_ids=ids, method="cot")
    llm: BaseChatModel = MessyChatModel(correct=BaselineOracleChatModel(), script={"cot.plan": ["cut"]})
    summary = Evaluation(spec, tmp_path, "cut", llm=llm, cache=False).run()
    assert summary["pct_solved"]["mean"] == 0
    assert summary["no_plan"] == 2 and summary["truncated_replies"] == 4  # two problems, a reply and a re-ask each
    clean = Evaluation(spec, tmp_path, "clean", llm=MessyChatModel(correct=BaselineOracleChatModel()),
                       cache=False).run()
    assert clean["no_plan"] == clean["truncated_replies"] == 0 and clean["pct_solved"]["mean"] == 100


def test_hanoi_cot_shows_the_originals_goal_recursion_reasoning_and_the_rule_check_is_an_option():
    """toh/toh_twoshot_cot_examples.py reasons from the goal ("0 has to go to C, so 1, to its right, goes to B
    first"); this project's rule-by-rule check is the named setting ``examples="rule_check"``."""
    task, problem = get_task("hanoi"), get_task("hanoi").problems("test3")[0]

    def first_example(**settings):
        prompt = get_method("cot")(task, problem, None, BaselineConfig(method="cot", settings=settings)) \
            .first_prompts()[0]
        return prompt[-1].content, json.loads(prompt[2].content)["steps"][0]["reasoning"]

    request, reasoning = first_example()
    assert "has to go" in reasoning and "first" in reasoning and "obeys both rules" not in reasoning
    assert "reason\nfrom the goal" in request
    request, reasoning = first_example(examples="rule_check")
    assert "obeys both rules" in reasoning and "why it obeys both rules" in request


def test_llama3_map_runs_once_as_the_original():
    from importlib.resources import files

    import yaml

    grid = yaml.safe_load(files("map_agent.experiments").joinpath("hanoi_llama3.yaml").read_text())["grids"][0]
    assert grid["runs"]["map"] == 1  # toh/llama3_70b_map_toh.py: `for run_no in range(1,2)`
