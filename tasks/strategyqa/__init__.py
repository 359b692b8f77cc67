"""StrategyQA as a MAP task: answer sub-questions, then the yes/no question.

The paper's setup (Methods): the TaskDecomposer writes sub-questions, the Actor answers each one, the Monitor
checks the answers and a final step gives true/false; no Evaluator, no in-context examples, N = 1 action per
question; 100 dev questions, sampled with the seed of the authors' code (``random.seed(2024)``). Metric: accuracy.

It fits the generic task interface without a task-specific branch in the core:

* ``Goal``   -- a question to answer (a sub-question, or the main question as the final goal);
* ``State``  -- the main question plus the answered (sub-)questions so far;
* ``Action`` -- an answer to a named question; ``apply`` records it. The main question takes "true"/"false".

The goal test is bookkeeping ("has this question been answered?"), not correctness, so the Orchestrator -- which
the paper does not use -- runs as that symbolic check (``default_modules``): it moves the plan from one
sub-question to the next exactly as the authors' loop does, without knowing any answer. Correctness is the metric,
scored by ``execute`` against the dataset's label.

The oracle (ground truth) is the dataset's own reasoning: its decomposition gives the subgoals
(:meth:`StrategyQATask.oracle_subgoals`), its facts answer the sub-questions and its label answers the main
question (:meth:`StrategyQATask.legal_actions`).

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

from map_agent.task import Execution, InvalidProblem, Problem, Task, Verdict, load_json

#: The MAP authors' sampling of the evaluation questions (strategyQA/map_strategyqa.py).
SAMPLE_SEED = 2024
SAMPLE_SIZE = 100
#: At most this many sub-questions (the TaskDecomposer's schema allows four) plus one final answer: N is one
#: action per question, as in the paper.
MAX_SUBQUESTIONS = 4
N_ACTIONS = MAX_SUBQUESTIONS + 1
ANSWERS = {"true": True, "false": False}
DATA_FILE = "dev.json"


def _key(question: str) -> str:
    """Questions are matched ignoring case and surrounding blanks (a model may re-type a sub-question)."""
    return " ".join(question.split()).casefold()


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
    """A question to answer: a sub-question, or the main question (then the answer is true or false)."""

    model_config = ConfigDict(frozen=True)

    question: str


class StrategyQAAnswer(BaseModel):
    """An answer to one question; the main question's answer is "true" or "false"."""

    model_config = ConfigDict(frozen=True)

    question: str = Field(description="the question being answered, as written in the goal")
    answer: str = Field(description="the answer; for the main question exactly 'true' or 'false'")


