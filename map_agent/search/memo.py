"""The search's memory: module results keyed by what they were asked, and the jobs still missing.

MAP's algorithms are written here as *demand-driven* functions over memo tables: each one reads the module
results it needs and, for every result that is missing, records a ``Job`` instead of calling the module. One
pass over the tree therefore yields every module call that can run now -- the B branches of a layer fan out
together (LangGraph ``Send``) -- and the next pass picks up where the results landed. The tables only grow, which
is also the paper's reuse of predicted subtrees: the actions and states predicted at depth 2 are found again
when the search restarts from the chosen child.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
from pydantic import BaseModel

from map_agent.config import Resolved
from map_agent.task import Problem, Task

#: graph-state fields holding module results: table name -> module that fills it
TABLES = {
    "subgoals": "TaskDecomposer",
    "proposals": "Actor",
    "verdicts": "Monitor",
    "predictions": "Predictor",
    "values": "Evaluator",
    "achieved": "Orchestrator",
}
TABLE_OF = {module: table for table, module in TABLES.items()}


def key(*parts: BaseModel | str | int) -> str:
    """A short stable key for a tuple of values (states, goals, actions, round numbers). Every pass of the search
    computes the keys of the whole tree again, some eight per module call, so a value is serialised by orjson
    (sorted keys, as ``canonical``) rather than the standard library's encoder, at a third of the cost."""
    text = b"|".join(p.encode() if isinstance(p, str) else str(p).encode() if isinstance(p, int) else
                     orjson.dumps(p.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS) for p in parts)
    return hashlib.sha1(text).hexdigest()[:20]


class Job(BaseModel):
    """One module call that the algorithm is waiting for; its result lands in ``tables[TABLE_OF[module]][key]``."""

    module: str
    key: str
    input: dict[str, Any]


@dataclass
class Ctx:
    """A read-only view of the tables plus the jobs discovered during one pass, and the results it read."""

    task: Task
    problem: Problem
    config: Resolved
    tables: dict[str, dict[str, Any]]
    jobs: dict[str, Job] = field(default_factory=dict)
    #: "module:key" of every stored result the pass read: a replay of a finished plan reads exactly the results it
    #: needed, so the rest were asked ahead for nothing (``plan.unused_calls``)
    read: set[str] = field(default_factory=set)

    def get(self, module: str, k: str, inp: BaseModel) -> Any | None:
        """The stored result of ``module`` for key ``k``, or ``None`` after queuing the job that computes it."""
        table = self.tables.get(TABLE_OF[module], {})
        if k in table:
            self.read.add(f"{module}:{k}")
            return table[k]
        self.jobs.setdefault(f"{module}:{k}", Job(module=module, key=k, input=inp.model_dump(mode="json")))
        return None

    def assuming(self, module: str, k: str, result: dict[str, Any]) -> Ctx:
        """A view in which ``module`` has answered ``result`` for key ``k`` (the tables are not changed): a pass
        over it finds the calls that would follow that answer, so they can be asked before it comes."""
        table = TABLE_OF[module]
        return replace(self, tables={**self.tables, table: {**self.tables.get(table, {}), k: result}}, jobs={},
                       read=set())

    def on(self, module: str) -> bool:
        return self.config.modules[module] != "off"

    def rng(self, *parts: BaseModel | str | int) -> random.Random:
        """The run's seeded random source for one decision (a tie, a fallback value): the same decision in a
        resumed run draws the same number, and another run index draws another."""
        return random.Random(f"{self.config.seed}|{key(*parts)}")


def failed(entry: dict[str, Any]) -> bool:
    """Whether a stored module result is a failed call (no output, only its error)."""
    return bool(entry.get("failed"))
