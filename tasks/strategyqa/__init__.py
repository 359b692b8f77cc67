"""StrategyQA as a MAP task: answer sub-questions, then the yes/no question.

The original protocol (``strategyQA/map_strategyqa.py`` of the MAP code; paper, Methods): the TaskDecomposer writes
as many sub-questions as it needs; the Actor answers each one, the Monitor checks the answer and its full verdict
goes back to the Actor, for at most 5 answers per sub-question, the last one kept; a final step, which no Monitor
checks, answers the question with true or false from the sub-questions and their answers. No Evaluator, no
Orchestrator, no tree search, no in-context examples; 100 dev questions sampled with the authors' seed
(``random.seed(2024)``); one deterministic run (temperature 0). Metric: accuracy.

It fits the generic task interface without a task-specific branch in the core:

* ``Goal``   -- a question to answer: a sub-question, or the main question (``main``: the final goal);
* ``State``  -- the main question plus the answered sub-questions so far;
* ``Action`` -- an answer to a named question, with the reasoning that led to it; ``apply`` records it.

Without an Orchestrator, each question gets exactly one committed answer (``actions_per_goal = 1``), then the
plan moves on, as the original's loop over its sub-questions does. The final goal's answer skips the Monitor
(``unmonitored_final``), and is read as the original reads its final step (:func:`final_answer`). The symbolic
"has this question been answered?" Orchestrator is an option (``--module Orchestrator=oracle``, a named
deviation): it moves on once a question holds an answer, whatever the count.

Ground truth lives in ``Problem.hidden`` only: the label, the annotated decomposition and facts. It is the oracle:
the decomposition gives the subgoals (:meth:`StrategyQATask.oracle_subgoals`), the facts answer the sub-questions
and the label answers the main question (:meth:`StrategyQATask.legal_actions`).

>>> task = StrategyQATask()
>>> p = task.problems("dev100")[0]
>>> p.id, task.goal(p).question
('23506d586f694c3fc8ec', 'Would a honey badger fit inside an oven?')
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from functools import cache
from importlib import resources

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.json_schema import SkipJsonSchema

from map_agent.task import Execution, InvalidProblem, Problem, Task, Verdict, load_json

#: The MAP authors' sampling of the evaluation questions (strategyQA/map_strategyqa.py).
SAMPLE_SEED = 2024
SAMPLE_SIZE = 100
#: The original takes every sub-question the TaskDecomposer writes; the TaskDecomposer's schema holds at most
#: eight, and the dataset's own decompositions need at most four.
MAX_SUBQUESTIONS = 8
#: N: one answer per sub-question, then one for the main question (the paper's "N = 1 action per question").
N_ACTIONS = MAX_SUBQUESTIONS + 1
DATA_FILE = "dev.json"


def _key(question: str) -> str:
    """Questions are matched ignoring case and surrounding blanks (a model may re-type a sub-question)."""
    return " ".join(question.split()).casefold()


def final_answer(text: str) -> bool:
    """The main question's answer as the original reads its final step: false when the answer says "false" or
    "not true", true otherwise (any answer text counts; one that says neither reads as true)."""
    lowered = text.casefold()
    return not ("false" in lowered or "not true" in lowered)


class QA(BaseModel):
    model_config = ConfigDict(frozen=True)

    question: str
    answer: str


class StrategyQAState(BaseModel):
    """The main question and the answers given so far, in order."""

    model_config = ConfigDict(frozen=True)

    question: str = Field(description="the main yes/no question")
    answered: tuple[QA, ...] = Field(default=(), description="answered (sub-)questions, in order")

    def answer_to(self, question: str) -> str | None:
        key = _key(question)
        return next((qa.answer for qa in self.answered if _key(qa.question) == key), None)


class StrategyQAGoal(BaseModel):
    """A question to answer."""

    model_config = ConfigDict(frozen=True)

    question: str
    #: the main question (the problem's own goal, answered last with true or false); kept out of the JSON schema
    #: because the TaskDecomposer writes sub-questions only
    main: SkipJsonSchema[bool] = False


class StrategyQAAnswer(BaseModel):
    """An answer to one question, with the careful reasoning that leads to it written first."""

    model_config = ConfigDict(frozen=True)

    question: str = Field(description="the question being answered, as written in the goal")
    reasoning: str = Field(default="", max_length=2000,
                           description="careful step-by-step thinking about the question before answering")
    answer: str = Field(description="the answer; for the main question 'true' or 'false'")


class StrategyQATask(Task[StrategyQAState, StrategyQAAnswer, StrategyQAGoal]):
    """Ground truth, data and prompt rendering for StrategyQA (one run per split, as the paper)."""

    name = "strategyqa"
    State = StrategyQAState
    Action = StrategyQAAnswer
    Goal = StrategyQAGoal
    default_modules = {"TaskDecomposer": "llm", "Actor": "llm", "Monitor": "llm", "Predictor": "off",
                       "Evaluator": "off", "Orchestrator": "off"}
    default_search = False
    default_subgoals = None
    max_subgoals = MAX_SUBQUESTIONS
    actions_per_goal = 1
    unmonitored_final = True
    #: the original's Actor/Monitor loop allows 5 answers per sub-question (then keeps the last), and each
    #: sub-question's Actor prompt holds the earlier sub-questions and answers (our state), no move history
    protocol = {"monitor_retries": 4, "actor_history": False}

    # -- data --------------------------------------------------------------------------------------------
    def splits(self) -> dict[str, str]:
        return {
            "dev100": f"the paper's {SAMPLE_SIZE} dev questions (random.seed({SAMPLE_SEED}) sample, its order)",
            "dev": "all 229 questions of the dev split, in file order",
        }

    def problems(self, split: str) -> list[Problem]:
        problems = _load()
        if split == "dev":
            return list(problems)
        if split == "dev100":
            return [problems[i] for i in sample_indices(len(problems))]
        raise KeyError(f"strategyqa: unknown split {split!r}; known: {', '.join(self.splits())}")

    # -- ground truth ------------------------------------------------------------------------------------------
    def check(self, state: StrategyQAState, action: StrategyQAAnswer, problem: Problem) -> Verdict:
        """Well-formedness only: an answer names its question, says something, and answers a question once.
        Any answer to the main question counts (the original reads every final reply, see ``final_answer``);
        whether it is right is the metric, not a rule."""
        if not action.question.strip():
            return Verdict(valid=False, reason="the answer does not name the question it answers")
        if not action.answer.strip():
            return Verdict(valid=False, reason=f"the answer to {action.question!r} is empty")
        if state.answer_to(action.question) is not None:
            return Verdict(valid=False, reason=f"{action.question!r} has already been answered")
        return Verdict(valid=True)

    def apply(self, state: StrategyQAState, action: StrategyQAAnswer, problem: Problem) -> StrategyQAState:
        qa = QA(question=action.question.strip(), answer=action.answer.strip())
        return state.model_copy(update={"answered": (*state.answered, qa)})

    def legal_actions(self, state: StrategyQAState, problem: Problem) -> list[StrategyQAAnswer]:
        """The answers the dataset supports: its facts for each open sub-question, its label for the question.

        Free-text answers are unbounded, so the enumerable actions are the dataset's own ones (the oracle Actor
        picks among them); ``check`` accepts any well-formed answer. They are ground truth: a public problem
        (``Problem.public()``, what a model may see) has none.
        """
        if not problem.hidden:
            return []
        facts = " ".join(f.strip() for f in problem.hidden["facts"])
        actions = [StrategyQAAnswer(question=q, answer=facts) for q in _sub_questions(problem)
                   if state.answer_to(q) is None]
        if state.answer_to(state.question) is None:
            actions.append(StrategyQAAnswer(question=state.question, answer=str(problem.hidden["answer"]).lower()))
        return actions

    def satisfies(self, state: StrategyQAState, goal: StrategyQAGoal, problem: Problem) -> bool:
        return state.answer_to(goal.question) is not None

    def as_goal(self, state: StrategyQAState) -> StrategyQAGoal:  # type: ignore[override]
        """The question answered last: a state on the oracle path stands for the sub-question it settled."""
        return StrategyQAGoal(question=state.answered[-1].question if state.answered else state.question)

    def oracle_subgoals(self, state: StrategyQAState, goal: StrategyQAGoal, n_subgoals: int | None,
                        problem: Problem) -> list[StrategyQAGoal]:
        """The oracle TaskDecomposer: the dataset's decomposition (all of it, or the first ``n_subgoals``), its
        last step -- the question restated over the earlier answers -- left out, unless it is the only step."""
        steps = [StrategyQAGoal(question=q) for q in _sub_questions(problem) if state.answer_to(q) is None]
        return (steps[:n_subgoals] if n_subgoals else steps) or [goal]

    # -- scoring ---------------------------------------------------------------------------------------------
    def execute(self, problem: Problem, actions: Iterable[StrategyQAAnswer]) -> Execution:
        """Accuracy, the paper's metric: ``solved`` means the answer of the final step, read as the original
        reads it, is the dataset's label (invalid sub-answers are counted but do not decide it).

        The final step is the plan's last action, whatever question it echoes: the original reads its final
        reply unconditionally, and a model that copies the goal line as told (with its "answer true or false"
        note) or paraphrases the question has still answered it. MAP answers the main question last, and a
        whole-plan baseline's last step is its answer."""
        actions = list(actions)
        state, steps = self.replay(problem, actions)
        final = actions[-1].answer if actions else None
        return Execution(
            n_actions=len(actions),
            n_invalid=sum(not s.valid for s in steps),
            goal_reached=final is not None,
            solved=final is not None and final_answer(final) == problem.hidden["answer"],
            final_state=state.model_dump(mode="json"),
            steps=steps,
        )

    # -- how it reads in a prompt ------------------------------------------------------------------------------
    def describe(self, problem: Problem) -> str:
        return _description()

    def render_state(self, state: StrategyQAState) -> str:  # type: ignore[override]
        """The sub-questions answered so far -- what the original shows its Actor and Monitor; the main question
        appears as the goal of the final step only (the original's sub-question prompts do not show it)."""
        if not state.answered:
            return "no sub-question answered yet"
        lines, n = [], 0
        for qa in state.answered:
            if _key(qa.question) == _key(state.question):
                lines.append(f"Main question: {qa.question}\nAnswer: {qa.answer}")
            else:
                n += 1
                lines.append(f"Sub-question {n}: {qa.question}\nAnswer: {qa.answer}")
        return "\n" + "\n".join(lines)

    def render_goal(self, goal: StrategyQAGoal) -> str:  # type: ignore[override]
        if goal.main:
            return f"{goal.question} (the main question: answer true or false)"
        return goal.question

    def render_action(self, action: StrategyQAAnswer) -> str:  # type: ignore[override]
        """The question and the answer, without the reasoning: the original's Monitor sees the answer only."""
        return f"Answer to {action.question!r}: {action.answer}"


