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


def test_the_best_chest_goal_is_resolved_from_ground_truth_only():
    p = TASK.problem("valuepath-4")
    best = Target()  # "the room with the chest that yields the most reward": no room named
    assert p.goal == {"room": None} and p.hidden["target"] == 8
    assert TASK.satisfies(Room(room=8, collected=8), best, p)
    assert not TASK.satisfies(Room(room=15, collected=15), best, p)
    assert TASK.distance(Room(room=4), best, p) == 5
    assert TASK.render_goal(best) == "the room with the chest that yields the most reward"
    with pytest.raises(ValueError, match="ground truth"):  # a model's view cannot tell which room it is
        TASK.distance(Room(room=4), best, p.public())


def test_solved_is_the_map_scripts_rule_and_optimal_the_stricter_one():
    p = TASK.problem("steppath3-9-13")
    assert p.optimal_length == 3

    def scored(*rooms: int):
        execution = TASK.execute(p, moves(*rooms))
        return execution, TASK.paper_metrics(p, execution, [])

    best, metrics = scored(15, 4, 13)
    assert best.solved and metrics == {"optimal": True, "pct_invalid_per_problem": 0.0}
    longer, metrics = scored(12, 15, 4, 13)  # the target within 6 moves, one move too many
    assert longer.solved and longer.goal_reached and not metrics["optimal"]
    jump, metrics = scored(15, 13)  # 15-13 is no door; the walk still ends in 13
    assert jump.n_invalid == 1 and jump.goal_reached and not jump.solved
    assert metrics == {"optimal": False, "pct_invalid_per_problem": 50.0}
    assert jump.steps[1].reason.startswith("room 15 is not connected to room 13")
    short, _ = scored(15, 4)
    assert not short.goal_reached and not short.solved
    # the scripts look at the room after min(n, 6) moves only: a 7th move neither solves nor spoils
    late, metrics = scored(15, 4, 7, 4, 10, 13, 10)
    assert late.solved and not late.goal_reached and metrics["pct_invalid_per_problem"] == 0.0
    passed, _ = scored(15, 4, 13, 4)  # reached the target, then walked on
    assert not passed.solved
    assert not TASK.execute(p, []).solved


def test_pct_invalid_per_problem_counts_the_first_six_moves():
    p = TASK.problem("steppath3-9-13")
    execution = TASK.execute(p, moves(13, 4, 15, 9, 12, 3, 13))  # 9-13 and, 7th, 3-13 are no doors
    assert execution.n_invalid == 2
    assert TASK.paper_metrics(p, execution, [])["pct_invalid_per_problem"] == pytest.approx(100 / 6)


def test_valuepath_through_the_smaller_chest_is_solved_by_the_scripts_rule_only():
    p = TASK.problem("valuepath-4")
    through = TASK.execute(p, moves(15, 6, 3, 8))
    assert through.n_invalid == 0 and not through.goal_reached
    assert through.solved  # the scripts check only the room the walk ends in
    assert not TASK.paper_metrics(p, through, [])["optimal"]
    around = TASK.execute(p, moves(7, 1, 11, 2, 8))
    assert around.solved and TASK.paper_metrics(p, around, [])["optimal"]
    stopped = TASK.execute(p, moves(15))  # MAP's Orchestrator stops at any chest: the smaller one loses
    assert not stopped.solved


def test_reward_revaluation_targets_the_new_best_chest_without_naming_it():
    p = TASK.problem("reward_revaluation-2")
    assert p.goal == {"room": None} and p.hidden["target"] == 15
    assert graph_of(p).rewards == {8: 12.0, 15: 48.0}
    text = TASK.describe(p.public())
    assert "changed to 12" in text and "reward of 50 for visiting room 8" in text
    assert "If you enter a room with a chest, then you must collect" in text
    assert "to the room with a chest with the highest reward" in text
    assert TASK.execute(p, moves(11, 1, 7, 4, 15)).solved
    shortcut = TASK.execute(p, moves(8, 3, 6, 15))  # shorter, but through room 8
    assert not TASK.paper_metrics(p, shortcut, [])["optimal"]


