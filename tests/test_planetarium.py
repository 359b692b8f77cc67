"""The Planetarium dataset generator and the text-to-PDDL evaluation (with a scripted chat model)."""

from __future__ import annotations

import json

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from map_agent.eval.text_to_pddl import cli_main, extract_problem, run, score
from map_agent.tasks.planetarium.generator import BLOCKSWORLD_TASKS, GRIPPER_TASKS, domain_text, generate
from map_agent.tools.equivalence import equivalence
from map_agent.tools.pddl_tools import pddl_equivalent, validate_plan
from map_agent.tools.planners import solve
from map_agent.tools.strips import Strips

DATA = generate(56, seed=0)


def test_generator_covers_14_tasks_and_4_abstractions_deterministically():
    assert {i.task for i in DATA} == set(BLOCKSWORLD_TASKS) | set(GRIPPER_TASKS)
    assert len(set(BLOCKSWORLD_TASKS) | set(GRIPPER_TASKS)) == 14
    assert {(i.init_abstraction, i.goal_abstraction) for i in DATA} == {
        ("explicit", "explicit"), ("explicit", "abstract"), ("abstract", "explicit"), ("abstract", "abstract")}
    assert generate(56, seed=0) == DATA and generate(56, seed=1) != DATA
    assert all(i.is_placeholder == ("abstract" in (i.init_abstraction, i.goal_abstraction)) for i in DATA)
    assert len({i.size_bin for i in DATA}) >= 4


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
        cli_main(["--limit", "many"])


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
