"""Chain of thought: the plan with its reasoning written out, on ICL's in-context problems (``cot.examples.json``).

The original: Hanoi (``toh/gpt4_cot_icl_toh.py``) shows problems 3 and 22 with goal-recursion reasoning before
each move (``toh_twoshot_cot_examples.py``: which number must reach its goal list next and what has to move out of
its way first; ours in our words, ``examples="rule_check"`` is this project's rule-by-rule check instead);
Mystery Blocksworld's reason about each action's preconditions and write the resulting state, as the original's
(and so do its Blocksworld transfer examples, ``transfer_examples="worked"``, where ICL shows bare action lists);
Logistics' reasons once before the plan (``reasoning="once"``; "per_step" reasons before every action at about 70
more output tokens a step); CogEval (``cogeval/gpt4_cot_icl_*.py``) reasons about the rooms' connections, on ICL's
example problems. Temperature 0, top-p 0, the original's reply budget per task (``Method.budget``).
StrategyQA (``strategyQA/cot_strategyqa.py``) is zero-shot chain of thought: a strategy, then the true/false
answer, with no examples (``examples="none"``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from map_agent.baselines.base import Reasoning, WholePlanMethod


class CoT(WholePlanMethod):
    name = "cot"
    paper_settings = {"strategyqa": {"examples": "none"}, "logistics": {"reasoning": "once"}}

    class Settings(BaseModel):
        model_config = ConfigDict(frozen=True, extra="forbid")

        #: the reasoned in-context problems: the original's (``cot.examples.json``), this project's rule check
        #: (``cot.rule_check.examples.json`` with its request ``cot.rule_check.md``; Hanoi), or none
        examples: Literal["original", "rule_check", "none"] = "original"
        reasoning: Literal["per_step", "once"] = "per_step"
        #: a transfer split's examples from another problem: worked moves, with the facts each requires and the
        #: state it leads to (the original's CoT prompt, ``blocksworld_plan_generation_fewshot_cot_examples.py``)
        transfer_examples: Literal["plans", "worked"] = "worked"

    def shots(self) -> str | None:
        return {"original": "cot.examples.json", "rule_check": "cot.rule_check.examples.json",
                "none": None}[self.settings.examples]

    def reasoning(self) -> Reasoning:
        return self.settings.reasoning

    def request_variant(self) -> str:
        return "rule_check" if self.settings.examples == "rule_check" else ""

    def transfer_form(self) -> str:
        return self.settings.transfer_examples
