"""The paper's algorithms over hand-filled memo tables: which module calls each step asks for, and what it picks."""

from map_agent.config import MAPConfig
from map_agent.search.algorithms import propose_action, search
from map_agent.search.memo import Ctx, key
from map_agent.search.plan import Progress, advance
from map_agent.tasks import hanoi
from map_agent.tasks.hanoi import HanoiMove, HanoiState

TASK = hanoi.HanoiTask()
P = hanoi.problem(7)  # A=[0, 2], B=[1], C=[]
S = TASK.start(P)
G = TASK.goal(P)
TO_B = HanoiMove(disk=2, source="A", target="B")
TO_C = HanoiMove(disk=2, source="A", target="C")
BAD = HanoiMove(disk=0, source="A", target="C")


def ctx(tables=None, **config):
    return Ctx(task=TASK, problem=P, config=MAPConfig(**config).resolve(TASK, P), tables=tables or {})


def dump(*moves):
    return {"actions": [m.model_dump() for m in moves]}


def test_propose_action_first_asks_the_actor():
    c = ctx()
    assert propose_action(c, S, G) is None
    (job,) = c.jobs.values()
    assert job.module == "Actor" and job.input["n_actions"] == 2 and job.input["sample"] == 0


def test_monitor_gates_each_proposal_in_parallel():
    c = ctx({"proposals": {key(S, G, 0): dump(TO_B, BAD)}})
    assert propose_action(c, S, G) is None
    assert sorted(j.module for j in c.jobs.values()) == ["Monitor", "Monitor"]


def test_rejections_are_fed_back_to_a_new_actor_round():
    tables = {"proposals": {key(S, G, 0): dump(TO_B, BAD)},
              "verdicts": {key(S, TO_B): {"valid": True}, key(S, BAD): {"valid": False, "feedback": "0 is covered"}}}
    c = ctx(tables)
    assert propose_action(c, S, G) is None
    (job,) = c.jobs.values()
    assert job.module == "Actor" and job.input["sample"] == 1
    assert job.input["feedback"] == ["'Move 0 from A to C.' is invalid: 0 is covered"]
    tables["proposals"][key(S, G, 1)] = dump(TO_C)
    tables["verdicts"][key(S, TO_C)] = {"valid": True}
    assert propose_action(ctx(tables), S, G) == [TO_B, TO_C]


def test_retries_are_bounded_then_the_last_proposal_goes_ahead_as_in_the_original():
    tables = {"proposals": {key(S, G, r): dump(BAD) for r in range(2)},
              "verdicts": {key(S, BAD): {"valid": False, "feedback": "no"}}}
    # the original executes the last raw proposal (duplicated into both branches); "stop" is our deviation
    assert propose_action(ctx(tables, monitor_retries=1), S, G) == [BAD, BAD]
    assert propose_action(ctx(tables, monitor_retries=1, on_all_rejected="stop"), S, G) == []


def test_one_valid_action_fills_both_branches_unless_told_otherwise():
    tables = {"proposals": {key(S, G, r): dump(TO_B, BAD) for r in range(2)},
              "verdicts": {key(S, BAD): {"valid": False, "feedback": "no"}, key(S, TO_B): {"valid": True}}}
    assert propose_action(ctx(tables, monitor_retries=1), S, G) == [TO_B, TO_B]
    assert propose_action(ctx(tables, monitor_retries=1, single_valid="single"), S, G) == [TO_B]


def test_the_monitors_reasoning_is_fed_back_to_the_actor():
    tables = {"proposals": {key(S, G, 0): dump(BAD)},
              "verdicts": {key(S, BAD): {"reasoning": "0 is under 2 in A.", "valid": False,
                                         "feedback": "Rule 1."}}}
    c = ctx(tables)
    assert propose_action(c, S, G) is None
    (job,) = c.jobs.values()
    assert job.input["feedback"] == ["'Move 0 from A to C.' is invalid: 0 is under 2 in A. Rule 1."]


def test_without_monitor_every_proposal_passes():
    c = ctx({"proposals": {key(S, G, 0): dump(BAD, TO_B)}}, modules={"Monitor": "off"})
    assert propose_action(c, S, G) == [BAD, TO_B] and not c.jobs


def _two_branch_tables():
    sb, sc = TASK.apply(S, TO_B, P), TASK.apply(S, TO_C, P)
    return sb, sc, {
        "proposals": {key(S, G, 0): dump(TO_B, TO_C)},
        "verdicts": {key(S, TO_B): {"valid": True}, key(S, TO_C): {"valid": True}},
        "predictions": {key(S, TO_B): {"next_state": sb.model_dump()}, key(S, TO_C): {"next_state": sc.model_dump()}},
        "achieved": {key(sb, G): {"achieved": False}, key(sc, G): {"achieved": False}},
    }


def test_search_values_leaves_with_the_evaluator_and_takes_the_best_first_action():
    sb, sc, tables = _two_branch_tables()
    c = ctx(tables, layers=1)
    assert search(c, S, G) is None
    assert sorted(j.module for j in c.jobs.values()) == ["Evaluator", "Evaluator"]
    tables["values"] = {key(sb, G): {"steps_to_goal": 4}, key(sc, G): {"steps_to_goal": 6}}
    choice = search(ctx(tables, layers=1), S, G)
    assert choice.chosen.action == TO_B.model_dump() and choice.chosen.value == 5
    assert [b.value for b in choice.branches] == [5, 7]


def test_two_layers_expand_both_children_in_parallel():
    sb, sc, tables = _two_branch_tables()
    c = ctx(tables)
    assert search(c, S, G) is None
    jobs = [j for j in c.jobs.values()]
    assert [j.module for j in jobs] == ["Actor", "Actor"]
    assert {j.input["state"]["C"].__len__() for j in jobs} == {0, 1}


