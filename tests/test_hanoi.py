import json
import re

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from map_agent.modules import LLM_MODULES
from map_agent.modules.base import make_input
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


def test_the_monitors_explanation_checks_each_rule_and_agrees_with_the_environment():
    state = HanoiState(A=[0, 2], B=[], C=[1])
    p = T.problem(7)
    assert T.explain(state, HanoiMove(disk=2, source="A", target="C"), p) == \
        "A = [0, 2], right end 2: Rule 1 holds. C = [1], 2 > 1: Rule 2 holds."
    assert T.explain(state, HanoiMove(disk=1, source="C", target="A"), p).endswith("1 < 2: Rule 2 fails.")
    assert "Rule 1 fails" in T.explain(state, HanoiMove(disk=0, source="A", target="B"), p)
    states = [HanoiState.model_validate(s) for s in shortest_path(T, T.start(p), T.goal(p), p).states]
    for s in states:
        for disk in range(3):
            for source in "ABC":
                for target in "ABC":
                    move = HanoiMove(disk=disk, source=source, target=target)
                    text = T.explain(s, move, p)
                    assert ("fails" in text or "not a move" in text) != T.check(s, move, p).valid, (s, move, text)


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


# -- the original code's protocol (issue 8) ------------------------------------------------------------------
def original_numbering():
    """The start states in the order of the original's ``toh/gen_start_config.py`` (problem id = index + 1):
    per disk count, all disks in A, all in B, then each split of the disks over a pair of lists (A-B, A-C, B-C),
    each split in both orders, the remaining disks (if any) on the third list."""
    def spread(splits):
        out = []
        for i, j in ((0, 1), (0, 2), (1, 2)):
            for split in splits:
                for first, second in ((split[0], split[1]), (split[1], split[0])):
                    lists = [None, None, None]
                    lists[i], lists[j], lists[3 - i - j] = first, second, split[2] if len(split) > 2 else []
                    out.append(lists)
        return out

    three = [[[0, 1, 2], [], []], [[], [0, 1, 2], []],
             *spread([([0, 1], [2]), ([1, 2], [0]), ([0, 2], [1])]), *spread([([0], [1], [2])])]
    four = [[[0, 1, 2, 3], [], []], [[], [0, 1, 2, 3], []],
            *spread([([0, 1, 2], [3]), ([0, 2, 3], [1]), ([1, 2, 3], [0]), ([0, 1, 3], [2])]),
            *spread([([0, 1], [2, 3]), ([0, 2], [1, 3]), ([0, 3], [1, 2])]),
            *spread([([0, 1], [2], [3]), ([0, 2], [1], [3]), ([0, 3], [1], [2]), ([1, 2], [0], [3]),
                     ([2, 3], [0], [1]), ([1, 3], [0], [2])])]
    return three + four


def test_problem_ids_are_the_original_numbering():
    order = original_numbering()
    assert len(order) == 106
    for pid, (a, b, c) in enumerate(order, start=1):
        assert hanoi.problem(pid).start == {"A": a, "B": b, "C": c}, pid


def test_test_splits_leave_out_the_in_context_problems():
    assert [p.id for p in T.problems("test3")] == [str(i) for i in range(1, 27) if i not in (3, 22)]
    assert [p.id for p in T.problems("test4_icl4")] == [str(i) for i in range(27, 107) if i not in (29, 77)]
    assert [p.id for p in T.problems("icl4")] == ["29", "77"]
    assert hanoi.problem(29).start == {"A": [0, 1, 2], "B": [3], "C": []}  # the 4-disk script's icl_ex1
    assert hanoi.problem(77).start == {"A": [1, 2], "B": [0], "C": [3]}  # and icl_ex2


def test_paper_protocol_knobs():
    assert T.default_runs("test3") == 5 and T.default_runs("test4") == 1 and T.default_runs("test4_icl4") == 1
    assert T.evaluator_fallback(hanoi.problem(7)) == (1, 7)
    assert T.evaluator_fallback(hanoi.problem(30)) == (1, 15)


