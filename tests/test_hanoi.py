import json

import pytest

from map_agent.task import InvalidProblem, shortest_path
from map_agent.tasks import hanoi
from map_agent.tasks.hanoi import HanoiMove, HanoiState, HanoiTask, load_problems

T = HanoiTask()


def state(a, b, c):
    return HanoiState(A=a, B=b, C=c)


def test_splits_follow_the_paper():
    assert len(T.problems("test3")) == 24
    assert [p.id for p in T.problems("icl3")] == ["3", "22"]
    assert len(T.problems("all3")) == 26
    four = T.problems("test4")
    assert len(four) == 80 and four[0].id == "27" and four[-1].id == "106"
    assert {p.max_actions for p in T.problems("test3")} == {10}
    assert {p.max_actions for p in four} == {20}


def test_problem_lookup_by_paper_id():
    p = hanoi.problem(7)
    assert p.start == {"A": [0, 2], "B": [1], "C": []}
    assert p.goal == {"A": [], "B": [], "C": [0, 1, 2]}
    with pytest.raises(KeyError):
        hanoi.problem(999)


@pytest.mark.parametrize("move, reason", [
    (HanoiMove(disk=0, source="A", target="C"), "not at the right end"),
    (HanoiMove(disk=1, source="B", target="A"), "not larger than"),
    (HanoiMove(disk=1, source="A", target="C"), "not in list A"),
    (HanoiMove(disk=2, source="A", target="A"), "both list A"),
])
def test_invalid_moves_name_the_broken_rule(move, reason):
    verdict = T.check(state([0, 2], [1], []), move, hanoi.problem(7))
    assert not verdict.valid and reason in verdict.reason


def test_apply_and_legal_actions():
    s = state([0, 2], [1], [])
    p = hanoi.problem(7)
    assert T.apply(s, HanoiMove(disk=2, source="A", target="C"), p) == state([0], [1], [2])
    assert {str(m) for m in T.legal_actions(s, p)} == {"Move 2 from A to B.", "Move 2 from A to C.",
                                                       "Move 1 from B to C."}


def test_bfs_distance_matches_every_optimal_length_in_the_data():
    for split in ("all3", "test4"):
        for p in T.problems(split):
            assert T.distance(T.start(p), T.goal(p), p) == p.optimal_length


def test_shortest_path_is_a_valid_plan():
    p = hanoi.problem(30)
    path = shortest_path(T, T.start(p), T.goal(p), p)
    ex = T.execute(p, [HanoiMove(**a) for a in path.actions])
    assert ex.solved and ex.n_invalid == 0 and ex.n_actions == p.optimal_length


def test_execute_scores_like_the_paper():
    p = hanoi.problem(10)  # A=[2], C=[0, 1]: one move
    good = HanoiMove(disk=2, source="A", target="C")
    bad = HanoiMove(disk=0, source="C", target="B")
    assert T.execute(p, [good]).solved
    ex = T.execute(p, [bad, good])  # reaches the goal, but an invalid move was made
    assert ex.goal_reached and not ex.solved and ex.n_invalid == 1 and not ex.steps[0].valid
    over = T.execute(p, [HanoiMove(disk=2, source="A", target="B"), HanoiMove(disk=2, source="B", target="A")] * 5
                     + [good])
    assert over.goal_reached and not over.solved  # 11 moves > N = 10


@pytest.mark.parametrize("raw, message", [
    ([{"A": [0], "B": [1, 2]}], "missing field 'C'"),
    ([{"A": [0, 0], "B": [1], "C": [], "optimal_num_moves": 1}], "appears twice"),
    ([{"A": [1, 0], "B": [2], "C": [], "optimal_num_moves": 1}], "smaller digit under a larger one"),
    ([{"A": [0, "x"], "B": [], "C": [], "optimal_num_moves": 1}], "bad.json[0]"),
    ({"A": []}, "expected a JSON list"),
])
def test_malformed_problem_files_get_clear_errors(raw, message):
    with pytest.raises(InvalidProblem, match=None) as err:
        load_problems(json.dumps(raw), "bad.json", 10, 1)
    assert message in str(err.value) and "bad.json" in str(err.value)


def test_not_json_is_reported_with_the_file_name():
    with pytest.raises(InvalidProblem, match="bad.json: not JSON"):
        load_problems("{", "bad.json", 10, 1)