class StrategyQATask(Task[StrategyQAState, StrategyQAAnswer, StrategyQAGoal]):
    """Ground truth, data and prompt rendering for StrategyQA."""

    name = "strategyqa"
    State = StrategyQAState
    Action = StrategyQAAnswer
    Goal = StrategyQAGoal
    default_modules = {"TaskDecomposer": "llm", "Actor": "llm", "Monitor": "llm", "Predictor": "off",
                       "Evaluator": "off", "Orchestrator": "oracle"}
    default_search = False
    default_subgoals = 3

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
        if not action.question.strip():
            return Verdict(valid=False, reason="the answer does not name the question it answers")
        if not action.answer.strip():
            return Verdict(valid=False, reason=f"the answer to {action.question!r} is empty")
        if state.answer_to(action.question) is not None:
            return Verdict(valid=False, reason=f"{action.question!r} has already been answered")
        if _key(action.question) == _key(state.question) and _key(action.answer) not in ANSWERS:
            return Verdict(valid=False, reason=f"the main question takes 'true' or 'false', not {action.answer!r}")
        return Verdict(valid=True)

    def apply(self, state: StrategyQAState, action: StrategyQAAnswer, problem: Problem) -> StrategyQAState:
        answer = action.answer.strip()
        if _key(action.question) == _key(state.question) and _key(answer) in ANSWERS:
            answer = _key(answer)
        return state.model_copy(update={"answered": (*state.answered, QA(question=action.question.strip(),
                                                                           answer=answer))})

    def legal_actions(self, state: StrategyQAState, problem: Problem) -> list[StrategyQAAnswer]:
        """The answers the dataset supports: its facts for each open sub-question, its label for the question.

        Free-text answers are unbounded, so the enumerable actions are the dataset's own ones (the oracle Actor
        picks among them); ``check`` accepts any well-formed answer.
        """
        facts = " ".join(f.strip() for f in problem.info["facts"])
        actions = [StrategyQAAnswer(question=q, answer=facts) for q in problem.info["decomposition"][:-1]
                   if state.answer_to(q) is None]
        if state.answer_to(state.question) is None:
            actions.append(StrategyQAAnswer(question=state.question, answer=str(problem.info["answer"]).lower()))
        return actions

    def satisfies(self, state: StrategyQAState, goal: StrategyQAGoal, problem: Problem) -> bool:
        return state.answer_to(goal.question) is not None

    def as_goal(self, state: StrategyQAState) -> StrategyQAGoal:  # type: ignore[override]
        """The question answered last: a state on the oracle path stands for the sub-question it settled."""
        return StrategyQAGoal(question=state.answered[-1].question if state.answered else state.question)

    def oracle_subgoals(self, state: StrategyQAState, goal: StrategyQAGoal, n_subgoals: int,
                        problem: Problem) -> list[StrategyQAGoal]:
        """The oracle TaskDecomposer: the dataset's decomposition, its last step (the question restated) left
        out, at most ``n_subgoals`` of them; the goal itself when the decomposition has one step.

        This is the task hook the core's oracle TaskDecomposer should prefer to its breadth-first default
        (answering the main question directly is always the shortest path, so BFS finds no subgoals here).
        """
        steps = [StrategyQAGoal(question=q) for q in problem.info["decomposition"][:-1]
                 if state.answer_to(q) is None]
        return steps[:n_subgoals] or [goal]

    # -- scoring ---------------------------------------------------------------------------------------------
    def execute(self, problem: Problem, actions: Iterable[StrategyQAAnswer]) -> Execution:
        """Accuracy, the paper's metric: ``solved`` means the recorded answer to the main question is the
        dataset's label (invalid sub-answers are counted but do not decide it)."""
        actions = list(actions)
        state, steps = self.replay(problem, actions)
        final = state.answer_to(state.question)
        return Execution(
            n_actions=len(actions),
            n_invalid=sum(not s.valid for s in steps),
            goal_reached=final is not None,
            solved=final is not None and ANSWERS[final] == problem.info["answer"],
            final_state=state.model_dump(mode="json"),
            steps=steps,
        )

    # -- how it reads in a prompt ------------------------------------------------------------------------------
    def describe(self, problem: Problem) -> str:
        return _description()

    def render_state(self, state: StrategyQAState) -> str:  # type: ignore[override]
        lines = [f"Question: {state.question}"]
        for i, qa in enumerate(state.answered, 1):
            lines += [f"Sub-question {i}: {qa.question}", f"Answer: {qa.answer}"]
        if not state.answered:
            lines.append("(no sub-question answered yet)")
        return "\n".join(lines)

    def render_goal(self, goal: StrategyQAGoal) -> str:  # type: ignore[override]
        return goal.question

    def render_action(self, action: StrategyQAAnswer) -> str:  # type: ignore[override]
        return f"Answer to {action.question!r}: {action.answer}"


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
        goal = StrategyQAGoal(question=question)
    except ValidationError as e:
        raise InvalidProblem(f"{where}: {e}") from None
    return Problem(task="strategyqa", id=qid, start=start.model_dump(), goal=goal.model_dump(),
                   max_actions=N_ACTIONS, optimal_length=len(decomposition),
                   info={"answer": answer, "facts": facts, "decomposition": decomposition,
                         "term": raw.get("term", ""), "index": index})


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