def test_a_child_at_the_goal_is_still_chosen_by_the_evaluator_as_the_original():
    """toh/gpt4_map_toh.py, rollout_from_2nodes: when the Orchestrator says a child reaches the goal, the Evaluator
    still chooses between the children (no deeper layer): an Evaluator that prefers the other child wins."""
    sb, sc, tables = _two_branch_tables()
    tables["achieved"][key(sc, G)] = {"achieved": True}
    c = ctx(tables)
    assert search(c, S, G) is None
    assert sorted(j.module for j in c.jobs.values()) == ["Evaluator", "Evaluator"]  # no Actor: no deeper layer
    tables["values"] = {key(sb, G): {"steps_to_goal": 1}, key(sc, G): {"steps_to_goal": 3}}
    choice = search(ctx(tables), S, G)
    assert choice.chosen.action == TO_B.model_dump() and not choice.chosen.reached_goal
    # this project's early termination takes the goal child without asking the Evaluator
    choice = search(ctx(tables, early_termination=True), S, G)
    assert choice.chosen.action == TO_C.model_dump() and choice.chosen.reached_goal
    assert ctx(early_termination=True).config.deviations == {"early_termination": True}


def _grandchildren(values):
    """Two children, each with two valid grandchildren valued ``values`` (child B's two, then child C's two)."""
    sb, sc, tables = _two_branch_tables()
    moves = [(TO_B, sb, (HanoiMove(disk=1, source="B", target="C"), HanoiMove(disk=2, source="B", target="C"))),
             (TO_C, sc, (HanoiMove(disk=1, source="B", target="A"), HanoiMove(disk=2, source="C", target="B")))]
    leaves = []
    for first, child, pair in moves:
        history = f"{TASK.render_action(first)} -> {TASK.render_state(child)}"
        tables["proposals"][key(child, G, 0, history)] = dump(*pair)
        for move in pair:
            leaf = TASK.apply(child, move, P)
            tables["verdicts"][key(child, move)] = {"valid": True}
            tables["predictions"][key(child, move)] = {"next_state": leaf.model_dump()}
            leaves.append(leaf)
    tables["values"] = {key(leaf, G): {"steps_to_goal": v} for leaf, v in zip(leaves, values, strict=True)}
    return tables


def test_grandchildren_get_no_orchestrator_call_and_ties_are_drawn_among_the_tied_grandchildren():
    tables = _grandchildren([2, 2, 2, 5])
    c = ctx(tables)
    choice = search(c, S, G)
    assert choice is not None and not c.jobs  # every grandchild valued, none checked by the Orchestrator
    assert [b.value for b in choice.branches] == [4, 4] and [b.tied_leaves for b in choice.branches] == [2, 1]
    picks = [search(ctx(tables, seed=seed), S, G).chosen.action == TO_B.model_dump() for seed in range(300)]
    assert 0.58 < sum(picks) / len(picks) < 0.76  # two of the three tied grandchildren lie below B
    # a grandchild the Orchestrator would call the goal is valued like any other: here the Evaluator decides
    tables["achieved"][key(TASK.apply(TASK.apply(S, TO_C, P), HanoiMove(disk=1, source="B", target="A"), P),
                             G)] = {"achieved": True}
    assert {search(ctx(tables, seed=seed), S, G).chosen.value for seed in range(5)} == {4}


def test_without_search_one_action_is_proposed_and_no_evaluator_runs():
    sb, _, tables = _two_branch_tables()
    c = ctx({"proposals": {key(S, G, 0): dump(TO_B)}, "verdicts": tables["verdicts"],
             "predictions": tables["predictions"], "achieved": tables["achieved"]}, search=False)
    assert c.config.branches == 1
    choice = search(c, S, G)
    assert choice.chosen.action == TO_B.model_dump() and not c.jobs


def test_plan_loop_decomposes_first_then_checks_the_goal():
    c = ctx()
    progress, jobs = advance(c, Progress())
    # the start's final-goal check is asked first whatever the subgoals are (with none, it is the pursued goal's):
    # it goes out with the TaskDecomposer, not a superstep after it
    assert [j.module for j in jobs] == ["TaskDecomposer", "Orchestrator"] and progress.goals is None
    assert jobs[1].input["goal"] == G.model_dump()
    assert [j.module for j in advance(ctx(final_goal_first=False), Progress())[1]] == ["TaskDecomposer"]
    sub = HanoiState(A=[], B=[1, 2], C=[0])
    c = ctx({"subgoals": {key(S, G, 1): {"subgoals": [sub.model_dump()]}}})
    progress, jobs = advance(c, Progress())
    assert progress.goals == [sub.model_dump(), G.model_dump()]
    # as the original, the final goal is checked before the subgoal at every step
    assert [j.module for j in jobs] == ["Orchestrator"] and jobs[0].input["goal"] == G.model_dump()
    c.tables["achieved"] = {key(S, G): {"achieved": False}}
    c.jobs.clear()
    progress, jobs = advance(c, Progress())
    assert [j.module for j in jobs] == ["Orchestrator"] and jobs[0].input["goal"] == sub.model_dump()
    c = ctx({"subgoals": {key(S, G, 1): {"subgoals": [sub.model_dump()]}}}, final_goal_first=False)
    progress, jobs = advance(c, Progress())
    assert jobs[0].input["goal"] == sub.model_dump()


def test_plan_stops_at_the_action_budget():
    c = ctx({"achieved": {key(S, G): {"achieved": False}}}, modules={"TaskDecomposer": "off"}, max_actions=1)
    progress = Progress(current=S.model_dump(), plan=[TO_B.model_dump()])
    progress, jobs = advance(c, progress)
    assert progress.status == "budget" and not jobs