def test_detour_describes_the_old_graph_then_the_change():
    text = TASK.describe(TASK.problem("detour-7"))
    assert "Room 1 is connected to room 7, room 10, room 13, and room 11." in text
    assert text.index("Room 12 is connected") < text.index("The door from room 1 to room 11 is locked")
    # the MAP Valuepath and Detour scripts state one chest rule and the "yields the most reward" goal
    assert "must collect" not in text and "that yields the most reward." in text


@pytest.mark.parametrize(
    "problem_id,before,after",
    [("detour-4", (8, 5), (8, 4)), ("reward_revaluation-2", (8, 1), (15, 5)), ("detour-1", (8, 3), (8, 4))],
)
def test_detour_and_revaluation_run_in_two_phases(problem_id, before, after):
    """Phase 0: the problem as first described; phase 1 (scored): the change announced, re-plan from the start,
    the first attempt's moves in context before the change."""
    p = TASK.problem(problem_id)
    first, second = TASK.phases(p)
    assert second == p and p.info["phase"] == 1
    assert first.id == p.id and first.info["phase"] == 0 and first.start == p.start
    assert (first.hidden["target"], first.optimal_length) == before
    assert (second.hidden["target"], second.optimal_length) == after
    assert first.goal == second.goal == {"room": None}
    assert "has been changed" not in TASK.describe(first) and "is locked" not in TASK.describe(first)
    if problem_id.startswith("detour"):
        assert TASK.legal_actions(Room(room=1), first) == moves(7, 10, 11, 13)
        assert TASK.legal_actions(Room(room=1), second) == moves(7, 10, 13)
    history = TASK.transcript(first, moves(7), [Room(room=7)])
    text = TASK.describe(second.model_copy(update={"info": {**second.info, "history": history}}))
    assert history in text and text.index(history) < text.index(second.info["change"])
    assert TASK.phases(TASK.problem("valuepath-4")) == [TASK.problem("valuepath-4")]


def test_paper_runs_per_split():
    assert {s: TASK.default_runs(s) for s in MAP_SPLITS} == {
        "steppath2": 1,
        "steppath3": 1,
        "steppath4": 1,
        "valuepath": 10,
        "detour": 10,
        "reward_revaluation": 5,
    }
    assert TASK.default_runs("transfer_n7tree:valuepath") == 3
    assert TASK.default_runs("n15star:valuepath") == 1  # not a paper split


# -- no ground truth in a prompt ------------------------------------------------------------------------------
VALUE_SPLITS = ("valuepath", "detour", "reward_revaluation", "icl_valuepath", "transfer_n7tree:valuepath")


def _prompts(problem) -> list[str]:
    """Every message each module would send for ``problem``'s start (examples included), as the agent builds
    the modules: from the public problem."""
    from map_agent.modules import LLM_MODULES
    from map_agent.modules.base import make_input
    from map_agent.modules.oracle import OracleChatModel

    view = problem.public()
    state, goal = problem.start, problem.goal
    inputs = {
        "Actor": {"state": state, "goal": goal, "n_actions": 2},
        "Monitor": {"state": state, "action": {"room": 1}},
        "Predictor": {"state": state, "action": {"room": 1}},
        "Evaluator": {"state": state, "goal": goal},
        "Orchestrator": {"state": state, "goal": goal},
        "TaskDecomposer": {"state": state, "goal": goal, "n_subgoals": 1},
    }
    texts = []
    for name, raw in inputs.items():
        module = LLM_MODULES[name](TASK, view, OracleChatModel())
        texts += [str(m.content) for m in module.messages(make_input(name, TASK, raw))]
    return texts


@pytest.mark.parametrize("split", VALUE_SPLITS)
def test_no_prompt_names_the_best_chest_as_the_goal(split):
    import re

    for problem in TASK.problems(split):
        for phase in TASK.phases(problem):
            assert phase.goal == {"room": None} and "target" in phase.hidden
            probes = TASK.leak_probes(phase)
            for text in _prompts(phase):
                assert not [q for q in probes if re.search(q, text)], (phase.id, text)


