"""Grid mazes: generation, parsing errors, the maze MDP and its paths, the paper's data sets, the LangChain tool."""

import json
import random

import networkx as nx
import numpy as np
import pytest

from map_agent.tasks.maze import data
from map_agent.tools.maze import (
    ACTION_SETS,
    FOUR_WAY,
    MazeError,
    SymbolConfig,
    distances_to,
    generate_maze,
    greedy_path,
    maze_graph,
    maze_mdp,
    parse_maze,
    render_grid,
    shortest_length,
    solve_maze,
)
from map_agent.tools.mdp import value_iteration, value_iteration_reference
from map_agent.tools.value_iteration_tool import value_iteration_tool

CLASSIC = SymbolConfig(name="classic", agent="A", goal="G", wall="#", empty="-")


def grid(*rows: str) -> list[list[str]]:
    return [list(r) for r in rows]


# -- generation -----
@pytest.mark.parametrize("actions", list(ACTION_SETS.values()), ids=list(ACTION_SETS))
def test_generation_is_deterministic_and_has_the_papers_properties(actions):
    def draw(seed):
        rng = random.Random(seed)
        width, height = rng.randint(9, 14), rng.randint(9, 14)
        return width, height, generate_maze(rng, width, height, actions)

    assert draw(0) != draw(1)
    for seed in range(5):
        width, height, maze = draw(seed)
        assert draw(seed)[2] == maze
        border = {(r, c) for r in range(height) for c in range(width) if r in (0, height - 1) or c in (0, width - 1)}
        assert border <= maze.walls
        assert len(maze.walls) == len(border) + int(width * height * 0.2)
        assert maze.agent == (1, 1) and maze.goal == (height - 2, width - 2)
        assert maze.agent not in maze.walls and maze.goal not in maze.walls
        assert shortest_length(maze, actions) < float("inf")


def test_render_and_parse_round_trip_and_the_literal():
    maze = generate_maze(random.Random(3), 10, 12, FOUR_WAY)
    rows = render_grid(maze, CLASSIC)
    assert parse_maze(rows, CLASSIC) == maze
    assert parse_maze(data.grid_literal(rows), CLASSIC) == maze


# -- malformed mazes -----
@pytest.mark.parametrize("rows, message", [
    (grid("####", "#AG#", "###"), "ragged rows: row 2 has 3 cells but row 0 has 4"),
    (grid("####", "#-G#", "####"), "no agent ('A')"),
    (grid("#####", "#AGG#", "#####"), "2 goals ('G') at row 1 column 2, row 1 column 3"),
    (grid("####", "#A?#", "#G-#", "####"), "unknown symbol '?' at row 1, column 2"),
    (grid("#####", "#A#G#", "#####"), "goal at row 1, column 3 is unreachable"),
])
def test_malformed_maze_errors_name_the_problem(rows, message):
    with pytest.raises(MazeError) as err:
        parse_maze(rows, CLASSIC, source="case.json")
    assert message in str(err.value) and str(err.value).startswith("case.json: ")


def test_unparseable_literal_is_reported():
    with pytest.raises(MazeError, match="not a Python list of rows"):
        parse_maze("maze=[['#', 'A'", CLASSIC)


# -- the maze MDP -----
def test_small_maze_values_by_hand():
    maze = parse_maze(grid("#####", "#A-G#", "#####"), CLASSIC)
    values = solve_maze(maze, FOUR_WAY, reward=2.0, gamma=0.5).values
    np.testing.assert_allclose(values[1], [0, 1.0, 2.0, 0, 0])
    assert greedy_path(values, maze, FOUR_WAY) == [(1, 1), (1, 2), (1, 3)]


def test_jumps_pass_over_walls():
    maze = parse_maze(grid("#####", "#A#G#", "#####"), CLASSIC.model_copy(update={"actions": ACTION_SETS["jump2"]}))
    assert greedy_path(solve_maze(maze, ACTION_SETS["jump2"]).values, maze, ACTION_SETS["jump2"]) == [(1, 1), (1, 3)]


