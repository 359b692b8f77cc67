"""Zero-shot: the task's description, the problem and a request for the whole plan; nothing else.

The original (``toh/gpt4_zeroshot_toh.py``, ``planbench/*/gpt4_*_plan_generation_zeroshot.py``,
``cogeval/gpt4_zeroshot_*.py``): one request, temperature 0, top-p 0. Hanoi's request names the step limit N
(10 three-disk, 20 four-disk) and asks for the lists after each move; CogEval's names its limit of 6 moves;
PlanBench's names none. The reply here is the task's JSON plan (the
original's free text, read by its evaluation scripts); the first N moves are scored.
"""

from __future__ import annotations

from map_agent.baselines.base import WholePlanMethod


class ZeroShot(WholePlanMethod):
    name = "zero-shot"
