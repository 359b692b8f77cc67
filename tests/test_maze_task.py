"""The maze as a MAP task: ground truth, value-iteration distances, prompts, and MAP with all oracles."""

import json

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from map_agent.modules.base import make_input
from map_agent.modules.schemas import outputs_for
from map_agent.task import get_task, shortest_path
from map_agent.tasks.maze import MARGIN, MazeMove, MazeState, to_problem
from map_agent.tasks.maze.data import TRAINING_CONFIGS, load_test_set

MODULES = {"task_decomposer": "TaskDecomposer", "actor": "Actor", "monitor": "Monitor", "predictor": "Predictor",
           "evaluator": "Evaluator", "orchestrator": "Orchestrator"}


@pytest.fixture(scope="module")
def task():
    return get_task("maze")


def test_splits_are_the_four_test_sets(task):
    for k in range(1, 5):
        problems = task.problems(f"test{k}")
        assert len(problems) == 100
        p = problems[0]
        assert p.max_actions == p.optimal_length + MARGIN and p.start == {"row": 1, "col": 1}
    with pytest.raises(KeyError, match="unknown split"):
        task.problems("train")


def test_monitor_ground_truth_names_the_broken_rule(task):
    p = task.problems("test1")[0]
    maze, config = task.environment(p)
    start = task.start(p)
    wall = next((dr, dc) for dr, dc in config.actions if (1 + dr, 1 + dc) in maze.walls)
    assert "which is a wall" in task.check(start, MazeMove(d_row=wall[0], d_col=wall[1]), p).reason
    jumper = next(q for q in task.problems("test3") if [-3, 0] in q.info["config"]["actions"])
    assert "outside the" in task.check(task.start(jumper), MazeMove(d_row=-3, d_col=0), jumper).reason
    assert "not in the action set" in task.check(start, MazeMove(d_row=5, d_col=5), p).reason
    for action in task.legal_actions(start, p):
        assert task.check(start, action, p).valid
    with pytest.raises(ValueError, match="leaves the"):
        task.apply(start, MazeMove(d_row=-3, d_col=0), p)


@pytest.mark.parametrize("split", ["test1", "test2", "test3", "test4"])
def test_value_iteration_distance_equals_breadth_first_search(task, split):
    for p in task.problems(split)[:5]:
        start, goal = task.start(p), task.goal(p)
        assert task.distance(start, goal, p) == p.optimal_length
        path = shortest_path(task, start, goal, p)
        mid = MazeState(**path.states[len(path.states) // 2])
        assert task.distance(start, mid, p) == shortest_path(task, start, mid, p).distance
        plan = [MazeMove(**a) for a in path.actions]
        assert task.execute(p, plan).solved


def test_distance_to_or_from_a_wall_is_infinite(task):
    p = task.problems("test2")[0]
    assert task.distance(MazeState(row=0, col=0), task.goal(p), p) == float("inf")


def test_malformed_problem_data_raises_invalid_problem(task):
    p = task.problems("test1")[0]
    broken = p.model_copy(update={"info": {**p.info, "grid": p.info["grid"][:-1] + [p.info["grid"][-1][:-1]]}})
    with pytest.raises(Exception, match="ragged rows") as err:
        task.check(task.start(broken), MazeMove(d_row=0, d_col=1), broken)
    assert type(err.value).__name__ == "MazeError"


def test_description_shows_the_maze(task):
    p = task.problems("test4")[3]
    text = task.describe(p)
    assert "maze=[[" in text and f'"{p.info["config"]["agent"]}" agent' in text
    assert all(f"(d_row={dr}, d_col={dc})" in text for dr, dc in p.info["config"]["actions"])


@pytest.mark.parametrize("stem", list(MODULES))
def test_prompts_have_two_valid_examples_from_training_mazes(task, stem):
    folder = task.prompt_dir()
    assert (folder / f"{stem}.md").read_text().strip()
    shots = json.loads((folder / f"{stem}.examples.json").read_text())
    assert len(shots) == 2
    test_grids = {json.dumps(q.grid) for k in range(1, 5) for q in load_test_set(k)}
    training_symbols = {(c.agent, c.goal, c.wall) for c in TRAINING_CONFIGS}
    out_model = outputs_for(task)[MODULES[stem]]
    for shot in shots:
        make_input(MODULES[stem], task, shot["input"])
        out_model.model_validate(shot["output"])
        literal = shot["context"].split("\n", 1)[1].split("\nSymbols")[0]
        assert json.dumps(eval(literal.removeprefix("maze="))) not in test_grids
        assert any(f'"{a}" agent' in shot["context"] and f'"{w}" wall' in shot["context"]
                   for a, _, w in training_symbols)


def test_examples_are_correct_under_the_ground_truth(task):
    from map_agent.tasks.maze.data import training_problems

    by_context = {task.environment_text(to_problem(q)): to_problem(q) for q in training_problems()[:100]}
    for stem in ("monitor", "predictor", "evaluator"):
        for shot in json.loads((task.prompt_dir() / f"{stem}.examples.json").read_text()):
            p = by_context[shot["context"]]
            state = MazeState(**shot["input"]["state"])
            if stem == "monitor":
                assert task.check(state, MazeMove(**shot["input"]["action"]), p).valid == shot["output"]["valid"]
            elif stem == "predictor":
                assert task.apply(state, MazeMove(**shot["input"]["action"]), p).model_dump() == \
                    shot["output"]["next_state"]
            else:
                assert task.distance(state, MazeState(**shot["input"]["goal"]), p) == shot["output"]["steps_to_goal"]


def test_map_with_all_oracle_modules_solves_mazes_without_invalid_moves(task):
    from map_agent import MAPAgent

    for split in ("test1", "test2", "test3", "test4"):
        for p in task.problems(split)[:2]:
            result = MAPAgent(p, backend="oracle").plan()
            assert result.solved and result.invalid_moves == 0
            assert len(result.actions) == p.optimal_length


def test_llm_path_renders_maze_prompts(task):
    from map_agent.modules.monitor import Monitor
    from map_agent.modules.oracle import OracleChatModel

    p = task.problems("test1")[0]
    monitor = Monitor(task, p, OracleChatModel())
    messages = monitor.messages(make_input("Monitor", task, {"state": p.start, "action": {"d_row": 0, "d_col": 1}}))
    assert "maze=[[" in messages[0].content
    assert isinstance(messages[1], HumanMessage) and isinstance(messages[2], AIMessage)


def test_a_shortest_plan_is_hidden_and_no_prompt_states_the_budget(task):
    for split in task.splits():
        p = task.problems(split)[0]
        plan = [MazeMove(**m) for m in p.hidden["optimal_plan"]]
        assert len(plan) == p.optimal_length
        state = task.start(p)
        for move in plan:
            assert task.check(state, move, p).valid
            state = task.apply(state, move, p)
        assert task.satisfies(state, task.goal(p), p)
        text = task.describe(p.public())
        assert "moves may be used" not in text and str(p.max_actions) not in text.split("Action set:")[1]
