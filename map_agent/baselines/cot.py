"""Chain of thought: every step of the plan carries its reasoning before the move (``cot.examples.json``).

The original: Hanoi (``toh/gpt4_cot_icl_toh.py``) and PlanBench (``*_plan_generation_coticl.py``) show the
in-context problems of ICL with reasoning for each move (Hanoi's reasoned examples, ``toh_twoshot_cot_examples``,
are not in the released code, so ours are written for problems 3 and 22 in our words); Mystery Blocksworld's
reason about each action's preconditions and write the resulting state, as the original's; Logistics' original
reasons once before the plan, ours before each action; CogEval (``cogeval/gpt4_cot_icl_*.py``) reasons about the
rooms' connections, on ICL's example problems. Temperature 0, top-p 0.
StrategyQA (``strategyQA/cot_strategyqa.py``) is zero-shot chain of thought: a strategy, then the true/false
answer, with no examples (``examples=False``).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from map_agent.baselines.base import WholePlanMethod


class CoT(WholePlanMethod):
    name = "cot"
    reasoned = True
    paper_settings = {"strategyqa": {"examples": False}}

    class Settings(BaseModel):
        model_config = ConfigDict(frozen=True, extra="forbid")

        examples: bool = True  # show the reasoned in-context problems

    def shots(self) -> str | None:
        return "cot.examples.json" if self.settings.examples else None
