"""Benchmark the PDDL equivalence check: time per pair by domain and size, and agreement with brute force.

Pairs come from the generated Planetarium instances: each ground truth against (a) a renamed, reshuffled copy
with its goal fully specified (equivalent) and (b) a copy with one goal fact moved to another object
(usually not equivalent), in the instance's own mode. Agreement is measured on random small problems
(<= 4 blocks; <= 2 rooms, 2 balls, 2 grippers) against Definition 2 decided by enumerating reachable states
and object bijections. A scaling table times Blocks World pairs of 10 to 1000 blocks from PDDL text to verdict:
a tower to invert against its renaming (equivalent) and against the renaming with two goal blocks swapped (not),
and a random configuration against its renaming. With ``--reference`` the same texts are decided, in the same
run, by Planetarium's reference implementation (``BatsResearch/planetarium``), installed from its public source
into a separate environment created on first use (never a map-agent dependency: the PyPI project named
``planetarium`` is unrelated). Prints one JSON object.

    python bench/bench_equivalence.py            # ~1-2 minutes on a laptop core
    python bench/bench_equivalence.py --instances 112 --random-pairs 200
    python bench/bench_equivalence.py --instances 0 --random-pairs 0 --reference   # scaling vs the reference
    python bench/bench_equivalence.py --reference --reference-source ./planetarium --reference-pddl-source ./pddl
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from map_agent.tasks.planetarium.generator import domain_text, generate
from map_agent.tools.equivalence import equivalence, equivalent_texts, static_facts
from map_agent.tools.fully_specify import blocksworld_fully_specify, fully_specify
from map_agent.tools.strips import Strips, format_atom, reachable_states

SCALING_SIZES = (10, 30, 100, 300, 1000)
REFERENCE_SOURCE = "git+https://github.com/BatsResearch/planetarium"
#: the reference's pyproject.toml takes ``pddl`` from this fork (it adds the LenientProblemParser it imports)
REFERENCE_PDDL_SOURCE = "git+https://github.com/maxzuo/pddl"
REFERENCE_VENV = Path.home() / ".cache" / "map-agent-bench" / "planetarium-ref"
REFERENCE_DRIVER = Path(__file__).with_name("planetarium_reference.py")


def _problem_text(domain: str, objects, init, goal, name: str = "p") -> str:
    return (f"(define (problem {name}) (:domain {domain}) (:objects {' '.join(objects)}) "
            f"(:init {' '.join(map(format_atom, init))}) (:goal (and {' '.join(map(format_atom, goal))})))")


def _problem(domain: str, objects, init, goal) -> Strips:
    return Strips.from_text(domain_text(domain), _problem_text(domain, objects, init, goal))


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


# ------------------------------------------------------------------------------------------------ scaling


def _towers_atoms(towers: list[list[str]]) -> list:
    atoms = [("arm-empty",)]
    for tower in towers:
        atoms += [("on-table", tower[0]), ("clear", tower[-1])]
        atoms += [("on", upper, lower) for lower, upper in itertools.pairwise(tower)]
    return atoms


def _random_towers(rng: random.Random, blocks: list[str]) -> list[list[str]]:
    """``blocks`` shuffled and cut into towers of 1 to 2 sqrt(n) blocks."""
    order, towers = rng.sample(blocks, len(blocks)), []
    while order:
        height = rng.randint(1, 2 * math.isqrt(len(blocks)))
        towers.append(order[:height])
        order = order[height:]
    return towers


def _scaling_cases(rng: random.Random, sizes, repeats: int) -> list[dict]:
    """Per size: a tower to invert, against its renaming and against a swap, and a random configuration.

    The candidate renames and reorders every object and fact and states its goal fully specified, so that
    neither checker can settle it as written; each repeat gives the problems another name, so that no parse
    cache answers a repeat.
    """
    cases = []
    for n in sizes:
        blocks = [f"b{i}" for i in range(n)]
        inverted = blocks[::-1]
        swapped = [*inverted[:n // 2 - 1], inverted[n // 2], inverted[n // 2 - 1], *inverted[n // 2 + 1:]]
        random_goal = _random_towers(rng, blocks)
        for layout, pair, init_towers, goal_towers, candidate_towers, expected in (
                ("tower", "renamed", [blocks], [inverted], [inverted], True),
                ("tower", "two goal blocks swapped", [blocks], [inverted], [swapped], False),
                ("random", "renamed", _random_towers(rng, blocks), random_goal, random_goal, True)):
            init = _towers_atoms(init_towers)
            goal = [a for a in _towers_atoms(goal_towers) if a[0] == "on"]
            full = blocksworld_fully_specify(blocks, [a for a in _towers_atoms(candidate_towers) if a[0] == "on"])
            perm = dict(zip(blocks, rng.sample(blocks, n), strict=True))
            objects, renamed_init, renamed_goal = (rng.sample(x, len(x)) for x in (
                list(perm.values()), _rename(init, perm), _rename(full, perm)))
            texts = [(_problem_text("blocksworld", blocks, init, goal, f"p{k}"),
                      _problem_text("blocksworld", objects, renamed_init, renamed_goal, f"p{k}"))
                     for k in range(repeats)]
            cases.append({"layout": layout, "pair": pair, "blocks": n, "expected": expected, "texts": texts})
    return cases


def _time_ours(cases: list[dict], warm_up: tuple[str, str]) -> list[dict]:
    """Fastest repeat of :func:`equivalent_texts` per case, as the driver times the reference's ``evaluate``."""
    domain = domain_text("blocksworld")
    equivalent_texts(*warm_up, domain)  # parses the domain and builds the parsers once
    results = []
    for case in cases:
        best = float("inf")
        for reference, candidate in case["texts"]:
            start = time.perf_counter()
            equivalent = equivalent_texts(reference, candidate, domain)
            best = min(best, time.perf_counter() - start)
        results.append({"seconds": best, "equivalent": equivalent})
    return results


