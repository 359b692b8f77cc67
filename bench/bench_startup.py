"""How long ``map-agent`` takes to start: each command a fresh process, as a user runs it.

A command-line tool is started far more often than it plans: ``--help``, ``tasks`` and a quick oracle plan should
cost what they do, not the import of every backend. Timed, each as a subprocess, after one untimed warm-up run
(compiled bytecode, file cache):

* ``python -c pass``, the interpreter alone: the baseline of every ratio, measured in the same run;
* ``python -c "import map_agent.cli"``, the entry point's own imports;
* ``map-agent --help``, ``map-agent tasks`` and ``map-agent plan hanoi --problem 7 --backend oracle``, through the
  installed console script.

Printed: wall and CPU seconds (user + system of the child) per command, min and median over the repeats, the
ratios of the medians to the baseline's, and which heavy packages each command imported (one more run with
``PYTHONPROFILEIMPORTTIME=1``). The machine is shared: CPU seconds vary less than wall seconds when other work
runs, and the load average says how much did.

    python bench/bench_startup.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

#: top-level packages whose import a start-up pays for visibly (or that only some commands need)
HEAVY = ("langgraph", "langchain_core", "langsmith", "langchain_openai", "openai", "httpx", "tiktoken", "llama_cpp",
         "torch", "transformers", "peft", "ray", "redis", "matplotlib", "numpy", "scipy", "networkx", "pddl")
_IMPORTED = re.compile(r"^import time:\s+\d+ \|\s+\d+ \| +([A-Za-z_][\w]*)", re.M)


def commands() -> dict[str, list[str]]:
    """The command lines timed, by name; the console script next to this interpreter (the venv's), else on PATH."""
    script = shutil.which("map-agent", path=str(Path(sys.executable).parent)) or shutil.which("map-agent")
    if script is None:
        raise SystemExit("map-agent is not installed (pip install -e .)")
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "import map_agent.cli": [sys.executable, "-c", "import map_agent.cli"],
        "map-agent --help": [script, "--help"],
        "map-agent tasks": [script, "tasks"],
        "map-agent plan hanoi --backend oracle": [script, "plan", "hanoi", "--problem", "7", "--backend", "oracle"],
    }


def timed(argv: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run of ``argv`` (the children's rusage, before and after: runs are sequential)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def heavy_imports(argv: list[str]) -> list[str]:
    """The ``HEAVY`` packages one run of ``argv`` imports (Python's import-time profile, from stderr)."""
    err = subprocess.run(argv, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}).stderr
    return sorted(set(_IMPORTED.findall(err)) & set(HEAVY), key=HEAVY.index)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per command (after one warm-up run)")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    figures = {}
    for name, argv in commands().items():
        timed(argv)  # warm-up: bytecode compiled, files cached
        runs = [timed(argv) for _ in range(args.repeats)]
        walls, cpus = [w for w, _ in runs], [c for _, c in runs]
        figures[name] = {"wall_s": {"min": round(min(walls), 3), "median": round(statistics.median(walls), 3)},
                         "cpu_s": {"min": round(min(cpus), 3), "median": round(statistics.median(cpus), 3)},
                         "heavy_imports": heavy_imports(argv)}
    base = figures["python -c pass"]
    print(json.dumps({
        "benchmark": "startup",
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)}},
        "repeats": args.repeats,
        "baseline": "python -c pass",
        "commands": figures,
        "ratio_to_baseline": {name: {"wall": round(f["wall_s"]["median"] / base["wall_s"]["median"], 1),
                                     "cpu": round(f["cpu_s"]["median"] / max(base["cpu_s"]["median"], 1e-3), 1)}
                              for name, f in figures.items() if name != "python -c pass"},
    }, indent=2))


if __name__ == "__main__":
    main()