def test_prompt_sets():
    root = T.prompt_dir()
    assert T.prompt_dir(hanoi.problem(30)) == root
    assert all(T.prompt_dir(p) == root / "icl4" for p in T.problems("test4_icl4"))
    # the four-disk ablation changes the examples only: the instructions are the same files' text
    for md in (root / "icl4").glob("*.md"):
        assert md.read_text() == (root / md.name).read_text(), md.name


def test_the_optimal_plan_is_hidden_ground_truth():
    for split in ("all3", "test4"):
        for p in T.problems(split):
            plan = [HanoiMove(**m) for m in p.hidden["optimal_plan"]]
            ex = T.execute(p, plan)
            assert ex.solved and ex.n_actions == p.optimal_length
            public = p.public()
            assert public.hidden == {} and public.optimal_length is None and public.start == p.start


def test_optimal_moves_must_agree_with_the_optimal_length():
    raw = [{"A": [0, 1], "B": [2], "C": [], "optimal_num_moves": 7, "optimal_moves": ["Move 2 from B to C."]}]
    with pytest.raises(InvalidProblem, match="holds 1 moves but 'optimal_num_moves' is 7"):
        load_problems(json.dumps(raw), "bad.json", 10, 1)
    raw[0]["optimal_moves"] = ["Put 2 on C"] * 7
    with pytest.raises(InvalidProblem, match="not a move"):
        load_problems(json.dumps(raw), "bad.json", 10, 1)


@pytest.mark.parametrize("text", [
    "Solve it in at most 7 moves.", "It takes 7 moves.", "The optimal plan is 7 long.", "within a budget of 7",
    json.dumps(hanoi.problem(3).hidden["optimal_plan"]),
])
def test_leak_probes_catch_an_optimal_length_or_the_plan(text):
    probes = T.leak_probes(hanoi.problem(3))  # optimal length 7
    assert any(re.search(p, text) for p in probes)


def test_leak_probes_leave_the_original_prompts_alone():
    probes = T.leak_probes(hanoi.problem(10))  # optimal length 1
    assert not any(re.search(p, "so 1 moves from list A to list B; Move 1 from A to C.") for p in probes)


def module_prompts(problem):
    llm = FakeListChatModel(responses=["{}"])
    inputs = {"TaskDecomposer": {"state": problem.start, "goal": problem.goal, "n_subgoals": 1},
              "Actor": {"state": problem.start, "goal": problem.goal, "n_actions": 2,
                        "history": ["Move 2 from A to B. -> A = [0], B = [1, 2], C = []"], "feedback": ["invalid"]},
              "Monitor": {"state": problem.start, "action": {"disk": 2, "source": "A", "target": "B"}},
              "Predictor": {"state": problem.start, "action": {"disk": 2, "source": "A", "target": "B"}},
              "Evaluator": {"state": problem.start, "goal": problem.goal},
              "Orchestrator": {"state": problem.start, "goal": problem.goal}}
    texts = []
    for name, cls in LLM_MODULES.items():
        for variant in (None, "k2"):
            module = cls(T, problem, llm, variant=variant)
            texts += [str(m.content) for m in module.messages(make_input(name, T, inputs[name]))]
    return texts


@pytest.mark.parametrize("split", ["test3", "test4", "test4_icl4"])
def test_map_prompts_never_state_the_move_limit(split):
    """The original's MAP modules are never told N (only its baselines are)."""
    problem = T.problems(split)[0]
    texts = module_prompts(problem)
    for probe in hanoi.move_count_phrasings(problem.max_actions):
        assert not any(re.search(probe, t) for t in texts), probe
    assert any(re.search(probe, f"Use at most {problem.max_actions} moves.")
               for probe in hanoi.move_count_phrasings(problem.max_actions))


