"""Baselines (zero-shot, ICL, CoT, MAD, ToT) as methods of the harness: a perfect scripted model solves with each
on each task the paper ran it on; bad models fail and are recorded, never crash; the CLI writes records and a
summary like MAP's; prompts hold no ground truth."""

from __future__ import annotations

import itertools
import json

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel

from helpers import ScriptedChatModel
from map_agent.baselines import PAPER_METHODS, check_method, get_method, methods_for, render_prompts
from map_agent.baselines.agent import BaselineAgent
from map_agent.baselines.base import BaselineConfig
from map_agent.baselines.oracle import BaselineOracleChatModel, answer
from map_agent.cli import main
from map_agent.config import MAPConfig
from map_agent.task import get_task

#: one small problem per task (ids of their test splits)
PROBLEMS = {"hanoi": ("test3", "7"), "mystery_blocksworld": ("test", "2"), "logistics": ("test", "6"),
            "strategyqa": ("dev100", None), "cogeval": ("detour", "detour-4")}
CASES = [(task, method) for task, methods in PAPER_METHODS.items() for method in methods]


def problem_of(task_name: str):
    task = get_task(task_name)
    split, pid = PROBLEMS[task_name]
    problems = task.problems(split)
    return task, next(p for p in problems if pid is None or p.id == pid)


@pytest.mark.parametrize(("task_name", "method"), CASES)
def test_a_perfect_model_solves_with_every_method(task_name, method):
    task, problem = problem_of(task_name)
    result = BaselineAgent(problem, method, llm=BaselineOracleChatModel(), cache=False).plan()
    assert result.solved and result.invalid_moves == 0 and result.status == "answered"
    assert not result.failures
    record = result.record()
    assert record["method"] == method and record["config"]["method"] == method
    assert record["plan"] and record["execution"]["solved"]
    assert record["usage"]["total"]["model_calls"] >= 1
    assert all(name.startswith(f"{method}.") for name in record["usage"]["modules"])


@pytest.mark.parametrize(("task_name", "method"), CASES)
def test_a_model_that_never_answers_in_format_fails_and_is_recorded(task_name, method):
    task, problem = problem_of(task_name)
    llm = GenericFakeChatModel(messages=itertools.repeat("I think the answer is obvious."))
    result = BaselineAgent(problem, method, llm=llm, config=MAPConfig(parse_retries=1), cache=False).plan()
    assert not result.solved and result.status == "no_plan" and result.actions == []
    assert result.failures and all(f.model_calls == 2 and "unparseable" in (f.error or "") for f in result.failures)


def bad_hanoi(module: str, inp: dict) -> str:
    """Well-formed replies with an illegal first move (0 is under 2 on list A), claimed to reach the goal."""
    move = {"disk": 0, "source": "A", "target": "C"}
    goal = {"A": [], "B": [], "C": [0, 1, 2]}
    kind = inp["kind"]
    if kind == "plan":
        return json.dumps({"steps": [{"reasoning": "-", "action": move, "state": goal}]})
    if kind == "propose":
        return json.dumps({"options": [{"action": move, "state": goal}]})
    if kind == "judge":
        return json.dumps({"reasoning": "-", "verdict": "sure"})
    return json.dumps({"reasoning": "-", "steps_to_goal": 0})


@pytest.mark.parametrize("method", PAPER_METHODS["hanoi"])
def test_a_model_that_plans_illegal_moves_fails_with_them_counted(method):
    _, problem = problem_of("hanoi")
    assert problem.start == {"A": [0, 2], "B": [1], "C": []}
    result = BaselineAgent(problem, method, llm=ScriptedChatModel(script=bad_hanoi), cache=False).plan()
    assert not result.solved and result.invalid_moves == 1 and result.status == "answered"
    assert result.execution.steps[0].reason  # the environment says which rule broke
    # the original's own scoring trusts the model's written lists: the invalid move still counts as invalid
    assert result.metrics["paper_invalid_moves"] == 1 and not result.metrics["paper_solved"]


