"""StrategyQA: the seeded 100-question sample, the question-answering environment, accuracy, the oracle path, and
the original's flow (sub-questions answered once each and monitored, an unmonitored final answer, no
Orchestrator)."""

from __future__ import annotations

import json

import pytest

from helpers import ScriptedChatModel
from map_agent import MAPAgent
from map_agent.config import MAPConfig
from map_agent.task import InvalidProblem
from map_agent.tasks.strategyqa import (
    MAX_SUBQUESTIONS,
    N_ACTIONS,
    StrategyQAAnswer,
    StrategyQAGoal,
    StrategyQATask,
    final_answer,
    load_problems,
    sample_indices,
)

TASK = StrategyQATask()


def test_dev100_is_the_authors_seeded_sample_and_stable():
    problems = TASK.problems("dev100")
    assert len(problems) == 100 == len({p.id for p in problems})
    # random.seed(2024); random.sample(list(range(229)), 100) in the MAP authors' strategyQA/map_strategyqa.py
    assert sample_indices(229)[:5] == [120, 46, 186, 148, 77]
    assert [p.info["index"] for p in problems] == sample_indices(229)
    assert problems[0].id == "23506d586f694c3fc8ec"
    assert problems == TASK.problems("dev100")
    assert len(TASK.problems("dev")) == 229


def test_loader_names_file_and_field_on_bad_data():
    good = {"qid": "q1", "question": "Is it?", "answer": True, "facts": ["f"], "decomposition": ["a?", "b?"]}
    assert load_problems(json.dumps([good]), "x.json")[0].max_actions == N_ACTIONS == MAX_SUBQUESTIONS + 1
    with pytest.raises(InvalidProblem, match=r"x\.json\[0\]: missing field 'facts'"):
        load_problems(json.dumps([{k: v for k, v in good.items() if k != "facts"}]), "x.json")
    with pytest.raises(InvalidProblem, match=r"x\.json\[0\]: field 'answer' must be true or false"):
        load_problems(json.dumps([{**good, "answer": "yes"}]), "x.json")
    with pytest.raises(InvalidProblem, match=r"x\.json\[1\]: field 'qid' 'q1' appears twice"):
        load_problems(json.dumps([good, good]), "x.json")
    with pytest.raises(InvalidProblem, match=r"x\.json: not JSON"):
        load_problems("[", "x.json")


def test_ground_truth_is_hidden_from_every_model():
    for p in TASK.problems("dev"):
        assert set(p.hidden) == {"answer", "facts", "decomposition"}
        assert set(p.info) == {"index"} and set(p.goal) == {"question", "main"}
        assert p.public().hidden == {}


def test_environment_records_answers_and_checks_the_rules():
    p = TASK.problems("dev100")[0]
    s = TASK.start(p)
    sub = StrategyQAGoal(question=p.hidden["decomposition"][0])
    assert not TASK.satisfies(s, sub, p)
    answer = StrategyQAAnswer(question=sub.question, reasoning="badgers are small", answer="about 70 cm long")
    assert TASK.check(s, answer, p).valid
    s = TASK.apply(s, answer, p)
    assert TASK.satisfies(s, StrategyQAGoal(question="  " + sub.question.upper()), p)
    again = TASK.check(s, answer, p)
    assert not again.valid and "already been answered" in again.reason
    assert "empty" in TASK.check(s, StrategyQAAnswer(question="Other?", answer=" "), p).reason
    final = TASK.goal(p)
    assert final.main and TASK.render_goal(final).endswith("(the main question: answer true or false)")
    s = TASK.apply(s, StrategyQAAnswer(question=final.question, answer="True"), p)
    assert TASK.satisfies(s, final, p)
    # the original's Actor and Monitor see the earlier sub-questions, not the main question
    shown = TASK.render_state(s)
    assert "Sub-question 1: " + sub.question in shown and "badgers are small" not in shown
    assert "Main question: " + final.question in shown
    assert final.question not in TASK.render_state(TASK.apply(TASK.start(p), answer, p))


def test_final_answer_is_read_as_the_original_reads_its_final_step():
    assert final_answer("false") is False and final_answer("It is not true.") is False
    assert final_answer("true") is True and final_answer("I cannot tell") is True  # no "false": true


def test_accuracy_is_the_final_answer_against_the_label():
    p = TASK.problems("dev100")[0]
    q = p.goal["question"]
    right, wrong = str(p.hidden["answer"]).lower(), str(not p.hidden["answer"]).lower()
    assert TASK.execute(p, [StrategyQAAnswer(question=q, answer=right)]).solved
    ex = TASK.execute(p, [StrategyQAAnswer(question=q, answer=wrong)])
    assert ex.goal_reached and not ex.solved
    ex = TASK.execute(p, [StrategyQAAnswer(question=q, answer=" "), StrategyQAAnswer(question=q, answer=right)])
    assert ex.n_invalid == 1 and ex.solved


def test_oracle_decomposition_is_the_datasets():
    for p in TASK.problems("dev100"):
        steps = p.hidden["decomposition"][:-1] or p.hidden["decomposition"]
        assert [g.question for g in TASK.oracle_subgoals(TASK.start(p), TASK.goal(p), None, p)] == steps
        assert [g.question for g in TASK.oracle_subgoals(TASK.start(p), TASK.goal(p), 1, p)] == steps[:1]


