"""A command imports what it needs when it needs it (issue 18): ``--help`` and ``tasks`` no LangChain, LangGraph or
model client; an oracle plan or evaluation no model client, local model or training stack.

Checked on ``sys.modules`` in a fresh interpreter that runs the commands, not on the clock, so it holds on a
loaded machine; ``bench/bench_startup.py`` measures what the imports cost.
"""

from __future__ import annotations

import json
import subprocess
import sys

#: what only a command that calls a model needs: the OpenAI client and its tokenizer, llama.cpp, training, Ray and
#: Redis (extras), report figures
MODEL_STACK = ("openai", "langchain_openai", "tiktoken", "langchain_community", "llama_cpp", "torch", "transformers",
               "peft", "ray", "redis", "matplotlib")
#: what computes the ground truth of mazes and room graphs: not needed to list tasks, nor to plan Hanoi
SOLVERS = ("scipy", "networkx")
#: what only a plan needs: the graph runtime, LangChain's chat-model interface with its tracers (LangSmith), the
#: LangGraph SDK's HTTP client, the prompt cache
PLAN_STACK = ("langgraph", "langgraph_sdk", "langchain_core", "langsmith", "httpx", "diskcache", "tenacity")

#: runs each command line with ``map_agent.cli.main`` in this process, then prints the modules imported
_RUN = """
import json, sys
from map_agent.cli import main
for argv in json.loads(sys.argv[1]):
    try:
        code = main(argv)
    except SystemExit as e:  # --help exits
        code = e.code
    if code:
        sys.exit(f"map-agent {' '.join(argv)}: exit {code}")
print(json.dumps(sorted(sys.modules)))
"""


def imported_by(*commands: list[str]) -> set[str]:
    """The modules a fresh interpreter holds after running ``commands`` (each a ``map-agent`` argv)."""
    run = subprocess.run([sys.executable, "-c", _RUN, json.dumps(commands)], capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    return set(json.loads(run.stdout.splitlines()[-1]))


def unneeded(modules: set[str], packages: tuple[str, ...]) -> list[str]:
    """Those of ``packages`` imported in ``modules``, themselves or by a submodule."""
    return sorted({name.partition(".")[0] for name in modules} & set(packages))


def test_help_and_task_listing_import_no_langchain_and_no_model():
    loaded = imported_by(["--help"], ["plan", "--help"], ["eval", "--help"], ["tasks"], ["tasks", "hanoi", "--ids"])
    assert "map_agent.tasks.maze" in loaded  # every task was listed, from its own package
    assert unneeded(loaded, (*MODEL_STACK, *SOLVERS, *PLAN_STACK)) == []


def test_oracle_plan_imports_the_graph_but_no_model_client():
    loaded = imported_by(["plan", "hanoi", "--problem", "7", "--backend", "oracle"])
    assert "langgraph.graph" in loaded  # the plan did run through the graph
    assert unneeded(loaded, (*MODEL_STACK, *SOLVERS)) == []


def test_oracle_evaluation_imports_no_model_client(tmp_path):
    loaded = imported_by(["eval", "hanoi", "--split", "test3", "--limit", "2", "--runs", "1", "--backend", "oracle",
                          "--out", str(tmp_path)])
    assert "map_agent.eval.runner" in loaded and "langgraph.graph" in loaded  # it evaluated, through the graph
    assert len((next(tmp_path.iterdir()) / "records.jsonl").read_text().splitlines()) == 2
    assert unneeded(loaded, (*MODEL_STACK, *SOLVERS)) == []


def test_package_exports_resolve_on_first_use():
    """``map_agent`` and ``map_agent.llm`` export their names lazily (PEP 562): each still resolves and is listed."""
    import map_agent
    import map_agent.llm

    for package in (map_agent, map_agent.llm):
        assert all(getattr(package, name) is not None for name in package.__all__)
        assert set(package.__all__) <= set(dir(package))