def test_a_rerun_is_served_by_the_prompt_cache(tmp_path):
    _, problem = problem_of("hanoi")
    first = BaselineAgent(problem, "mad", llm=BaselineOracleChatModel(), cache=tmp_path).plan()
    again = BaselineAgent(problem, "mad", llm=BaselineOracleChatModel(), cache=tmp_path).plan()
    other_run = BaselineAgent(problem, "mad", llm=BaselineOracleChatModel(), cache=tmp_path,
                              config=MAPConfig(seed=1)).plan()
    assert first.usage.total.cache_hits == 0 and first.usage.total.input_tokens > 0
    assert first.usage.total.model_calls == again.usage.total.cache_hits == 6 and again.usage.total.model_calls == 0
    assert again.usage.total.input_tokens == 0 and again.actions == first.actions
    assert other_run.usage.total.cache_hits == 0  # the run index is part of every cache key


def test_plans_are_cut_at_n_as_the_original_scored_them():
    _, problem = problem_of("hanoi")
    moves = [{"disk": 1, "source": "B", "target": "C"}, {"disk": 1, "source": "C", "target": "B"}] * 8
    reply = json.dumps({"steps": [{"action": m} for m in moves]})
    llm = GenericFakeChatModel(messages=itertools.repeat(reply))
    result = BaselineAgent(problem, "zero-shot", llm=llm, cache=False).plan()
    assert len(result.actions) == problem.max_actions == 10 and result.detail["reply_length"] == 16
    assert result.invalid_moves == 0 and not result.goal_reached


def test_debate_shows_each_agent_the_others_previous_answer():
    _, problem = problem_of("hanoi")
    seen: list[tuple[str, dict, list]] = []

    class Recording(BaselineOracleChatModel):
        def _generate(self, messages, stop=None, run_manager=None, **kwargs):
            seen.append((run_manager.metadata["map_agent_input"]["round"], kwargs, messages))
            return super()._generate(messages, stop, run_manager, **kwargs)

    result = BaselineAgent(problem, "mad", llm=Recording(), cache=False).plan()
    assert result.solved and len(seen) == 2 * 3  # 2 agents x 3 rounds
    first, later = [s for s in seen if s[0] == 0], [s for s in seen if s[0] > 0]
    assert {k["seed"] for _, k, _ in first} == {0, 1}  # the agents sample differently
    assert all(k["temperature"] == 1.0 and k["max_tokens"] == 2000 for _, k, _ in seen)  # the original's budget
    assert all("One agent's answer" in str(m[-1].content) for _, _, m in later)
    assert not any("One agent's answer" in str(m[-1].content) for _, _, m in first)
    assert len(result.detail["final"]) == 2


def test_two_phase_problems_replan_with_the_first_answer_in_the_prompt():
    task, problem = problem_of("cogeval")
    prompts: list[str] = []

    class Recording(BaselineOracleChatModel):
        def _generate(self, messages, stop=None, run_manager=None, **kwargs):
            prompts.append(str(messages[0].content))
            return super()._generate(messages, stop, run_manager, **kwargs)

    result = BaselineAgent(problem, "icl", llm=Recording(), cache=False).plan()
    assert result.solved and len(result.phases) == 1 and len(prompts) == 2
    first = result.phases[0]
    assert first["solved"] and first["plan"] and first["plan"] != result.record()["plan"]
    assert "locked" not in prompts[0] and "locked" in prompts[1]  # the change is announced in phase 2 only
    moves = "\n".join(f"Move {i + 1}: Go to room {m['room']}." for i, m in enumerate(first["plan"]))
    assert all(line in prompts[1] for line in moves.splitlines())  # with the first attempt's moves
    assert result.usage.total.model_calls == 2


def test_tot_keeps_the_papers_breadth_and_value_samples():
    _, problem = problem_of("hanoi")
    method = get_method("tot")(get_task("hanoi"), problem.public(), BaselineOracleChatModel(),
                               BaselineConfig(method="tot"))
    assert (method.settings.breadth, method.settings.value_samples, method.settings.temperature) == (5, 3, 0.7)
    assert method.settings.unparsed == "random"
    attempt = method.solve()
    values = [r for r in attempt.records if r.module in ("tot.value", "tot.judge")]
    assert values and len(values) % 3 == 0  # three samples per valued path
    assert attempt.detail["solutions"] >= 1
    sqa = get_method("tot")(get_task("strategyqa"), problem_of("strategyqa")[1], None, BaselineConfig(method="tot"))
    assert (sqa.settings.search, sqa.settings.samples, sqa.settings.votes, sqa.settings.breadth) == ("vote", 5, 5, 1)


