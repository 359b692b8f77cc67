"""The README's worked example of adding a task runs as written (so the README stays true)."""

import re
import sys
import types
from pathlib import Path

from map_agent import MAPAgent
from map_agent import task as task_module

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_adding_a_task_example_plans_with_oracles(monkeypatch):
    code = re.search(r"```python\n(# tasks/counter/__init__.py\n.*?)```", README, re.S).group(1)
    module = types.ModuleType("counter_example")
    exec(compile(code, "README.md", "exec"), module.__dict__)
    monkeypatch.setitem(sys.modules, "counter_example", module)
    monkeypatch.setitem(task_module.TASKS, "counter", "counter_example:CounterTask")
    task_module.get_task.cache_clear()
    try:
        counter = task_module.get_task("counter")
        result = MAPAgent(counter.problems("test")[0], backend="oracle").plan()
    finally:
        task_module.get_task.cache_clear()
    assert result.solved and len(result.actions) == 3  # 0 -> 5 in three steps of +1/+2
    assert result.invalid_moves == 0