def _sub_questions(problem: Problem) -> list[str]:
    """The dataset's sub-questions: its decomposition without the last step, or the single step it has."""
    steps = problem.hidden["decomposition"]
    return steps[:-1] or steps


def sample_indices(n: int, k: int = SAMPLE_SIZE, seed: int = SAMPLE_SEED) -> list[int]:
    """The authors' sample: ``random.seed(seed); random.sample(list(range(n)), k)`` (same draws, no global)."""
    return random.Random(seed).sample(range(n), k)


@cache
def _description() -> str:
    return (resources.files("map_agent.prompts") / "strategyqa" / "task.md").read_text(encoding="utf-8").strip()


def _problem(raw: object, source: str, index: int) -> Problem:
    where = f"{source}[{index}]"
    if not isinstance(raw, dict):
        raise InvalidProblem(f"{where}: expected an object, got {type(raw).__name__}")
    try:
        qid, question, answer = raw["qid"], raw["question"], raw["answer"]
        facts, decomposition = raw["facts"], raw["decomposition"]
    except KeyError as e:
        raise InvalidProblem(f"{where}: missing field {e.args[0]!r}") from None
    if not isinstance(answer, bool):
        raise InvalidProblem(f"{where}: field 'answer' must be true or false, got {answer!r}")
    for name, value in (("qid", qid), ("question", question)):
        if not isinstance(value, str) or not value.strip():
            raise InvalidProblem(f"{where}: field {name!r} must be a non-empty string")
    for name, value in (("facts", facts), ("decomposition", decomposition)):
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise InvalidProblem(f"{where}: field {name!r} must be a non-empty list of strings")
    if len(decomposition) - 1 > MAX_SUBQUESTIONS:
        raise InvalidProblem(f"{where}: field 'decomposition' has {len(decomposition)} steps; at most "
                             f"{MAX_SUBQUESTIONS + 1} fit the TaskDecomposer's {MAX_SUBQUESTIONS} subgoals")
    try:
        start = StrategyQAState(question=question)
        goal = StrategyQAGoal(question=question, main=True)
    except ValidationError as e:
        raise InvalidProblem(f"{where}: {e}") from None
    return Problem(task="strategyqa", id=qid, start=start.model_dump(), goal=goal.model_dump(),
                   max_actions=N_ACTIONS, info={"index": index},
                   hidden={"answer": answer, "facts": facts, "decomposition": decomposition})


def load_problems(text: str, source: str) -> list[Problem]:
    """Parse a StrategyQA JSON file's text into problems (file order); ``InvalidProblem`` names file and field."""
    raw = load_json(text, source, list, "questions")
    problems = [_problem(r, source, i) for i, r in enumerate(raw)]
    seen: set[str] = set()
    for i, p in enumerate(problems):
        if p.id in seen:
            raise InvalidProblem(f"{source}[{i}]: field 'qid' {p.id!r} appears twice")
        seen.add(p.id)
    return problems


@cache
def _load() -> tuple[Problem, ...]:
    path = resources.files("map_agent.tasks") / "strategyqa" / "data" / DATA_FILE
    return tuple(load_problems(path.read_text(encoding="utf-8"), DATA_FILE))
