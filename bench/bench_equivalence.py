"""Benchmark the PDDL equivalence check: time per pair by domain and size, and agreement with brute force.

Pairs come from the generated Planetarium instances: each ground truth against (a) a renamed, reshuffled copy
with its goal fully specified (equivalent) and (b) a copy with one goal fact moved to another object
(usually not equivalent), in the instance's own mode. Agreement is measured on random small problems
(<= 4 blocks; <= 2 rooms, 2 balls, 2 grippers) against Definition 2 decided by enumerating reachable states
and object bijections. Prints one JSON object.

    python bench/bench_equivalence.py            # ~1-2 minutes on a laptop core
    python bench/bench_equivalence.py --instances 112 --random-pairs 200
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import random
import statistics
import sys
import time
from collections import defaultdict

from map_agent.tasks.planetarium.generator import domain_text, generate
from map_agent.tools.equivalence import equivalence, static_facts
from map_agent.tools.fully_specify import fully_specify
from map_agent.tools.strips import Strips, format_atom, reachable_states


def _problem(domain: str, objects, init, goal) -> Strips:
    text = (f"(define (problem p) (:domain {domain}) (:objects {' '.join(objects)}) "
            f"(:init {' '.join(map(format_atom, init))}) (:goal (and {' '.join(map(format_atom, goal))})))")
    return Strips.from_text(domain_text(domain), text)


def _rename(atoms, mapping):
    return sorted((a[0], *(mapping[x] for x in a[1:])) for a in atoms)


def _variants(rng: random.Random, strips: Strips, domain: str):
    objects = sorted(strips.objects)
    mapping = dict(zip(objects, rng.sample(objects, len(objects)), strict=True))
    full = fully_specify(strips) or strips.goal_pos
    same = _problem(domain, objects, _rename(strips.initial, mapping), _rename(full, mapping))
    goal = sorted(strips.goal_pos)
    k = rng.randrange(len(goal))
    atom = goal[k]
    moved = (atom[0], *(rng.choice(objects) if i == len(atom) - 2 else x for i, x in enumerate(atom[1:])))
    changed = _problem(domain, objects, sorted(strips.initial), goal[:k] + [moved] + goal[k + 1:])
    return same, changed




def _brute_force(p1: Strips, p2: Strips, placeholder: bool) -> bool:
    if len(p1.objects) != len(p2.objects):
        return False
    names_1, names_2 = sorted(p1.objects), sorted(p2.objects)
    states_2 = reachable_states(p2)
    # Placeholder mode: any permutation of the second goal's objects that keeps static facts (Gripper's types).
    static = static_facts(p2)
    perms = [dict(zip(names_2, perm, strict=True)) for perm in
             (itertools.permutations(names_2) if placeholder else [names_2])]
    goals_2 = {frozenset(_rename(p2.goal_pos, pi)) for pi in perms if set(_rename(static, pi)) == static}
    targets = {frozenset(s for s in states_2 if g <= s) for g in goals_2}
    # ... and that keeps an achievable goal achievable (a renaming must not describe another, impossible task).
    if frozenset(s for s in states_2 if p2.goal_pos <= s):
        targets.discard(frozenset())
    goal_states_1 = [s for s in reachable_states(p1) if p1.goal_pos <= s]
    for perm in itertools.permutations(names_2):
        sigma = dict(zip(names_1, perm, strict=True))
        if frozenset(_rename(p1.initial, sigma)) == p2.initial and frozenset(
                frozenset(_rename(s, sigma)) for s in goal_states_1) in targets:
            return True
    return False


def _random_small(rng: random.Random, domain: str, sizes):
    if domain == "blocksworld":
        blocks = [f"b{i}" for i in range(sizes)]
        order = rng.sample(blocks, len(blocks))
        held = order.pop() if rng.random() < 0.3 else None
        init = [("arm-empty",)] if held is None else [("holding", held)]
        while order:
            h = rng.randint(1, len(order))
            tower, order = order[:h], order[h:]
            init += [("on-table", tower[0]), ("clear", tower[-1])]
            init += [("on", u, lo) for lo, u in itertools.pairwise(tower)]
        atoms = ([("on", x, y) for x in blocks for y in blocks if x != y] + [("arm-empty",)]
                 + [(p, x) for p in ("on-table", "clear", "holding") for x in blocks])
        return blocks, init, rng.sample(atoms, rng.randint(1, 4))
    rooms, balls, grippers = sizes
    rs, bs, gs = [f"r{i}" for i in range(rooms)], [f"o{i}" for i in range(balls)], [f"g{i}" for i in range(grippers)]
    init = [("room", r) for r in rs] + [("ball", b) for b in bs] + [("gripper", g) for g in gs]
    init.append(("at-robby", rng.choice(rs)))
    free = list(gs)
    for b in bs:
        init.append(("carry", b, free.pop()) if free and rng.random() < 0.3 else ("at", b, rng.choice(rs)))
    init += [("free", g) for g in free]
    atoms = ([("at", b, r) for b in bs for r in rs] + [("carry", b, g) for b in bs for g in gs]
             + [("free", g) for g in gs] + [("at-robby", r) for r in rs])
    return [*rs, *bs, *gs], init, rng.sample(atoms, rng.randint(1, min(3, len(atoms))))


def _agreement(rng: random.Random, pairs: int) -> dict:
    agree, positives = 0, 0
    for _ in range(pairs):
        domain = rng.choice(["blocksworld", "gripper"])
        sizes = rng.randint(1, 4) if domain == "blocksworld" else (rng.randint(1, 2), rng.randint(1, 2),
                                                                   rng.randint(0, 2))
        objects, init, goal = _random_small(rng, domain, sizes)
        p1 = _problem(domain, objects, init, goal)
        if rng.random() < 0.5:  # a variant: renamed, with part of the fully specified goal
            full = sorted(fully_specify(p1) or p1.goal_pos)
            mapping = dict(zip(objects, rng.sample(objects, len(objects)), strict=True))
            p2 = _problem(domain, objects, _rename(init, mapping),
                          _rename(set(goal) | set(rng.sample(full, rng.randint(0, len(full)))), mapping))
        else:
            p2 = _problem(domain, objects, init, _random_small(rng, domain, sizes)[2])
        placeholder = rng.random() < 0.5
        truth = _brute_force(p1, p2, placeholder)
        positives += truth
        agree += equivalence(p1, p2, is_placeholder=placeholder).equivalent == truth
    return {"pairs": pairs, "agreement": agree / pairs, "equivalent_fraction": positives / pairs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=560, help="generated instances (14 tasks x 4 x k)")
    parser.add_argument("--random-pairs", type=int, default=2000, help="small random pairs for agreement")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    times: dict[tuple[str, str], list[float]] = defaultdict(list)
    verdicts = defaultdict(int)
    start = time.perf_counter()
    for instance in generate(args.instances, seed=args.seed):
        reference = Strips.from_text(domain_text(instance.domain), instance.problem_pddl)
        for kind, other in zip(("equivalent-variant", "moved-goal-fact"),
                               _variants(rng, reference, instance.domain), strict=True):
            t0 = time.perf_counter()
            result = equivalence(reference, other, is_placeholder=instance.is_placeholder)
            times[(instance.domain, instance.size_bin)].append(time.perf_counter() - t0)
            verdicts[f"{kind}:{result.equivalent}"] += 1
    timing_s = time.perf_counter() - start

    def stats(values: list[float]) -> dict:
        values = sorted(values)
        return {"pairs": len(values), "median_ms": round(1000 * statistics.median(values), 2),
                "p95_ms": round(1000 * values[min(len(values) - 1, int(0.95 * len(values)))], 2)}

    all_times = [t for v in times.values() for t in v]
    t0 = time.perf_counter()
    agreement = _agreement(rng, args.random_pairs)
    report = {
        "command": " ".join(["python", "bench/bench_equivalence.py", *(argv or sys.argv[1:])]),
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count()},
        "overall": stats(all_times),
        "by_domain_and_size": {f"{d}/{s}": stats(v) for (d, s), v in sorted(times.items())},
        "verdicts": dict(sorted(verdicts.items())),
        "brute_force_agreement": agreement,
        "seconds": {"timing": round(timing_s, 1), "agreement": round(time.perf_counter() - t0, 1)},
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
