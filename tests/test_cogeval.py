"""CogEval navigation: environment rules, loader, answer verification, prompts, malformed data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from map_agent.modules.schemas import INPUTS
from map_agent.task import InvalidProblem
from map_agent.tasks.cogeval import (
    DATA_FILE,
    CogEvalTask,
    Move,
    Room,
    Target,
    graph_of,
    load_map_problems,
    path_moves,
)
from map_agent.tasks.cogeval.graph import RoomGraph

TASK = CogEvalTask()
DATA = Path(__file__).parents[1] / "tasks" / "cogeval" / "data" / DATA_FILE
MAP_SPLITS = ("steppath2", "steppath3", "steppath4", "valuepath", "detour", "reward_revaluation")


def moves(*rooms: int) -> list[Move]:
    return [Move(room=r) for r in rooms]


# -- environment ---------------------------------------------------------------------------------------------
def test_check_names_the_missing_edge_and_apply_still_moves():
    p = TASK.problem("valuepath-4")
    state = TASK.start(p)
    verdict = TASK.check(state, Move(room=5), p)
    assert not verdict.valid
    assert "missing edge 4-5" in verdict.reason and "connects to 7, 10, 13, 15" in verdict.reason
    assert TASK.apply(state, Move(room=5), p) == Room(room=5)  # the believed state follows the invalid move
    assert TASK.check(state, Move(room=7), p).valid
    assert not TASK.check(state, Move(room=4), p).valid  # staying put is not a move
    bad = TASK.check(state, Move(room=99), p)
    assert not bad.valid and "no room 99" in bad.reason
    with pytest.raises(ValueError):
        TASK.apply(state, Move(room=99), p)


def test_legal_actions_are_the_doors_of_the_problem_graph():
    assert TASK.legal_actions(Room(room=1), TASK.problem("valuepath-4")) == moves(7, 10, 11, 13)
    assert TASK.legal_actions(Room(room=1), TASK.problem("detour-4")) == moves(7, 10, 13)  # door 1-11 locked
    assert TASK.legal_actions(Room(room=13), TASK.problem("detour-4")) == moves(1, 4, 7, 10, 11)


def test_entering_a_chest_collects_it_and_a_wrong_chest_ends_the_hunt():
    p = TASK.problem("valuepath-4")
    after = TASK.apply(Room(room=4), Move(room=15), p)
    assert after == Room(room=15, collected=15)
    assert TASK.apply(after, Move(room=6), p).collected == 15  # collected once, kept
    assert TASK.distance(after, Target(room=8), p) == float("inf")
    assert not TASK.satisfies(Room(room=8, collected=15), Target(room=8), p)
    assert TASK.satisfies(Room(room=8, collected=8), Target(room=8), p)
    assert TASK.distance(Room(room=4), Target(room=8), p) == 5  # around room 15, not through it


def test_execute_requires_optimal_length_target_and_no_invalid_move():
    p = TASK.problem("steppath3-9-13")
    assert p.optimal_length == 3
    assert TASK.execute(p, moves(15, 4, 13)).solved
    detour = TASK.execute(p, moves(12, 15, 4, 13))  # reaches the target, one step too many
    assert detour.goal_reached and not detour.solved
    jump = TASK.execute(p, moves(15, 13))  # 15-13 is no door; the walk still ends in 13
    assert jump.n_invalid == 1 and jump.goal_reached and not jump.solved
    assert jump.steps[1].reason.startswith("room 15 is not connected to room 13")
    short = TASK.execute(p, moves(15, 4))
    assert not short.goal_reached and not short.solved


def test_valuepath_through_the_smaller_chest_is_not_solved():
    p = TASK.problem("valuepath-4")
    through = TASK.execute(p, moves(15, 6, 3, 8))
    assert through.n_invalid == 0 and not through.goal_reached and not through.solved
    assert TASK.execute(p, moves(7, 1, 11, 2, 8)).solved


def test_reward_revaluation_targets_the_new_best_chest():
    p = TASK.problem("reward_revaluation-2")
    assert p.goal == {"room": 15}
    assert graph_of(p).rewards == {8: 12.0, 15: 48.0}
    assert "changed to 12" in TASK.describe(p) and "reward of 50 for visiting room 8" in TASK.describe(p)
    assert TASK.execute(p, moves(11, 1, 7, 4, 15)).solved
    assert not TASK.execute(p, moves(8, 3, 6, 15)).solved  # shorter, but through room 8


def test_detour_describes_the_old_graph_then_the_change():
    text = TASK.describe(TASK.problem("detour-7"))
    assert "Room 1 is connected to room 7, room 10, room 13, and room 11." in text
    assert text.index("Room 12 is connected") < text.index("The door from room 1 to room 11 is locked")


# -- loader --------------------------------------------------------------------------------------------------
def test_split_counts_and_settings():
    counts = {s: len(TASK.problems(s)) for s in MAP_SPLITS}
    assert counts == {
        "steppath2": 19,
        "steppath3": 19,
        "steppath4": 19,
        "valuepath": 11,
        "detour": 11,
        "reward_revaluation": 11,
    }
    for split in MAP_SPLITS:
        for p in TASK.problems(split):
            assert p.max_actions == 6
            assert p.info["search"] is (not split.startswith("steppath"))
    for k in (2, 3, 4):
        assert {p.optimal_length for p in TASK.problems(f"steppath{k}")} == {k}
    assert TASK.default_modules["Predictor"] == "off" and TASK.default_modules["TaskDecomposer"] == "off"


def test_in_context_problems_are_never_test_problems():
    icl_pairs = {(p.start["room"], p.goal["room"]) for p in TASK.problems("icl_steppath")}
    assert icl_pairs == {(9, 4), (2, 10), (7, 3)}
    icl_starts = {p.start["room"] for p in TASK.problems("icl_valuepath")}
    assert icl_starts == {1, 6}
    for split in MAP_SPLITS:
        for p in TASK.problems(split):
            assert (p.start["room"], p.goal["room"]) not in icl_pairs
            if not split.startswith("steppath"):
                assert p.start["room"] not in icl_starts | {8, 15}
    ids = [p.id for s in TASK.splits() for p in TASK.problems(s)]
    assert len(ids) == len(set(ids))


def test_prompt_examples_are_never_test_problems():
    """Each prompt set's examples (start, goal) are disjoint from the test problems of the splits using it."""
    for split in (*MAP_SPLITS, "transfer_n7tree:valuepath"):
        problems = TASK.problems(split)
        folder = TASK.prompt_dir(problems[0])
        tests = {(p.start["room"], p.goal["room"]) for p in problems}
        for stem in ("actor", "evaluator", "task_decomposer", "orchestrator"):
            for shot in json.loads((folder / f"{stem}.examples.json").read_text()):
                key = (shot["input"]["state"]["room"], shot["input"]["goal"]["room"])
                assert key not in tests, (split, stem, key)