@pytest.mark.parametrize("pid", ["valuepath-4", "steppath3-9-13", "steppath4-3-7", "detour-4"])
def test_tot_solves_cogeval_with_a_perfect_model_and_the_originals_settings(pid):
    task = get_task("cogeval")
    problem = task.problem(pid)
    result = BaselineAgent(problem, "tot", llm=BaselineOracleChatModel(), cache=False).plan()
    assert result.solved and result.metrics["optimal"] and not result.failures
    assert len(result.actions) == problem.optimal_length
    assert (result.config.method, result.detail["solutions"] >= 1) == ("tot", True)
    method = get_method("tot")(task, problem.public(), None, BaselineConfig(method="tot"))
    settings = method.settings
    assert (settings.breadth, settings.value_samples, settings.temperature, settings.step_limit) == (5, 3, 0.7, 6)


def test_cogeval_tot_stops_at_any_chest_room_without_reading_the_hidden_target():
    task = get_task("cogeval")
    public = task.problem("valuepath-4").public()  # satisfies() on it raises: the target is hidden
    goal = task.goal(public)
    with pytest.raises(ValueError, match="ground truth"):
        task.satisfies(task.State(room=8), goal, public)
    terminal = {r for r in range(1, 16) if task.visible_terminal(task.State(room=r), goal, public)}
    assert terminal == {8, 15}  # both chests: which one is the best is the model's to judge
    steppath = task.problem("steppath3-9-13").public()
    assert [r for r in range(1, 16)
            if task.visible_terminal(task.State(room=r), task.goal(steppath), steppath)] == [13]


def bad_cogeval(wrong_room: int):
    """Well-formed ToT replies that head from room 4 to ``wrong_room`` and call it the goal."""
    def script(module: str, inp: dict) -> str:
        state = {"room": wrong_room, "collected": wrong_room if wrong_room in (8, 15) else None}
        if inp["kind"] == "propose":
            return json.dumps({"options": [{"action": {"room": wrong_room}, "state": state}]})
        if inp["kind"] == "judge":
            return json.dumps({"reasoning": "-", "verdict": "sure"})
        return json.dumps({"reasoning": "-", "steps_to_goal": 0})
    return script


#: room 15: a valid move into the lesser chest, which ends the path; room 2: no door from room 4, and the model
#: proposes it again at every step (the scoring walks into room 2, then "already in room 2"): 6 invalid moves
@pytest.mark.parametrize(("wrong_room", "invalid"), [(15, 0), (2, 6)])
def test_tot_on_cogeval_with_a_bad_model_fails_and_is_recorded(wrong_room, invalid):
    problem = get_task("cogeval").problem("valuepath-4")  # room 4: doors to 7, 10, 13, 15; the best chest is 8
    result = BaselineAgent(problem, "tot", llm=ScriptedChatModel(script=bad_cogeval(wrong_room)), cache=False).plan()
    assert not result.solved and result.status == "answered" and result.invalid_moves == invalid
    assert [a.room for a in result.actions][0] == wrong_room and not result.metrics["optimal"]
    record = result.record()
    assert record["usage"]["modules"]["tot.propose"]["model_calls"] >= 1 and record["detail"]["candidates"]


def test_unparseable_values_count_as_the_originals_fallback():
    _, problem = problem_of("hanoi")

    def script(module, inp):
        if inp["kind"] in ("value", "judge"):
            return "no idea"
        return json.dumps(answer(get_task("hanoi"), problem, inp))

    result = BaselineAgent(problem, "tot", llm=ScriptedChatModel(script=script),
                           config=MAPConfig(parse_retries=0), cache=False).plan()
    assert result.status == "answered" and result.failures  # failed value replies are recorded...
    assert result.execution.n_actions > 0  # ...and the search still goes on with random values