def _reference_python(venv: Path, source: str, pddl_source: str) -> Path:
    """The Python of the separate environment that holds Planetarium's reference, installed on first use.

    The reference's pyproject.toml takes ``pddl`` from a git fork, which pip cannot fetch offline even when it
    is already installed, so the fork is installed first, then the reference without dependencies, then the
    rest of what it declares from PyPI. A marker file says the install finished; delete the directory to
    install again (for example from another source).
    """
    python, finished = venv / "bin" / "python", venv / "map-agent-bench-installed"
    if finished.exists():
        return python
    print(f"installing Planetarium's reference into {venv}", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, pddl_source], check=True)
    subprocess.run([*pip, "--no-deps", source], check=True)
    declared = subprocess.run([str(python), "-c", "import importlib.metadata as m; "
                               "print(*m.requires('planetarium'), sep='\\n')"],
                              check=True, stdout=subprocess.PIPE, text=True).stdout.splitlines()
    subprocess.run([*pip, *(r for r in declared if "@" not in r)], check=True)
    finished.write_text(f"{source}\n{pddl_source}\n")
    return python


def _time_reference(python: Path, cases: list[dict], warm_up: tuple[str, str]) -> dict:
    request = {"warm_up": warm_up, "cases": [{"texts": c["texts"], "is_placeholder": False} for c in cases]}
    done = subprocess.run([str(python), str(REFERENCE_DRIVER)], input=json.dumps(request), check=True,
                          stdout=subprocess.PIPE, text=True)
    return json.loads(done.stdout)