@pytest.mark.parametrize(
    "folder,counts",
    [
        ("", {"actor": 2, "evaluator": 2}),
        ("steppath", {"actor": 3, "evaluator": 3}),
        ("n7tree_valuepath", {"actor": 2, "evaluator": 2}),
    ],
)
def test_prompt_sets_are_complete_and_valid(folder, counts):
    from map_agent.modules.base import make_input
    from map_agent.modules.schemas import outputs_for

    path = TASK.prompt_dir() / folder if folder else TASK.prompt_dir()
    outputs = outputs_for(TASK)
    stems = {
        "TaskDecomposer": "task_decomposer",
        "Actor": "actor",
        "Monitor": "monitor",
        "Predictor": "predictor",
        "Evaluator": "evaluator",
        "Orchestrator": "orchestrator",
    }
    for module, stem in stems.items():
        assert (path / f"{stem}.md").read_text().strip()
        shots = json.loads((path / f"{stem}.examples.json").read_text())
        assert len(shots) == counts.get(stem, 2)
        for shot in shots:
            inp = make_input(module, TASK, shot["input"])
            outputs[module].model_validate(shot["output"])
            assert type(inp) is INPUTS[module]


def test_prompt_dir_follows_the_problem():
    assert TASK.prompt_dir(TASK.problem("steppath2-4-9")).name == "steppath"
    assert TASK.prompt_dir(TASK.problem("valuepath-4")) == TASK.prompt_dir()
    assert TASK.prompt_dir(TASK.problem("n7tree>valuepath-4")).name == "n7tree_valuepath"