def test_leak_probes_catch_a_goal_line_naming_the_target_room():
    import re

    p = TASK.problem("valuepath-4")
    probes = TASK.leak_probes(p)
    leaking = [
        "Current state: room 4\nGoal: room 8\nPropose 2 different action(s).",
        "Goal: The goal is to find the shortest path from the starting room to room 8.",
        "- Target room: room 8",
        '{"state": {"room": 4}, "goal": {"room": 8}}',
    ]
    for text in leaking:
        assert any(re.search(q, text) for q in probes), text
    honest = [
        "Goal: the room with the chest that yields the most reward",
        "There is a chest with a reward of 50 for visiting room 8.",
        "Goal: room 80",
    ]
    for text in honest:
        assert not any(re.search(q, text) for q in probes), text
    # Steppath names its target room, as the original does: nothing to hide, no goal-line probe
    assert not [q for q in TASK.leak_probes(TASK.problem("steppath2-4-9")) if "goal|target" in q]


# -- loader --------------------------------------------------------------------------------------------------
def test_split_counts_and_settings():
    counts = {s: len(TASK.problems(s)) for s in MAP_SPLITS}
    assert counts == {
        "steppath2": 19,
        "steppath3": 19,
        "steppath4": 19,
        "valuepath": 11,
        "detour": 13,  # every start room but the two chests', as the MAP scripts
        "reward_revaluation": 13,
    }
    for split in MAP_SPLITS:
        for p in TASK.problems(split):
            assert p.max_actions == 6
            assert p.info["search"] is (not split.startswith("steppath"))
    for k in (2, 3, 4):
        assert {p.optimal_length for p in TASK.problems(f"steppath{k}")} == {k}
    assert TASK.default_modules["Predictor"] == "off" and TASK.default_modules["TaskDecomposer"] == "off"


def target(problem) -> int:
    return problem.goal["room"] if problem.goal["room"] is not None else problem.hidden["target"]


def test_in_context_problems_are_never_test_problems():
    """Steppath and Valuepath leave their in-context problems out; Detour and Reward Revaluation, whose second
    phase differs from the examples, run from every start room as the MAP scripts do."""
    icl_pairs = {(p.start["room"], p.goal["room"]) for p in TASK.problems("icl_steppath")}
    assert icl_pairs == {(9, 4), (2, 10), (7, 3)}
    icl_starts = {p.start["room"] for p in TASK.problems("icl_valuepath")}
    assert icl_starts == {1, 6}
    for split in MAP_SPLITS:
        for p in TASK.problems(split):
            assert (p.start["room"], target(p)) not in icl_pairs
            if split == "valuepath":
                assert p.start["room"] not in icl_starts | {8, 15}
    for split in ("detour", "reward_revaluation"):
        assert {p.start["room"] for p in TASK.problems(split)} == set(range(1, 16)) - {8, 15}
    # the zero-shot scripts' sets (``<split>_all``) are unions of a split and its in-context problems
    ids = [p.id for s in TASK.splits() if not s.endswith("_all") for p in TASK.problems(s)]
    assert len(ids) == len(set(ids))
    for split in ("valuepath", "steppath2", "steppath3", "steppath4"):
        union = {p.id for p in TASK.problems(split)} | {p.id for p in TASK.problems(f"icl_{split.rstrip('234')}")
                                                        if p.id.startswith(f"icl-{split}-")}
        assert {p.id for p in TASK.problems(f"{split}_all")} == union


def test_prompt_examples_are_never_test_problems():
    """Each prompt set's example problems (the opening step of each example sequence: no history yet) are
    disjoint from the test problems of the splits using it. (Later steps of the original's full example
    sequences, e.g. room 11 on the way 1, 11, 5, 8, are test start rooms, as in the original; the transfer
    set's examples are on another graph.)"""
    for split in ("steppath2", "steppath3", "steppath4", "valuepath"):
        problems = TASK.problems(split)
        folder = TASK.prompt_dir(problems[0])
        tests = {(p.start["room"], target(p)) for p in problems}
        for stem in ("actor", "evaluator", "task_decomposer", "orchestrator"):
            for shot in json.loads((folder / f"{stem}.examples.json").read_text()):
                if shot["input"].get("history"):
                    continue
                goal = shot["input"]["goal"]["room"]  # None: the same best chest as the split's problems
                key = (shot["input"]["state"]["room"], target(problems[0]) if goal is None else goal)
                assert key not in tests, (split, stem, key)