# -- prompts and in-context examples as the original's -------------------------------------------------------
PROMPTS = T.prompt_dir()


def examples(name, folder=PROMPTS):
    return json.loads((folder / f"{name}.examples.json").read_text())


@pytest.mark.parametrize("problem_id, variant", [(7, None), (7, "k2"), (30, None)])
def test_every_example_file_validates_against_the_module_schemas(problem_id, variant):
    p = hanoi.problem(problem_id) if problem_id != 30 else T.problems("test4_icl4")[0]
    for name, cls in LLM_MODULES.items():
        kwargs = {"variant": variant} if name == "TaskDecomposer" else {}
        module = cls(T, p, FakeListChatModel(responses=["{}"]), **kwargs)  # validates its examples
        assert len(module._prefix) == 1 + 2 * 2, name  # system, the original's two examples


@pytest.mark.parametrize("folder, ids", [(PROMPTS, ("3", "22")), (PROMPTS / "icl4", ("29", "77"))])
def test_actor_examples_are_the_original_problems_with_full_optimal_sequences(folder, ids):
    for shot, pid in zip(examples("actor", folder), ids, strict=True):
        p = hanoi.problem(pid)
        assert shot["input"]["state"] == p.start and shot["input"]["goal"] == p.goal
        lines = shot["context"].splitlines()[1:]
        state = T.start(p)
        for k, line in enumerate(lines, start=1):
            move_text, shown = line.split(" -> ")
            assert move_text.startswith(f"{k}. ")
            move = hanoi._parse_move(move_text.split(". ", 1)[1])
            assert T.check(state, move, p).valid
            state = T.apply(state, move, p)
            assert shown == T.render_state(state)
        assert state == T.goal(p) and len(lines) == p.optimal_length
        proposed = [HanoiMove(**a) for a in shot["output"]["actions"]]
        assert proposed[0] == hanoi._parse_move(lines[0].split(". ", 1)[1].split(" -> ")[0])
        assert len(set(proposed)) == 2 and all(T.check(T.start(p), a, p).valid for a in proposed)


@pytest.mark.parametrize("folder", [PROMPTS, PROMPTS / "icl4"])
def test_monitor_predictor_orchestrator_evaluator_examples_are_right(folder):
    p = hanoi.problem(7)
    for shot in examples("monitor", folder):
        verdict = T.check(HanoiState(**shot["input"]["state"]), HanoiMove(**shot["input"]["action"]), p)
        assert shot["output"]["valid"] == verdict.valid
        assert shot["output"]["reasoning"].index("Rule 1") < shot["output"]["reasoning"].index("Rule 2")
    for shot in examples("predictor", folder):
        after = T.apply(HanoiState(**shot["input"]["state"]), HanoiMove(**shot["input"]["action"]), p)
        assert shot["output"]["next_state"] == after.model_dump()
    for shot in examples("orchestrator", folder):
        assert shot["output"]["achieved"] == (shot["input"]["state"] == shot["input"]["goal"])
    for shot in examples("evaluator", folder):
        exact = T.distance(HanoiState(**shot["input"]["state"]), HanoiState(**shot["input"]["goal"]), p)
        assert shot["output"]["steps_to_goal"] == exact  # the original's answers are the exact distances
        assert "sum of the distances" in shot["output"]["reasoning"].lower()
        assert shot["output"]["reasoning"].endswith(f"= {int(exact)}.")


@pytest.mark.parametrize("name, folder", [("task_decomposer", PROMPTS), ("task_decomposer.k2", PROMPTS),
                                          ("task_decomposer", PROMPTS / "icl4")])