def test_unknown_split_is_a_clear_error():
    with pytest.raises(KeyError, match="unknown split 'stepath2'"):
        TASK.problems("stepath2")


# -- verification of the data file's answers ----------------------------------------------------------------
def test_file_answers_checked_against_the_environment():
    """The file's answers are BFS paths without the chest rule; the environment rejects the ones through the
    smaller chest (room 15): 3 answers of valuepath-4 and 3 of detour-4. Everything else agrees."""
    rejected: dict[str, list[list[int]]] = {}
    disagreeing = []
    for split in (*MAP_SPLITS, "icl_steppath", "icl_valuepath"):
        for p in TASK.problems(split):
            answers = p.info["file_answers"]
            bad = [a for a in answers if not TASK.execute(p, path_moves(a)).solved]
            if bad:
                rejected[p.id] = bad
            if sorted(map(tuple, answers)) != sorted(map(tuple, TASK.optimal_paths(p))):
                disagreeing.append(p.id)
    assert rejected == {
        "valuepath-4": [[4, 15, 6, 3, 8], [4, 15, 9, 3, 8], [4, 15, 12, 3, 8]],
        "detour-4": [[4, 15, 6, 3, 8], [4, 15, 9, 3, 8], [4, 15, 12, 3, 8]],
    }
    assert sorted(disagreeing) == ["detour-4", "valuepath-4"]
    assert all(15 in a for bad in rejected.values() for a in bad)
    # the environment's answer for valuepath-4: five steps round room 15, e.g. 4, 7, 1, 11, 2, 8
    assert len(TASK.optimal_paths(TASK.problem("valuepath-4"))) == 9
    assert TASK.problem("valuepath-4").optimal_length == 5
    assert TASK.problem("detour-4").optimal_length == 4


# -- malformed data ------------------------------------------------------------------------------------------
def _mutated(edit) -> str:
    raw = json.loads(DATA.read_text())
    edit(raw)
    return json.dumps(raw)


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda r: r.pop("valuePath"), r"x.json: missing field 'valuePath'"),
        (
            lambda r: r["stepPath"]["problems"][1].pop("target"),
            r"field 'stepPath.problems\[1\]': missing field 'target'",
        ),
        (
            lambda r: r["stepPath"]["problems"][1].update(n_steps=3),
            r"stepPath.problems\[1\].*n_steps is 3 but",
        ),
        (lambda r: r["detour"].update(change="lock 1-11"), r"field 'detour.change'.*not 'remove edge"),
        (
            lambda r: r["detour"].update(change="remove edge 1-2, add edge 13-11"),
            r"detour.change.*cannot remove",
        ),
        (lambda r: r["valuePath"].update(rewards=[8, 15]), r"field 'valuePath.rewards': expected an object"),
        (lambda r: r["graph"]["edges"].append([1, 1]), r"field 'graph.edges'.*itself"),
        (
            lambda r: r["valuePath"]["problems"][0].update(start="one"),
            r"valuePath.problems\[0\]': field 'start'",
        ),
    ],
)
def test_malformed_map_file_names_file_and_field(edit, message):
    with pytest.raises(InvalidProblem, match=message):
        load_map_problems(_mutated(edit), "x.json")


def test_not_json_is_a_clear_error():
    with pytest.raises(InvalidProblem, match="x.json: not JSON"):
        load_map_problems("{", "x.json")


def test_room_graph_rejects_unknown_rooms():
    with pytest.raises(ValueError, match="outside"):
        RoomGraph(rooms=(1, 2), edges=((1, 3),))
