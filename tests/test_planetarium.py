"""The Planetarium dataset generator and the text-to-PDDL evaluation (with a scripted chat model)."""

from __future__ import annotations

import json

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from map_agent.cli import main
from map_agent.eval.text_to_pddl import extract_problem, run, score
from map_agent.tasks.planetarium.generator import (
    BLOCKSWORLD_TASKS,
    GRIPPER_TASKS,
    STRICT_TASKS,
    domain_text,
    generate,
)
from map_agent.tools.equivalence import equivalence
from map_agent.tools.pddl_tools import pddl_equivalent, validate_plan
from map_agent.tools.planners import solve
from map_agent.tools.strips import Strips, format_atom

DATA = generate(56, seed=0)


def test_generator_covers_14_tasks_and_4_abstractions_deterministically():
    assert {i.task for i in DATA} == set(BLOCKSWORLD_TASKS) | set(GRIPPER_TASKS)
    assert len(set(BLOCKSWORLD_TASKS) | set(GRIPPER_TASKS)) == 14
    assert {(i.init_abstraction, i.goal_abstraction) for i in DATA} == {
        ("explicit", "explicit"), ("explicit", "abstract"), ("abstract", "explicit"), ("abstract", "abstract")}
    assert generate(56, seed=0) == DATA and generate(56, seed=1) != DATA
    assert len({i.size_bin for i in DATA}) >= 4


def test_placeholder_mode_follows_the_reference_per_task_rule():
    # BatsResearch/planetarium: strictly_both (swap, invert; gripper swap) and strict (focus_max, focus_min)
    assert STRICT_TASKS == {"swap", "invert", "swap_rooms", "move_to_max", "move_to_min"}
    for i in DATA:
        abstract = "abstract" in (i.init_abstraction, i.goal_abstraction)
        assert i.is_placeholder == (abstract and i.task not in STRICT_TASKS), i.id
        if i.task in STRICT_TASKS:  # as the reference: both sides explicit or both abstract
            assert i.init_abstraction == i.goal_abstraction, i.id
    assert {(i.init_abstraction, i.goal_abstraction) for i in DATA if i.task == "swap"} == {
        ("explicit", "explicit"), ("abstract", "abstract")}
    assert any(i.is_placeholder for i in DATA if i.task == "stack")


def _with_goal(instance, goal) -> str:
    head = instance.problem_pddl[:instance.problem_pddl.index("  (:goal")]
    return head + "  (:goal\n    (and\n      " + "\n      ".join(format_atom(a) for a in sorted(goal)) + ")))\n"


def test_a_swap_that_moves_nothing_is_wrong_although_placeholder_mode_would_accept_it():
    instance = next(i for i in DATA if i.task == "swap" and i.init_abstraction == "abstract")
    domain = domain_text("blocksworld")
    reference = Strips.from_text(domain, instance.problem_pddl)
    no_op = _with_goal(instance, reference.initial)  # the same two towers: the bases never move
    candidate = Strips.from_text(domain, no_op)
    assert equivalence(reference, candidate, is_placeholder=True).equivalent  # the goal scenes alone match
    verdict = score(instance, no_op)
    assert verdict.solvable and not verdict.correct and not instance.is_placeholder


def test_moving_the_balls_to_the_wrong_room_is_wrong():
    for task, pick in (("move_to_max", max), ("move_to_min", min)):
        instance = next(i for i in DATA if i.task == task and i.init_abstraction == "abstract")
        domain = domain_text("gripper")
        reference = Strips.from_text(domain, instance.problem_pddl)
        counts = {}
        for atom in reference.initial:
            if atom[0] == "room":
                counts.setdefault(atom[1], 0)
            if atom[0] == "at":
                counts[atom[2]] = counts.get(atom[2], 0) + 1
        target = {a[2] for a in reference.goal_pos if a[0] == "at"}
        assert target == {pick(counts, key=counts.get)}
        assert list(counts.values()).count(counts[next(iter(target))]) == 1  # a unique fullest / emptiest room
        wrong = next(room for room in counts if room not in target)
        goal = {("at", a[1], wrong) if a[0] == "at" else a for a in reference.goal_pos}
        candidate = _with_goal(instance, goal)
        assert equivalence(reference, Strips.from_text(domain, candidate), is_placeholder=True).equivalent
        assert score(instance, candidate).solvable and not score(instance, candidate).correct


def test_abstract_tasks_outside_the_rule_accept_any_objects_in_the_goals_roles():
    instance = next(i for i in DATA if i.task == "stack" and i.is_placeholder and i.init_abstraction == "explicit")
    domain = domain_text("blocksworld")
    reference = Strips.from_text(domain, instance.problem_pddl)
    blocks = sorted({x for a in reference.initial for x in a[1:]})
    rename = dict(zip(blocks, blocks[1:] + blocks[:1], strict=True))  # the tower built in another order
    goal = {(a[0], *(rename[x] for x in a[1:])) for a in reference.goal_pos}
    assert goal != set(reference.goal_pos) and score(instance, _with_goal(instance, goal)).correct


@pytest.mark.parametrize("instance", DATA[:28], ids=lambda i: i.id)
def test_ground_truth_is_solvable_and_self_equivalent(instance):
    strips = Strips.from_text(domain_text(instance.domain), instance.problem_pddl)
    assert len(strips.initial) + len(strips.goal_pos) == instance.n_propositions
    assert solve(strips) is not None
    assert equivalence(strips, strips, is_placeholder=instance.is_placeholder).equivalent