@pytest.mark.parametrize("name", list(ACTION_SETS))
def test_value_iteration_paths_and_distances_are_optimal(name):
    actions = ACTION_SETS[name]
    maze = generate_maze(random.Random(11), 13, 11, actions)
    path = greedy_path(solve_maze(maze, actions).values, maze, actions)
    assert path[-1] == maze.goal and len(path) - 1 == shortest_length(maze, actions)
    bfs = nx.single_source_shortest_path_length(maze_graph(maze, actions).reverse(), maze.goal)
    steps = distances_to(maze, actions, maze.goal)
    for cell, d in bfs.items():
        assert steps[cell] == d
    assert np.isinf(steps[0, 0])  # a wall


def test_stochastic_maze_agrees_with_reference_and_keeps_the_shortest_path():
    maze = generate_maze(random.Random(5), 9, 9, FOUR_WAY)
    mdp, _ = maze_mdp(maze, FOUR_WAY, reward=3.0, gamma=0.9, slip=0.3)
    np.testing.assert_allclose(value_iteration(mdp).values, value_iteration_reference(mdp), atol=1e-9)
    path = greedy_path(solve_maze(maze, FOUR_WAY, 3.0, 0.9, slip=0.3).values, maze, FOUR_WAY)
    assert len(path) - 1 == shortest_length(maze, FOUR_WAY)


def test_greedy_path_stops_on_a_loop():
    maze = parse_maze(grid("######", "#A--G#", "######"), CLASSIC)
    values = np.zeros((3, 6))
    values[1, 1] = 5.0  # the script's values pull the agent back to the start
    assert greedy_path(values, maze, FOUR_WAY) == [(1, 1), (1, 2), (1, 1)]


# -- the paper's data -----
def _symbols(configs):
    return {s for c in configs for s in (c.agent, c.goal, c.wall, c.empty)}


def test_the_papers_three_configurations_are_exactly_as_printed():
    # Section IV.B lists these (its worm_in_garden repeats space_rover's symbols, actions and reward)
    printed = {
        "space_rover": {"agent": "R", "goal": "P", "wall": "O", "empty": ".", "reward": 3},
        "worm_in_garden": {"agent": "R", "goal": "P", "wall": "O", "empty": ".", "reward": 3},
        "desert_trek": {"agent": "T", "goal": "O", "wall": "@", "empty": ".", "reward": 2},
    }
    assert [c.name for c in data.PAPER_CONFIGS] == list(printed)
    for c in data.PAPER_CONFIGS:
        assert c.model_dump(include={"agent", "goal", "wall", "empty", "reward"}) == printed[c.name]
        assert c.actions == ((0, 1), (1, 0), (0, -1), (-1, 0))
        assert data.config_source(c) == "paper"
    assert data.TRAINING_CONFIGS[:3] == data.PAPER_CONFIGS


def test_configurations_the_paper_does_not_give_are_labelled_as_ours():
    ours = [c for cs in (data.MAP_AGENT_CONFIGS, data.TEST_CONFIGS[2], data.TEST_CONFIGS[3], data.TEST_CONFIGS[4])
            for c in cs]
    assert len(data.MAP_AGENT_CONFIGS) == 7 and all(data.config_source(c) == "map-agent" for c in ours)
    assert not {c.name for c in ours} & {c.name for c in data.PAPER_CONFIGS}
    assert {p.config_source for p in data.load_test_set(2)} == {"map-agent"}
    assert {p.config_source for p in data.load_test_set(1)} == {"paper", "map-agent"}


