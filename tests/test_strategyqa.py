"""StrategyQA: the seeded 100-question sample, the question-answering environment, accuracy, the oracle path."""

from __future__ import annotations

import json

import pytest

from map_agent.task import InvalidProblem
from map_agent.tasks.strategyqa import (
    N_ACTIONS,
    StrategyQAAnswer,
    StrategyQAGoal,
    StrategyQATask,
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
    assert load_problems(json.dumps([good]), "x.json")[0].max_actions == N_ACTIONS
    with pytest.raises(InvalidProblem, match=r"x\.json\[0\]: missing field 'facts'"):
        load_problems(json.dumps([{k: v for k, v in good.items() if k != "facts"}]), "x.json")
    with pytest.raises(InvalidProblem, match=r"x\.json\[0\]: field 'answer' must be true or false"):
        load_problems(json.dumps([{**good, "answer": "yes"}]), "x.json")
    with pytest.raises(InvalidProblem, match=r"x\.json\[1\]: field 'qid' 'q1' appears twice"):
        load_problems(json.dumps([good, good]), "x.json")
    with pytest.raises(InvalidProblem, match=r"x\.json: not JSON"):
        load_problems("[", "x.json")


def test_environment_records_answers_and_checks_the_rules():
    p = TASK.problems("dev100")[0]
    s = TASK.start(p)
    sub = StrategyQAGoal(question=p.info["decomposition"][0])
    assert not TASK.satisfies(s, sub, p)
    answer = StrategyQAAnswer(question=sub.question, answer="about 70 cm long")
    assert TASK.check(s, answer, p).valid
    s = TASK.apply(s, answer, p)
    assert TASK.satisfies(s, StrategyQAGoal(question="  " + sub.question.upper()), p)
    again = TASK.check(s, answer, p)
    assert not again.valid and "already been answered" in again.reason
    assert "empty" in TASK.check(s, StrategyQAAnswer(question="Other?", answer=" "), p).reason
    final = StrategyQAGoal(question=p.goal["question"])
    bad = TASK.check(s, StrategyQAAnswer(question=final.question, answer="probably"), p)
    assert not bad.valid and "'true' or 'false'" in bad.reason
    s = TASK.apply(s, StrategyQAAnswer(question=final.question, answer="True"), p)
    assert s.answer_to(final.question) == "true" and TASK.satisfies(s, final, p)
    assert "Sub-question 1: " + sub.question in TASK.render_state(s)


def test_accuracy_is_the_final_answer_against_the_label():
    p = TASK.problems("dev100")[0]
    q = p.goal["question"]
    right, wrong = str(p.info["answer"]).lower(), str(not p.info["answer"]).lower()
    assert TASK.execute(p, [StrategyQAAnswer(question=q, answer=right)]).solved
    ex = TASK.execute(p, [StrategyQAAnswer(question=q, answer=wrong)])
    assert ex.goal_reached and not ex.solved
    ex = TASK.execute(p, [StrategyQAAnswer(question=q, answer="maybe"), StrategyQAAnswer(question=q, answer=right)])
    assert ex.n_invalid == 1 and ex.solved


def test_oracle_decomposition_is_the_datasets():
    for p in TASK.problems("dev100"):
        subgoals = TASK.oracle_subgoals(TASK.start(p), TASK.goal(p), 4, p)
        steps = p.info["decomposition"][:-1]
        assert [g.question for g in subgoals] == (steps or [p.goal["question"]])


def test_oracle_path_answers_every_question_correctly():
    """Subgoals from the dataset decomposition, each answered by the oracle Actor's rule (the legal action whose
    successor is nearest the goal), then the main question: 100% accuracy, no invalid answer."""
    solved = 0
    for p in TASK.problems("dev100"):
        state, plan = TASK.start(p), []
        for goal in [*TASK.oracle_subgoals(state, TASK.goal(p), 4, p), TASK.goal(p)]:
            while not TASK.satisfies(state, goal, p):
                action = min(TASK.legal_actions(state, p),
                             key=lambda a, s=state, g=goal: TASK.distance(TASK.apply(s, a, p), g, p))
                plan.append(action)
                state = TASK.apply(state, action, p)
        ex = TASK.execute(p, plan)
        assert ex.n_invalid == 0 and len(plan) <= p.max_actions
        solved += ex.solved
    assert solved == 100


def test_map_with_oracle_modules_is_fully_accurate():
    from map_agent import MAPAgent

    results = [MAPAgent(p, backend="oracle").plan() for p in TASK.problems("dev100")[:20]]
    assert all(r.solved and r.invalid_moves == 0 for r in results)


def test_prompts_exist_without_examples():
    folder = TASK.prompt_dir()
    for stem in ("task", "task_decomposer", "actor", "monitor", "orchestrator"):
        assert (folder / f"{stem}.md").read_text().strip()
    assert not list(folder.glob("*.examples.json"))  # the paper used no in-context examples here
