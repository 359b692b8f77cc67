"""Vectorised value iteration against plain-Python value iteration and breadth-first search on growing mazes.

Square mazes built as the paper builds them (border, 20% random walls, agent (1, 1), goal opposite), four-way
moves, goal reward 1, gamma 0.999 (so values stay far from underflow on long paths). For each size:

* ``vectorised``: :func:`map_agent.tools.mdp.value_iteration` (sparse matrix-vector Bellman backups), plus the time
  to build the MDP;
* ``plain``: :func:`map_agent.tools.mdp.value_iteration_reference` on the same MDP, run only while its previous
  size took under ``--plain-cap`` seconds; where it runs, its values must equal the vectorised ones;
* ``bfs``: networkx breadth-first search from the goal over the maze graph, the lower bound for a deterministic
  maze; every vectorised greedy path must have the BFS length.

Sizes double from 15 until the vectorised solve of a size takes more than ``--budget`` seconds or the next size
would exceed it at the observed cubic growth (cells x path length). Nothing is extrapolated into the results:
every row is a measured run. Prints JSON.

    python bench/bench_value_iteration.py            # ~2-3 minutes
    python bench/bench_value_iteration.py --budget 10 --plain-cap 2   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time

import networkx as nx
import numpy as np

from map_agent.tools.maze import FOUR_WAY, generate_maze, greedy_path, maze_graph, maze_mdp
from map_agent.tools.mdp import value_iteration, value_iteration_reference

GAMMA = 0.999


def _timed(fn, *args, **kwargs):
    started = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - started


def run_size(size: int, seed: int, with_plain: bool) -> dict:
    maze = generate_maze(random.Random(f"bench/{size}/{seed}"), size, size, FOUR_WAY)
    (mdp, index), build_s = _timed(maze_mdp, maze, FOUR_WAY, 1.0, GAMMA)
    result, vi_s = _timed(value_iteration, mdp, tol=1e-12)
    values = np.zeros((maze.height, maze.width))
    values[index >= 0] = result.values[index[index >= 0]]
    path = greedy_path(values, maze, FOUR_WAY)
    graph, graph_s = _timed(maze_graph, maze, FOUR_WAY)
    lengths, bfs_s = _timed(nx.single_source_shortest_path_length, graph.reverse(copy=False), maze.goal)
    row = {"size": size, "states": mdp.n_states, "iterations": result.iterations, "converged": result.converged,
           "path_length": len(path) - 1, "bfs_length": lengths[maze.agent],
           "path_matches_bfs": path[-1] == maze.goal and len(path) - 1 == lengths[maze.agent],
           "build_s": round(build_s, 4), "vectorised_s": round(vi_s, 4),
           "bfs_s": round(bfs_s, 4), "bfs_graph_build_s": round(graph_s, 4),
           "vectorised_over_bfs": round(vi_s / bfs_s, 2) if bfs_s else None}
    if with_plain:
        plain, plain_s = _timed(value_iteration_reference, mdp, 1e-12)
        row.update(plain_s=round(plain_s, 4), plain_over_vectorised=round(plain_s / vi_s, 1),
                   same_values=bool(np.allclose(plain, result.values, atol=1e-9, rtol=0)))
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=60.0, help="seconds one vectorised solve may take")
    parser.add_argument("--plain-cap", type=float, default=15.0,
                        help="stop running plain Python once a size took longer than this")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rows: list[dict] = []
    size, plain_on = 15, True
    while True:
        row = run_size(size, args.seed, plain_on)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
        if plain_on and row.get("plain_s", 0) > args.plain_cap:
            plain_on = False
        nxt = size * 2
        if row["vectorised_s"] > args.budget or row["vectorised_s"] * (nxt / size) ** 3 > args.budget:
            break
        size = nxt
    solved = [r for r in rows if r["path_matches_bfs"] and r["vectorised_s"] <= args.budget]
    report = {
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "python": platform.python_version(), "numpy": np.__version__,
                    "processor": platform.processor() or platform.machine()},
        "gamma": GAMMA, "actions": "four_way", "budget_s": args.budget, "plain_cap_s": args.plain_cap,
        "largest_solved": {k: solved[-1][k] for k in ("size", "states", "vectorised_s")} if solved else None,
        "all_paths_match_bfs": all(r["path_matches_bfs"] for r in rows),
        "plain_values_match": all(r.get("same_values", True) for r in rows),
        "rows": rows,
    }
    print(json.dumps(report, indent=2))
    return 0 if report["all_paths_match_bfs"] and report["plain_values_match"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
