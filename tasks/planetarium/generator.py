"""The Planetarium text-to-PDDL dataset: 14 tasks over Blocks World and Gripper, generated from a seed.

Each instance pairs a natural-language description of an initial and a goal state with ground-truth PDDL.
Each side of the description is *explicit* (one sentence per proposition of the PDDL) or *abstract* (a summary
such as "the blocks form a single tower"). Placeholder mode (``is_placeholder``: initial and goal scenes compared
separately, any objects may play the goal's roles) follows the reference implementation's rule
(``BatsResearch/planetarium``, ``dataset_generator.py`` with ``dataset_config.yaml``): on when either side is
abstract, except for the tasks whose goal is defined by the initial state's objects (:data:`STRICT_TASKS`:
swap, invert, swap_rooms, move_to_max, move_to_min). Comparing those goals on their own would accept a goal
that moves the wrong objects (two towers with their bases in place "match" two towers with swapped bases), so
they are always checked with object identity, and, as in the reference, they are described with both sides
explicit or both abstract (an abstract initial state cannot say which object a named goal means).

Tasks (Section 4.2): Blocks World -- stack, unstack, holding_one, staircase, equal_towers, swap, invert, towers;
Gripper -- single_room, evenly_distribute, arbitrarily_distribute, swap_rooms, move_to_max, move_to_min. The
initial layout of a Blocks World instance is drawn from the same layouts (swap and invert need their own), and
sizes are drawn so that the instances spread over the paper's size bins (number of ground-truth propositions:
1-20, 21-40, 41-60, 61-80, >80).

Example:
    >>> [i.task for i in generate(3, seed=0)]  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from importlib import resources
from typing import Literal

from pydantic import BaseModel, ConfigDict

from map_agent.tools.strips import Atom, format_atom

__all__ = ["BLOCKSWORLD_TASKS", "GRIPPER_TASKS", "STRICT_TASKS", "Instance", "domain_text", "generate",
           "is_placeholder", "size_bin"]

BLOCKSWORLD_TASKS = ("stack", "unstack", "holding_one", "staircase", "equal_towers", "swap", "invert", "towers")
GRIPPER_TASKS = ("single_room", "evenly_distribute", "arbitrarily_distribute", "swap_rooms", "move_to_max",
                 "move_to_min")
SIZE_BINS = ((1, 20), (21, 40), (41, 60), (61, 80))

#: tasks whose goal refers to the initial state's objects: never placeholder mode, no mixed abstraction
STRICT_TASKS = frozenset({"swap", "invert", "swap_rooms", "move_to_max", "move_to_min"})

Abstraction = Literal["explicit", "abstract"]


class Instance(BaseModel):
    """One text-to-PDDL pair."""

    model_config = ConfigDict(frozen=True)

    id: str
    domain: Literal["blocksworld", "gripper"]
    task: str
    init_abstraction: Abstraction
    goal_abstraction: Abstraction
    natural_language: str
    problem_pddl: str
    n_objects: int
    n_propositions: int
    size_bin: str
    is_placeholder: bool


def domain_text(domain: str) -> str:
    """The PDDL text of ``"blocksworld"`` or ``"gripper"``."""
    return resources.files(__package__).joinpath(f"{domain}.pddl").read_text()


def is_placeholder(task: str, init_abstraction: Abstraction, goal_abstraction: Abstraction) -> bool:
    """The reference implementation's rule: placeholder mode when a side is abstract, never for a strict task."""
    return task not in STRICT_TASKS and "abstract" in (init_abstraction, goal_abstraction)


def size_bin(n_propositions: int) -> str:
    for low, high in SIZE_BINS:
        if low <= n_propositions <= high:
            return f"{low}-{high}"
    return ">80"


# -------------------------------------------------------------------------------------------- Blocks World