def _scaling(rng: random.Random, sizes, repeats: int, reference: Path | None) -> dict:
    """Time per pair by size, ours and (with ``reference``, the reference's Python) the reference's."""
    cases = _scaling_cases(rng, sizes, repeats)
    block = ["a"]
    warm_up = (_problem_text("blocksworld", block, _towers_atoms([block]), [("clear", "a")], "warm-up"),) * 2
    ours = _time_ours(cases, warm_up)
    theirs = _time_reference(reference, cases, warm_up) if reference else None
    rows = []
    for i, case in enumerate(cases):
        row = {key: case[key] for key in ("layout", "pair", "blocks", "expected")}
        row |= {"ours_s": round(ours[i]["seconds"], 4), "ours_equivalent": ours[i]["equivalent"]}
        if theirs:
            mine, other = ours[i]["seconds"], theirs["results"][i]
            row |= {"reference_s": round(other["seconds"], 4), "reference_equivalent": other["equivalent"],
                    "speedup_vs_reference": round(other["seconds"] / mine, 1)}
        rows.append(row)
    # how time grows between the two largest sizes: 1 is linear, 2 quadratic
    growth = {}
    by_pair = sorted(rows, key=lambda r: (r["layout"], r["pair"]))
    for (layout, pair), group in itertools.groupby(by_pair, key=lambda r: (r["layout"], r["pair"])):
        group = sorted(group, key=lambda r: r["blocks"])
        if len(group) > 1:
            small, large = group[-2:]
            scale = math.log(large["blocks"] / small["blocks"])
            growth[f"{layout}/{pair}"] = {side: round(math.log(large[key] / small[key]) / scale, 2)
                                          for side, key in (("ours", "ours_s"), ("reference", "reference_s"))
                                          if key in large}
    return {"repeats": repeats, "reference": theirs["installed_from"] if theirs else None,
            "rows": rows, "growth_exponent": growth}


def _sizes(text: str) -> tuple[int, ...]:
    sizes = tuple(int(x) for x in text.split(",") if x.strip())
    if any(n < 2 for n in sizes):
        raise argparse.ArgumentTypeError("sizes are numbers of blocks, at least 2 (a swap needs two)")
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=560,
                        help="generated instances (14 tasks x 4 x k); 0 skips the timing by domain")
    parser.add_argument("--random-pairs", type=int, default=2000,
                        help="small random pairs for agreement; 0 skips it")
    parser.add_argument("--scaling-sizes", type=_sizes, default=SCALING_SIZES,
                        help="block counts of the scaling table, comma-separated (default 10,30,100,300,1000; "
                             "'' skips it)")
    parser.add_argument("--scaling-repeats", type=int, default=3, help="fastest of this many runs per pair")
    parser.add_argument("--reference", action="store_true",
                        help="time Planetarium's reference on the scaling pairs too, in a separate environment "
                             "(created on first use: needs the sources below)")
    parser.add_argument("--reference-venv", type=Path, default=REFERENCE_VENV,
                        help=f"that environment (default {REFERENCE_VENV})")
    parser.add_argument("--reference-source", default=REFERENCE_SOURCE,
                        help="pip requirement for the reference: its git URL (default) or a local checkout")
    parser.add_argument("--reference-pddl-source", default=REFERENCE_PDDL_SOURCE,
                        help="pip requirement for the pddl fork the reference needs (default: its git URL)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    report: dict = {
        "command": " ".join(["python", "bench/bench_equivalence.py", *(argv or sys.argv[1:])]),
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count()},
    }
    seconds = {}
    if args.instances:
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
        seconds["timing"] = round(time.perf_counter() - start, 1)

        def stats(values: list[float]) -> dict:
            values = sorted(values)
            return {"pairs": len(values), "median_ms": round(1000 * statistics.median(values), 2),
                    "p95_ms": round(1000 * values[min(len(values) - 1, int(0.95 * len(values)))], 2)}

        report["overall"] = stats([t for v in times.values() for t in v])
        report["by_domain_and_size"] = {f"{d}/{s}": stats(v) for (d, s), v in sorted(times.items())}
        report["verdicts"] = dict(sorted(verdicts.items()))
    if args.random_pairs:
        t0 = time.perf_counter()
        report["brute_force_agreement"] = _agreement(rng, args.random_pairs)
        seconds["agreement"] = round(time.perf_counter() - t0, 1)
    if args.scaling_sizes:
        t0 = time.perf_counter()
        python = (_reference_python(args.reference_venv, args.reference_source, args.reference_pddl_source)
                  if args.reference else None)
        report["scaling"] = _scaling(random.Random(args.seed), args.scaling_sizes, args.scaling_repeats, python)
        seconds["scaling"] = round(time.perf_counter() - t0, 1)
    report["seconds"] = seconds
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