def test_explicit_descriptions_name_every_fact():
    instance = next(i for i in DATA if i.task == "stack" and i.init_abstraction == "explicit"
                    and i.goal_abstraction == "explicit")
    strips = Strips.from_text(domain_text("blocksworld"), instance.problem_pddl)
    for atom in strips.goal_pos:
        if atom[0] == "on":
            assert f"{atom[1]} is on top of {atom[2]}" in instance.natural_language


def test_swap_task_swaps_the_bases():
    instance = next(i for i in DATA if i.task == "swap")
    strips = Strips.from_text(domain_text("blocksworld"), instance.problem_pddl)
    bottoms_init = {a[1] for a in strips.initial if a[0] == "on-table"}
    bottoms_goal = {a[1] for a in strips.goal_pos if a[0] == "on-table"}
    assert bottoms_init == bottoms_goal  # same two bases, exchanged under the rest of the towers
    assert {a for a in strips.initial if a[0] == "on"} != {a for a in strips.goal_pos if a[0] == "on"}


def test_extract_problem_from_chatter():
    text = "Sure!\n```pddl\n(define (problem x) (:domain d) (:objects a) (:init) (:goal (and)))\n```\nDone."
    assert extract_problem(text) == "(define (problem x) (:domain d) (:objects a) (:init) (:goal (and)))"
    assert extract_problem("no pddl here") is None


def test_score_three_metrics():
    instance = DATA[0]
    assert score(instance, f"```pddl\n{instance.problem_pddl}```").correct
    broken = score(instance, instance.problem_pddl.replace("(:objects", "(:objcts", 1))
    assert not broken.parseable and "line" in broken.error
    # Drop one goal fact that matters: still solvable, no longer correct.
    lines = instance.problem_pddl.splitlines()
    on_line = next(k for k, line in enumerate(lines) if line.strip().startswith("(on ") and k > lines.index(
        "  (:goal"))
    weaker = "\n".join(lines[:on_line] + lines[on_line + 1:])
    result = score(instance, weaker)
    assert result.parseable and result.solvable and not result.correct
    unsolvable = instance.problem_pddl.replace("(:goal\n    (and", "(:goal\n    (and (holding b1) (holding b2)")
    result = score(instance, unsolvable)
    assert result.parseable and not result.solvable


def test_run_writes_resumable_records_and_summary(tmp_path):
    instances = DATA[:3]
    replies = [f"```pddl\n{instances[0].problem_pddl}```", "I cannot do that.", instances[2].problem_pddl]
    llm = GenericFakeChatModel(messages=iter([AIMessage(content=r) for r in replies]))
    summary = run(llm, instances, tmp_path)
    assert summary["overall"] == {"n": 3, "parseable": 2 / 3, "solvable": 2 / 3, "correct": 2 / 3}
    assert "explicit_to_explicit" in summary["abstraction"] and summary["task"]["unstack"]["correct"] == 0.0
    assert summary["placeholder"]["non-placeholder"]["n"] == 3  # the first 14 instances are explicit
    records = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == [i.id for i in instances]
    # A rerun skips recorded instances: the exhausted fake model is never called again.
    assert run(GenericFakeChatModel(messages=iter([])), instances, tmp_path) == summary
    assert json.loads((tmp_path / "summary.json").read_text()) == summary


def test_a_failing_model_call_skips_the_instance_and_a_rerun_retries_it(tmp_path):
    instances = DATA[:2]
    # the fake model is exhausted after one reply: the second call raises, as a dropped connection would
    flaky = GenericFakeChatModel(messages=iter([AIMessage(content=instances[0].problem_pddl)]))
    first = run(flaky, instances, tmp_path)
    assert first["overall"]["n"] == 1
    retry = GenericFakeChatModel(messages=iter([AIMessage(content=instances[1].problem_pddl)]))
    assert run(retry, instances, tmp_path)["overall"] == {"n": 2, "parseable": 1.0, "solvable": 1.0, "correct": 1.0}


def test_cli_rejects_bad_arguments():
    with pytest.raises(SystemExit):
        main(["eval", "text-to-pddl", "--limit", "many"])


def test_langchain_tools():
    instance = DATA[0]
    domain = domain_text(instance.domain)
    same = pddl_equivalent.invoke({"domain": domain, "reference": instance.problem_pddl,
                                   "candidate": instance.problem_pddl})
    assert same["equivalent"] is True
    bad = pddl_equivalent.invoke({"domain": domain, "reference": instance.problem_pddl, "candidate": "(define"})
    assert bad["equivalent"] is False and "candidate" in bad["error"]
    strips = Strips.from_text(domain, instance.problem_pddl)
    steps = [str(a) for a in solve(strips)]
    assert validate_plan.invoke({"domain": domain, "problem": instance.problem_pddl, "plan": steps})["valid"]
    broken = validate_plan.invoke({"domain": domain, "problem": instance.problem_pddl, "plan": steps[1:]})
    assert not broken["valid"] and broken["failed_step"] is not None
    assert set(pddl_equivalent.args) == {"domain", "reference", "candidate", "is_placeholder"}
