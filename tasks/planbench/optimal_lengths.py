"""Compute the cached table of optimal plan lengths: ``python -m map_agent.tasks.planbench.optimal_lengths``.

For every instance of both domains (PlanBench's test instances and the one-shot example instance 1) an optimal
plan is found (``planner.optimal_plan``: breadth-first search, else Fast Downward's A* with LM-cut), checked with
the validator and compared with PlanBench's ground-truth plan, which it must never exceed. The table goes to
``data/<domain>/optimal_lengths.json`` with the method and the time it took; N and the optimal-length column of
every problem come from it.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import date

from map_agent.tasks import planbench
from map_agent.tasks.planbench.environment import ICL_INSTANCE, data_dir, domain_name, instance_model, load_plans
from map_agent.tasks.planbench.planner import optimal_plan
from map_agent.tools.strips import validate

TASKS = {"mystery_blocksworld": planbench.MysteryBlocksworldTask, "logistics": planbench.LogisticsTask}
DOMAINS = tuple(TASKS)


def compute(domain: str) -> dict:
    path = data_dir(domain) / "task_1_plan_generation.json"
    plans = {i: steps for i, steps, _ in load_plans(path.read_text(encoding="utf-8"), path.name)}
    plans.setdefault(ICL_INSTANCE, [])
    lengths: dict[str, int] = {}
    started = time.perf_counter()
    for instance in sorted(plans, key=int):
        strips = instance_model(domain, instance)
        plan = optimal_plan(strips, data_dir(domain) / "domain.pddl", domain_name(domain), TASKS[domain].bfs_states)
        if plan is None or not validate(strips, plan).valid:
            raise SystemExit(f"{domain} instance {instance}: the planner's plan does not validate")
        truth = plans[instance]
        if truth and len(plan) > len(truth):
            raise SystemExit(f"{domain} instance {instance}: optimal {len(plan)} > ground truth {len(truth)}")
        lengths[instance] = len(plan)
    seconds = time.perf_counter() - started
    shorter = sum(1 for i, n in lengths.items() if plans[i] and n < len(plans[i]))
    bfs = TASKS[domain].bfs_states
    return {"method": (f"breadth-first search (<= {bfs} states), else " if bfs else "") +
                      "Fast Downward astar(lmcut()): optimal",
            "computed": date.today().isoformat(), "seconds": round(seconds, 1),
            "shorter_than_ground_truth": shorter, "lengths": lengths}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("domains", nargs="*", help=f"any of {', '.join(DOMAINS)} (default: both)")
    domains = parser.parse_args().domains or list(DOMAINS)
    for unknown in set(domains) - set(DOMAINS):
        parser.error(f"unknown domain {unknown!r}; known: {', '.join(DOMAINS)}")
    for domain in domains:
        table = compute(domain)
        out = data_dir(domain) / "optimal_lengths.json"
        out.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        print(f"{domain}: {len(table['lengths'])} instances in {table['seconds']} s, "
              f"{table['shorter_than_ground_truth']} shorter than PlanBench's plan -> {out}")


if __name__ == "__main__":
    main()