def test_a_method_the_paper_did_not_run_is_refused_with_the_list():
    with pytest.raises(ValueError, match=r"strategyqa: no method 'icl'; methods for strategyqa: map, cot, tot"):
        check_method("strategyqa", "icl")
    assert methods_for("maze") == ("map",)
    assert methods_for("cogeval") == ("map", "zero-shot", "icl", "cot", "mad", "tot")
    _, problem = problem_of("strategyqa")
    with pytest.raises(ValueError, match="no method 'mad'"):
        BaselineAgent(problem, "mad", llm=BaselineOracleChatModel())


def test_prompts_come_from_the_public_problem_only():
    for task_name in PAPER_METHODS:
        task, problem = problem_of(task_name)
        perturbed = problem.model_copy(update={"hidden": {"secret": "HIDDEN-VALUE-123"}, "optimal_length": 99})
        texts = render_prompts(task, perturbed)
        assert texts and texts == render_prompts(task, problem.public())
        assert not any("HIDDEN-VALUE-123" in t for t in texts)


def test_an_example_that_is_the_problem_itself_is_left_out():
    task = get_task("mystery_blocksworld")
    icl = get_method("icl")
    shown = {pid: sum("Starting state" in t for t in [str(m.content) for m in icl(
        task, task.problem(pid).public(), None, BaselineConfig(method="icl")).first_prompts()[0]])
        for pid in ("2", "10")}
    assert shown == {"2": 3, "10": 4}  # instance 2 is one of the original's three examples: two shown, plus itself


def test_every_split_finds_its_prompts_and_its_own_examples():
    for task_name in PAPER_METHODS:
        task = get_task(task_name)
        for split in task.splits():
            problems = task.problems(split)
            if problems:
                assert render_prompts(task, problems[0]), (task_name, split)
    cogeval, icl = get_task("cogeval"), get_method("icl")

    def shots(problem) -> int:
        messages = icl(cogeval, problem.public(), None, BaselineConfig(method="icl")).first_prompts()[0]
        return sum("Starting state" in str(m.content) for m in messages) - 1

    assert shots(cogeval.problems("steppath2")[0]) == 3  # the Steppath set's own three examples
    assert shots(cogeval.problems("valuepath")[0]) == 2  # the Valuepath examples (start rooms 1 and 6)
    transfer = next(p for p in cogeval.problems("transfer_n7tree:valuepath") if p.start["room"] == 1)
    assert shots(transfer) == 2  # n7tree's examples: from another environment, never taken for the problem
    hanoi = get_task("hanoi")
    icl4 = icl(hanoi, hanoi.problems("test4_icl4")[0].public(), None, BaselineConfig(method="icl")).first_prompts()
    assert "A = [0, 1, 2], B = [3], C = []" in "".join(str(m.content) for m in icl4[0])  # problem 29


def test_the_eval_cli_runs_a_baseline_and_writes_records_and_summary(tmp_path, capsys):
    rc = main(["eval", "hanoi", "--method", "icl", "--backend", "oracle", "--limit", "2", "--runs", "2",
               "--out", str(tmp_path), "--run-id", "icl-run", "--no-cache"])
    assert rc == 0
    run = tmp_path / "icl-run"
    records = [json.loads(line) for line in (run / "records.jsonl").read_text().splitlines()]
    assert len(records) == 4 and {r["method"] for r in records} == {"icl"}
    assert {(r["problem_id"], r["run"]) for r in records} == {(p, k) for p in ("1", "2") for k in (0, 1)}
    assert all(r["solved"] and r["plan"] and "usage" in r for r in records)
    assert {r["config"]["seed"] for r in records} == {0, 1}
    summary = json.loads((run / "summary.json").read_text())
    assert summary["method"] == "icl" and summary["pct_solved"]["mean"] == 100.0
    assert summary["usage"]["model_calls"] == 4
    assert json.loads((run / "config.json").read_text())["method"] == "icl"
    assert main(["eval", "strategyqa", "--method", "mad", "--backend", "oracle", "--limit", "1",
                 "--out", str(tmp_path)]) == 2
    assert "methods for strategyqa: map, cot, tot" in capsys.readouterr().err.replace("\n", " ")