def test_oracle_path_answers_every_question_correctly():
    """Subgoals from the dataset decomposition, each answered by the oracle Actor's rule (the legal action whose
    successor is nearest the goal), then the main question: 100% accuracy, no invalid answer."""
    solved = 0
    for p in TASK.problems("dev100"):
        state, plan = TASK.start(p), []
        for goal in [*TASK.oracle_subgoals(state, TASK.goal(p), None, p), TASK.goal(p)]:
            while not TASK.satisfies(state, goal, p):
                action = min(TASK.legal_actions(state, p),
                             key=lambda a, s=state, g=goal: TASK.distance(TASK.apply(s, a, p), g, p))
                plan.append(action)
                state = TASK.apply(state, action, p)
        ex = TASK.execute(p, plan)
        assert ex.n_invalid == 0 and len(plan) <= p.max_actions
        solved += ex.solved
    assert solved == 100


def test_map_with_oracle_modules_is_fully_accurate_without_an_orchestrator():
    results = [MAPAgent(p, backend="oracle").plan() for p in TASK.problems("dev100")]
    assert all(r.solved and r.invalid_moves == 0 for r in results)
    assert all(r.config.modules["Orchestrator"] == "off" and not r.usage.modules.get("Orchestrator")
               for r in results)
    # one answer per sub-question, then one for the main question
    assert all(len(r.actions) == len(r.subgoals) + 1 for r in results)


def test_symbolic_orchestrator_is_an_option():
    config = MAPConfig(modules={"Orchestrator": "oracle"})
    results = [MAPAgent(p, backend="oracle", config=config).plan() for p in TASK.problems("dev100")[:10]]
    assert all(r.solved and r.usage.modules["Orchestrator"].calls > 0 for r in results)


def test_prompts_exist_without_examples():
    folder = TASK.prompt_dir()
    for stem in ("task", "task_decomposer", "actor", "monitor", "orchestrator"):
        assert (folder / f"{stem}.md").read_text().strip()
    assert not list(folder.glob("*.examples.json"))  # the paper used no in-context examples here


# -- the original's flow, driven by a scripted model -------------------------------------------------------------
SUBQUESTIONS = ["How big is a honey badger?", "How big is an oven?", "Is #1 smaller than #2?"]


def _flow(reject, problem):
    """A run whose TaskDecomposer writes three sub-questions, whose Actor answers every question (naming the
    round in its answer) and whose Monitor rejects the answers ``reject(question, answer)`` says to."""
    calls: list[tuple[str, dict]] = []
    label = str(problem.hidden["answer"]).lower()

    def script(module, inp):
        calls.append((module, inp))
        if module == "TaskDecomposer":
            return json.dumps({"reasoning": "size first", "subgoals": [{"question": q} for q in SUBQUESTIONS]})
        if module == "Actor":
            question = inp["goal"]["question"]
            answer = label if inp["goal"].get("main") else f"answer after {len(inp['feedback'])} rejection(s)"
            return json.dumps({"actions": [{"question": question, "reasoning": "think", "answer": answer}]})
        if module == "Monitor":
            bad = reject(inp["action"]["question"], inp["action"]["answer"])
            return json.dumps({"reasoning": "checked the answer", "valid": not bad,
                               "feedback": "that is not correct" if bad else ""})
        raise AssertionError(f"{module} is not part of StrategyQA's protocol")

    result = MAPAgent(problem, llm=ScriptedChatModel(script=script), cache=False).plan()
    return result, calls


def test_each_sub_question_is_answered_once_and_the_final_answer_is_unmonitored():
    p = TASK.problems("dev100")[0]
    result, calls = _flow(lambda q, a: q == SUBQUESTIONS[1] and a.endswith("0 rejection(s)"), p)
    assert result.solved and result.invalid_moves == 0 and result.status == "goal"
    assert [a.question for a in result.actions] == [*SUBQUESTIONS, p.goal["question"]]
    assert result.actions[1].answer == "answer after 1 rejection(s)"  # the Monitor's verdict went back
    modules = [m for m, _ in calls]
    assert modules.count("TaskDecomposer") == 1 and modules.count("Actor") == 5 and modules.count("Monitor") == 4
    assert all(inp["action"]["question"] != p.goal["question"] for m, inp in calls if m == "Monitor")
    retry = [inp for m, inp in calls if m == "Actor" and inp["feedback"]]
    assert len(retry) == 1 and "checked the answer" in retry[0]["feedback"][0]


def test_an_always_rejected_answer_is_kept_after_the_last_round():
    p = TASK.problems("dev100")[1]
    result, calls = _flow(lambda q, a: q == SUBQUESTIONS[0], p)
    rounds = 1 + result.config.monitor_retries
    assert sum(m == "Actor" and inp["goal"]["question"] == SUBQUESTIONS[0] for m, inp in calls) == rounds
    assert result.actions[0].answer == f"answer after {rounds - 1} rejection(s)"
    assert len(result.actions) == len(SUBQUESTIONS) + 1 and result.solved


def test_the_original_protocol_is_declared():
    # strategyQA/map_strategyqa.py: `while num_tries < 5` per sub-question; a fresh Actor prompt per sub-question
    assert TASK.protocol == {"monitor_retries": 4, "actor_history": False}
    assert TASK.default_modules["Orchestrator"] == "off" and TASK.default_modules["Evaluator"] == "off"
    assert TASK.actions_per_goal == 1 and TASK.unmonitored_final and TASK.default_subgoals is None
    assert TASK.default_runs("dev100") == 1
