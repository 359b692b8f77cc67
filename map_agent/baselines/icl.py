"""In-context learning: zero-shot plus the original's solved example problems (``examples.json``).

The original (``toh/gpt4_icl_toh.py``, ``planbench/*/gpt4_*_plan_generation_icl.py``,
``cogeval/gpt4_standard_icl_*.py``): one request at temperature 0, top-p 0. Its examples:

* Hanoi: problems 3 and 22 (``toh/toh_two_shot_examples.py``: the optimal moves with the lists after each); on
  split ``test4_icl4`` the four-disk problems 29 and 77 (``toh/gpt4_4diskicl_toh_icl_baseline.py``);
* Mystery Blocksworld: PlanBench instances 1, 2, 3; Logistics: instances 1, 6, 7 (three solved problems each,
  ``*_plan_generation_fewshot_examples.py``, plans only); the Blocksworld -> Mystery transfer split, the same three
  in Blocksworld's names as bare action lists (``transfer expts/gpt4_mystery_blocksworld_plan_generation_
  blocksworld_icl.py``; the setting ``transfer_examples="worked"`` shows CoT's worked moves instead);
* CogEval: Valuepath family, start rooms 1 and 6 (``valuepath_fewshot_examples.py``); Steppath, 9->4, 2->10 and
  7->3 (``steppath_fewshot_examples.py``); the n7tree -> castle transfer split, n7tree's two solved problems
  (``transfer expts/gpt4_n15star_valuepath_n7tree_coticl.py``: zones 1 and 3, rooms 0 and 1 here), marked as
  from another environment.

An example whose start and goal are the problem's own is left out of that problem's prompt (the original showed
it: PlanBench instances 2, 3 and 6, 7 are test instances; CogEval Detour and Reward Revaluation start from rooms 1
and 6 too).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from map_agent.baselines.base import WholePlanMethod


class ICL(WholePlanMethod):
    name = "icl"
    shots_file = "examples.json"

    class Settings(BaseModel):
        model_config = ConfigDict(frozen=True, extra="forbid")

        #: a transfer split's examples from another problem (Blocksworld -> Mystery Blocksworld): bare action
        #: lists, as the original's ICL prompt, or "worked", this project's form (every move with the facts it
        #: requires and the state it leads to, as the CoT prompt shows them)
        transfer_examples: Literal["plans", "worked"] = "plans"

    def transfer_form(self) -> str:
        return self.settings.transfer_examples