def test_configurations_follow_the_paper():
    assert len(data.TRAINING_CONFIGS) == 10
    train_actions = {c.actions for c in data.TRAINING_CONFIGS}
    assert train_actions == {ACTION_SETS["four_way"], ACTION_SETS["diagonal"], ACTION_SETS["jump2"]}
    assert all(set(FOUR_WAY) <= set(c.actions) for cs in data.TEST_CONFIGS.values() for c in cs)
    assert not _symbols(data.NEW_SYMBOL_CONFIGS) & _symbols(data.TRAINING_CONFIGS)
    new_actions = {ACTION_SETS["jump3"], ACTION_SETS["knight"]}
    assert {c.actions for c in data.TEST_CONFIGS[2]} <= train_actions
    assert {c.actions for c in data.TEST_CONFIGS[3]} == new_actions
    assert {c.actions for c in data.TEST_CONFIGS[4]} == new_actions
    assert _symbols(data.TEST_CONFIGS[3]) <= _symbols(data.TRAINING_CONFIGS)
    assert _symbols(data.TEST_CONFIGS[4]) == _symbols(data.NEW_SYMBOL_CONFIGS)


@pytest.mark.parametrize("number", data.TEST_SETS)
def test_test_sets_have_the_papers_shape(number):
    problems = data.load_test_set(number)
    assert len(problems) == 100 and len({p.id for p in problems}) == 100
    assert problems == data.load_test_set.__wrapped__(number)  # regenerated from the seed, not cached state
    assert {p.config for p in problems} <= set(data.TEST_CONFIGS[number])
    for p in problems:
        height, width = len(p.grid), len(p.grid[0])
        assert 9 <= height <= 14 and 9 <= width <= 14
        maze = p.maze
        assert maze.agent == (1, 1) and maze.goal == (height - 2, width - 2)
        assert p.optimal_length == shortest_length(maze, p.config.actions)


def test_test_set_one_shares_no_maze_with_training():
    train = {json.dumps(p.grid) for p in data.training_problems()}
    assert not train & {json.dumps(p.grid) for p in data.load_test_set(1)}


def test_training_export_is_chat_jsonl_in_the_papers_format(tmp_path):
    out = tmp_path / "train.jsonl"
    assert data.main(["--out", str(out), "--n", "5", "--seed", "3"]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 5
    assert lines == data.training_examples(5, seed=3)
    for record in lines:
        # Figure 2: an empty system block, the problem, then an answer opening with the paper's line
        assert [m["role"] for m in record["messages"]] == ["user", "assistant"]
        reply = record["messages"][1]["content"]
        assert reply.startswith(data.ANSWER_LEAD + "\n")
        assert "maze=[" in reply and "def value_iteration(maze" in reply
        assert record["messages"][0]["content"].startswith("This is a maze problem that I want you to solve:")
    assert len(data.training_examples()) == 1000


def test_training_export_in_this_projects_format(tmp_path):
    out = tmp_path / "train.jsonl"
    assert data.main(["--out", str(out), "--n", "2", "--prompt", "map-agent"]) == 0
    for record in (json.loads(line) for line in out.read_text().splitlines()):
        assert [m["role"] for m in record["messages"]] == ["system", "user", "assistant"]
        assert record["messages"][2]["content"].startswith('"""Value iteration')
        assert record["messages"][1]["content"].endswith(data.ANSWER_LEAD)


# -- the LangChain tool -----
def test_tool_is_callable_through_langchain():
    out = value_iteration_tool.invoke({"maze": grid("R..", ".O.", "..P"),
                                       "agent": "R", "goal": "P", "wall": "O", "empty": ".",
                                       "actions": [[0, 1], [1, 0], [0, -1], [-1, 0]], "reward": 3})
    assert out["optimal_length"] == 4 and out["path"][0] == [0, 0] and out["path"][-1] == [2, 2]
    assert out["values"][0][0] == pytest.approx(3 * 0.9 ** 3)
    assert value_iteration_tool.args_schema.model_json_schema()["properties"]["maze"]["type"] == "array"


def test_tool_returns_the_maze_error_to_the_agent():
    out = value_iteration_tool.invoke({"maze": grid("###", "#A#", "###")})
    assert out == "maze: no goal ('G') in the maze"