def test_valuepath_examples_name_no_goal_room_and_reason_before_verdicts():
    for folder in ("", "n7tree_valuepath"):
        path = TASK.prompt_dir() / folder
        for stem in ("actor", "evaluator", "task_decomposer", "orchestrator"):
            for shot in json.loads((path / f"{stem}.examples.json").read_text()):
                assert shot["input"]["goal"] == {"room": None}, (folder, stem)
        for stem in ("monitor", "evaluator"):
            for shot in json.loads((path / f"{stem}.examples.json").read_text()):
                assert list(shot["output"])[0] == "reasoning" and shot["output"]["reasoning"]


def test_actor_examples_are_the_originals_full_sequences():
    """MAP's in-context examples: Valuepath 1, 11, 5, 8 and 6, 3, 8; Steppath 9, 15, 4 and 2, 11, 1, 10 and
    7, 4, 15, 6, 3 -- one step per example, the moves so far in its history."""

    def sequences(folder: str) -> list[list[int]]:
        out: list[list[int]] = []
        for shot in json.loads((TASK.prompt_dir() / folder / "actor.examples.json").read_text()):
            if not shot["input"].get("history"):
                out.append([shot["input"]["state"]["room"]])
            # the history reads as the agent writes it: each move made and the room it led to
            assert shot["input"].get("history", []) == [
                f"{TASK.render_action(Move(room=r))} -> {TASK.render_state(Room(room=r))}" for r in out[-1][1:]
            ]
            out[-1] += [a["room"] for a in shot["output"]["actions"]]
        return out

    assert sequences("") == [[1, 11, 5, 8], [6, 3, 8]]
    assert sequences("steppath") == [[9, 15, 4], [2, 11, 1, 10], [7, 4, 15, 6, 3]]


@pytest.mark.parametrize(
    "folder,counts",
    [
        ("", {"actor": 5, "evaluator": 2}),
        ("steppath", {"actor": 9, "evaluator": 3}),
        # the transfer script: only the Monitor has (n7tree) examples, the other modules are zero-shot
        ("n7tree_valuepath", {"actor": 0, "evaluator": 0, "orchestrator": 0, "task_decomposer": 0}),
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
    assert TASK.prompt_dir(TASK.problem("n7tree>valuepath-8-15-4")).name == "n7tree_valuepath"


def test_unknown_split_is_a_clear_error():
    with pytest.raises(KeyError, match="unknown split 'stepath2'"):
        TASK.problems("stepath2")


# -- verification of the data file's answers ----------------------------------------------------------------
def test_file_answers_checked_against_the_environment():
    """The file's answers are BFS paths without the chest rule; the environment rejects the ones through the
    smaller chest (room 15) as not optimal: 3 answers of valuepath-4 and 3 of detour-4 (both phases of it).
    Everything else agrees."""
    rejected: dict[str, list[list[int]]] = {}
    disagreeing = []
    for split in (*MAP_SPLITS, "icl_steppath", "icl_valuepath"):
        for problem in TASK.problems(split):
            for k, p in enumerate(TASK.phases(problem)):
                answers = p.hidden["file_answers"]
                bad = []
                for a in answers:
                    execution = TASK.execute(p, path_moves(a))
                    assert execution.solved  # the scripts' rule: the target room within 6 moves
                    if not TASK.paper_metrics(p, execution, [])["optimal"]:
                        bad.append(a)
                if bad:
                    rejected[f"{p.id}#{k}"] = bad
                if sorted(map(tuple, answers)) != sorted(map(tuple, TASK.optimal_paths(p))):
                    disagreeing.append(f"{p.id}#{k}")
    through_15 = [[4, 15, 6, 3, 8], [4, 15, 9, 3, 8], [4, 15, 12, 3, 8]]
    assert rejected == {"valuepath-4#0": through_15, "detour-4#0": through_15, "detour-4#1": through_15}
    assert sorted(disagreeing) == sorted(rejected)
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