def test_task_decomposer_examples_clear_the_way_for_the_smallest_number(name, folder):
    """The original's goal recursion: the (first) subgoal is the configuration in which everything above 0 and
    everything in C has gone to the third list, 0 not yet moved; the two-subgoal ablation then moves 0 to C."""
    for shot in examples(name, folder):
        start, (first, *rest) = shot["input"]["state"], shot["output"]["subgoals"]
        home = next(peg for peg in "ABC" if 0 in start[peg])
        other = ({"A", "B", "C"} - {home, "C"}).pop()
        assert first[home] == [0] and first["C"] == [] and sorted(first[other]) == first[other]
        assert shot["output"]["reasoning"].startswith("I need to move 0" if not rest else "Subgoal 1.")
        if rest:
            assert rest == [{**first, home: [], "C": [0]}]
        assert len(shot["output"]["subgoals"]) == shot["input"]["n_subgoals"]


# -- the original's score, from the Predictor's states -------------------------------------------------------
def moves(*texts):
    return [hanoi._parse_move(t) for t in texts]


def test_paper_metrics_with_a_faithful_predictor_agree_with_the_environment():
    p = hanoi.problem(22)  # A=[1], B=[0], C=[2]
    plan = [HanoiMove(**m) for m in p.hidden["optimal_plan"]]
    execution = T.execute(p, plan)
    states, s = [], T.start(p)
    for m in plan:
        s = T.apply(s, m, p)
        states.append(s.model_dump())
    assert T.paper_metrics(p, execution, states) == {"paper_solved": True, "paper_moves": 5.0,
                                                     "paper_invalid_moves": 0.0}


def test_paper_metrics_trust_the_predicted_states_as_the_original_does():
    p = hanoi.problem(10)  # A=[2], B=[], C=[0, 1]
    wrong = moves("Move 1 from C to A.")  # invalid: 1 is not larger than 2
    execution = T.execute(p, wrong)
    # a Predictor that says the move worked and reached the goal: the original counts it solved, the replay not
    hallucinated = [{"A": [], "B": [], "C": [0, 1, 2]}]
    assert not execution.solved and execution.n_invalid == 1
    assert T.paper_metrics(p, execution, hallucinated) == {"paper_solved": False, "paper_moves": 1.0,
                                                           "paper_invalid_moves": 1.0}
    good = T.execute(p, moves("Move 2 from A to C."))
    assert T.paper_metrics(p, good, hallucinated)["paper_solved"]
    assert not T.paper_metrics(p, good, [{"A": [2], "B": [], "C": [0, 1]}])["paper_solved"]


def test_paper_metrics_judge_each_move_on_the_previous_prediction():
    p = hanoi.problem(10)  # A=[2], B=[], C=[0, 1]
    plan = moves("Move 2 from A to B.", "Move 2 from B to C.")
    execution = T.execute(p, plan)
    assert execution.solved
    # the Predictor put 2 on A again after the first move: the second move is invalid in that state
    metrics = T.paper_metrics(p, execution, [{"A": [2], "B": [], "C": [0, 1]}, {"A": [], "B": [], "C": [0, 1, 2]}])
    assert metrics == {"paper_solved": False, "paper_moves": 2.0, "paper_invalid_moves": 1.0}


def test_paper_metrics_keep_the_original_checks_quirks_and_limits():
    p = hanoi.problem(10)
    same_list = T.execute(p, moves("Move 2 from A to A.", "Move 2 from A to C."))
    assert same_list.n_invalid == 1  # the environment rejects it
    states = [{"A": [2], "B": [], "C": [0, 1]}, {"A": [], "B": [], "C": [0, 1, 2]}]
    assert T.paper_metrics(p, same_list, states)["paper_invalid_moves"] == 0  # the original's check does not
    # at most N moves count; a missing prediction leaves the problem unsolved
    long = T.execute(p, moves("Move 2 from A to B.", "Move 2 from B to A.") * 6)
    back_and_forth = [{"A": [], "B": [2], "C": [0, 1]}, {"A": [2], "B": [], "C": [0, 1]}] * 6
    assert T.paper_metrics(p, long, back_and_forth)["paper_moves"] == 10
    assert not T.paper_metrics(p, T.execute(p, moves("Move 2 from A to C.")), [])["paper_solved"]