def _towers_state(towers: list[list[str]], held: str | None = None) -> list[Atom]:
    atoms: list[Atom] = []
    for tower in towers:
        atoms.append(("on-table", tower[0]))
        atoms += [("on", upper, lower) for lower, upper in itertools.pairwise(tower)]
        atoms.append(("clear", tower[-1]))
    atoms.append(("arm-empty",) if held is None else ("holding", held))
    return atoms


def _split(blocks: list[str], heights: list[int]) -> list[list[str]]:
    out, start = [], 0
    for h in heights:
        out.append(blocks[start:start + h])
        start += h
    return out


def _heights_text(heights: list[int]) -> str:
    return ", ".join(str(h) for h in heights)


def _explain_blocks(atoms: list[Atom]) -> str:
    words = {"on-table": "{0} is on the table", "clear": "{0} is clear", "on": "{0} is on top of {1}",
             "holding": "the arm is holding {0}", "arm-empty": "the arm is empty"}
    return "; ".join(words[a[0]].format(*a[1:]) for a in atoms) + "."


def _blocks_layouts(rng: random.Random, n: int) -> dict[str, tuple[list[list[str]], str | None, str]]:
    """Named layouts of ``n`` blocks: (towers bottom-up, held block, abstract description)."""
    blocks = [f"b{i}" for i in range(1, n + 1)]
    layouts: dict[str, tuple[list[list[str]], str | None, str]] = {
        "stack": ([blocks], None, f"all {n} blocks are stacked in a single tower and the arm is empty"),
        "unstack": ([[b] for b in blocks], None,
                    f"all {n} blocks are on the table, none on another, and the arm is empty"),
    }
    if n >= 2:
        layouts["holding_one"] = ([[b] for b in blocks[1:]], blocks[0],
                                  f"the arm is holding one of the {n} blocks and the other {n - 1} are on the table")
    k = int(((8 * n + 1) ** 0.5 - 1) / 2)
    if k * (k + 1) // 2 == n:
        layouts["staircase"] = (_split(blocks, list(range(1, k + 1))), None,
                                f"the {n} blocks form a staircase: {k} towers of heights 1 to {k}, arm empty")
    divisors = [d for d in range(2, n + 1) if n % d == 0]
    if divisors:
        count = rng.choice(divisors)
        layouts["equal_towers"] = (_split(blocks, [n // count] * count), None,
                                   f"the {n} blocks form {count} towers of equal height {n // count}, arm empty")
    heights = _random_partition(rng, n)
    layouts["towers"] = (_split(blocks, heights), None,
                         f"the {n} blocks form {len(heights)} towers of heights {_heights_text(heights)}, "
                         "arm empty")
    return layouts


def _random_partition(rng: random.Random, n: int) -> list[int]:
    cuts = sorted(rng.sample(range(1, n), rng.randint(0, min(4, n - 1)))) if n > 1 else []
    return [b - a for a, b in itertools.pairwise([0, *cuts, n])]


def _blocksworld(rng: random.Random, task: str, n: int):
    """(init atoms, goal atoms, abstract init text, abstract goal text) for one Blocks World task."""
    blocks = [f"b{i}" for i in range(1, n + 1)]
    if task in ("swap", "invert"):
        if task == "swap":
            a = rng.randint(2, n - 2)
            towers = _split(blocks, [a, n - a])
            goal_towers = [[towers[1][0], *towers[0][1:]], [towers[0][0], *towers[1][1:]]]
            init_text = f"the {n} blocks form two towers, of heights {a} and {n - a}, and the arm is empty"
            goal_text = "the bottom blocks of the two towers are swapped, everything above them stays in place"
        else:
            heights = _random_partition(rng, n)
            towers = _split(blocks, heights)
            goal_towers = [t[::-1] for t in towers]
            init_text = f"the {n} blocks form towers of heights {_heights_text(heights)}, arm empty"
            goal_text = "every tower is inverted: its blocks are in the reverse order, arm empty"
        return _towers_state(towers), _towers_state(goal_towers), init_text, goal_text
    layouts = _blocks_layouts(rng, n)
    start = rng.choice(sorted(name for name in layouts if name != task))
    init_towers, init_held, init_text = layouts[start]
    shuffled = rng.sample(blocks, n)
    goal_towers, goal_held, goal_text = _blocks_layouts(random.Random(rng.random()), n)[task]
    rename = dict(zip(blocks, shuffled, strict=True))
    goal_towers = [[rename[b] for b in t] for t in goal_towers]
    goal_held = rename[goal_held] if goal_held else None
    return _towers_state(init_towers, init_held), _towers_state(goal_towers, goal_held), init_text, goal_text


def _blocks_sizes(task: str, rng: random.Random) -> int:
    if task == "staircase":
        return rng.choice([3, 6, 10, 15, 21])
    if task == "swap":
        return rng.randint(4, 24)
    if task == "holding_one":
        return rng.randint(2, 24)
    if task == "equal_towers":
        return rng.choice([n for n in range(2, 25) if any(n % d == 0 for d in range(2, n))] + [2])
    return rng.randint(1 if task in ("stack", "unstack") else 2, 24)


# ------------------------------------------------------------------------------------------------- Gripper


def _explain_gripper(atoms: list[Atom]) -> str:
    words = {"at-robby": "robby is in {0}", "at": "{0} is in {1}", "free": "{0} is free",
             "carry": "{1} is carrying {0}"}
    return "; ".join(words[a[0]].format(*a[1:]) for a in atoms if a[0] in words) + "."


def _counts_text(counts: list[int]) -> str:
    return ", ".join(f"{c} in room{i + 1}" for i, c in enumerate(counts))


def _gripper(rng: random.Random, task: str, rooms: int, balls: int, grippers: int):
    rs = [f"room{i}" for i in range(1, rooms + 1)]
    bs = [f"ball{i}" for i in range(1, balls + 1)]
    gs = [f"gripper{i}" for i in range(1, grippers + 1)]
    static = [("room", r) for r in rs] + [("ball", b) for b in bs] + [("gripper", g) for g in gs]
    extreme = {"move_to_max": max, "move_to_min": min}.get(task)
    while True:  # move to max / min need one room that holds strictly the most / fewest balls, as the reference
        location = {b: rng.randrange(rooms) for b in bs}
        counts = [sum(1 for r in location.values() if r == i) for i in range(rooms)]
        if extreme is None or counts.count(extreme(counts)) == 1:
            break
    init = [*static, ("at-robby", rs[0])] + [("at", b, rs[location[b]]) for b in bs] + [("free", g) for g in gs]
    init_text = (f"there are {rooms} rooms, {balls} balls and a robot, robby, with {grippers} free grippers; "
                 f"robby is in room1 and the balls are placed {_counts_text(counts)}")
    if task == "single_room":
        target = rng.randrange(rooms)
        goal_rooms = {b: target for b in bs}
        goal_text = f"all {balls} balls are in room{target + 1}"
    elif task == "evenly_distribute":
        goal_rooms = {b: i % rooms for i, b in enumerate(rng.sample(bs, balls))}
        goal_text = f"the balls are evenly distributed, {balls // rooms} in each room"
    elif task == "arbitrarily_distribute":
        goal_rooms = {b: rng.randrange(rooms) for b in bs}
        wanted = [sum(1 for r in goal_rooms.values() if r == i) for i in range(rooms)]
        goal_text = f"the balls are distributed with {_counts_text(wanted)}"
    elif task == "swap_rooms":
        goal_rooms = {b: 1 - location[b] for b in bs}
        goal_text = "the balls of room1 and room2 are swapped: each ball is in the other room"
    else:
        target = counts.index(extreme(counts))
        goal_rooms = {b: target for b in bs}
        goal_text = (f"all balls are in the room that initially held the "
                     f"{'most' if task == 'move_to_max' else 'fewest'} balls")
    goal = [("at", b, rs[goal_rooms[b]]) for b in bs] + [("free", g) for g in gs]
    return init, goal, init_text, goal_text


def _gripper_sizes(task: str, rng: random.Random) -> tuple[int, int, int]:
    rooms = 2 if task == "swap_rooms" else rng.randint(1 if task == "single_room" else 2, 5)
    balls = rng.randint(1, 24)
    if task == "evenly_distribute":
        balls = rooms * max(1, balls // rooms)
    if task in ("move_to_max", "move_to_min"):  # enough balls for a unique emptiest / fullest room to exist
        balls = max(balls, rooms)
    return rooms, balls, rng.randint(1, 3)


# -------------------------------------------------------------------------------------------------- dataset


def _pddl(domain: str, name: str, objects: list[str], init: list[Atom], goal: list[Atom]) -> str:
    facts = "\n    ".join(format_atom(a) for a in init)
    goals = "\n      ".join(format_atom(a) for a in goal)
    return (f"(define (problem {name})\n  (:domain {domain})\n  (:objects {' '.join(objects)})\n"
            f"  (:init\n    {facts})\n  (:goal\n    (and\n      {goals})))\n")


def _objects(domain: str, atoms: list[Atom]) -> list[str]:
    if domain == "blocksworld":
        names = {x for a in atoms for x in a[1:]}
        return sorted(names, key=lambda b: int(b[1:]))
    return [a[1] for a in atoms if a[0] in ("room", "ball", "gripper")]


def _describe(domain: str, init_abs: str, goal_abs: str, init, goal, init_text, goal_text, objects) -> str:
    explain: Callable[[list[Atom]], str] = _explain_blocks if domain == "blocksworld" else _explain_gripper
    intro = (f"You have {len(objects)} blocks: {', '.join(objects)}." if domain == "blocksworld" else
             "You control robby, a robot with grippers that carries balls between rooms.")
    start = explain(init) if init_abs == "explicit" else init_text[0].upper() + init_text[1:] + "."
    if domain == "gripper" and init_abs == "explicit":
        start = f"There are the rooms, balls and grippers {', '.join(objects)}. " + start
    end = explain(goal) if goal_abs == "explicit" else goal_text[0].upper() + goal_text[1:] + "."
    return f"{intro}\nInitially: {start}\nYour goal is to reach a state where: {end}"


def generate(n: int, seed: int = 0) -> list[Instance]:
    """``n`` instances cycling over the 14 tasks and the four abstraction pairs (a strict task over the two
    matching pairs), deterministic by ``seed``."""
    rng = random.Random(seed)
    tasks = [("blocksworld", t) for t in BLOCKSWORLD_TASKS] + [("gripper", t) for t in GRIPPER_TASKS]
    pairs = list(itertools.product(("explicit", "abstract"), repeat=2))
    matching = [(a, b) for a, b in pairs if a == b]
    out = []
    for i in range(n):
        domain, task = tasks[i % len(tasks)]
        allowed = matching if task in STRICT_TASKS else pairs
        init_abs, goal_abs = allowed[(i // len(tasks)) % len(allowed)]
        if domain == "blocksworld":
            init, goal, init_text, goal_text = _blocksworld(rng, task, _blocks_sizes(task, rng))
        else:
            init, goal, init_text, goal_text = _gripper(rng, task, *_gripper_sizes(task, rng))
        objects = _objects(domain, init)
        name = f"{task}-{i}"
        size = len(init) + len(goal)
        out.append(Instance(
            id=f"{domain}-{name}", domain=domain, task=task, init_abstraction=init_abs, goal_abstraction=goal_abs,
            natural_language=_describe(domain, init_abs, goal_abs, init, goal, init_text, goal_text, objects),
            problem_pddl=_pddl(domain, name, objects, init, goal), n_objects=len(objects), n_propositions=size,
            size_bin=size_bin(size), is_placeholder=is_placeholder(task, init_abs, goal_abs)))
    return out
