"""The value-iteration paper's maze data: symbol configurations, the four test sets, fine-tuning examples.

Everything is generated from a seed (nothing is stored): a maze is ``width, height ~ U{9..14}``, border walls,
``int(width*height*0.2)`` random inner walls, agent at row 1 column 1, goal at row ``height-2`` column
``width-2``, resampled until solvable with its configuration's action set.

* training: 10 configurations (symbols, action set among four-way / diagonal / 2-jump, goal reward);
  ``training_examples`` draws 1000 (prompt, reference script) pairs, one random configuration each;
* test set #1: the training configurations; #2: new symbols, training action sets; #3: training symbols with
  the new 3-jump and knight action sets; #4: new symbols and new action sets. 100 problems each.

Provenance (:func:`config_source`): the paper names ten training configurations but prints only three
(``PAPER_CONFIGS``, Section IV.B, copied exactly as printed -- its ``worm_in_garden`` repeats the symbols, actions
and reward of ``space_rover``), and gives none of its test-set configurations. The other seven training
configurations (``MAP_AGENT_CONFIGS``) and every test-set configuration are this project's, chosen so that
test-set symbols never occur in a training configuration.

Prompts (:data:`PROMPTS`): ``"paper"`` is the paper's problem description (Figure 2) with no system message, its
answer opening with "Give me the solution of the problem:" as in the paper's fine-tuning samples; ``"map-agent"``
is this project's: a system message stating the answer's contract, the empty-cell symbol listed too, and the
answer a bare script.

Export the fine-tuning data as chat JSONL::

    python -m map_agent.tasks.maze.data --out maze_train.jsonl --n 1000 --seed 0 [--prompt map-agent]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Sequence
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from map_agent.files import fill
from map_agent.tools.maze import (
    ACTION_SETS,
    Maze,
    SymbolConfig,
    generate_maze,
    grid_literal,
    parse_maze,
    render_grid,
    shortest_length,
)

SIZE_RANGE = (9, 14)
TEST_SET_SIZE = 100
TRAINING_SIZE = 1000
DEFAULT_SEED = 0
TEST_SETS = (1, 2, 3, 4)


def _config(name: str, agent: str, goal: str, wall: str, empty: str, actions: str,
            reward: float) -> SymbolConfig:
    return SymbolConfig(name=name, agent=agent, goal=goal, wall=wall, empty=empty,
                        actions=ACTION_SETS[actions], reward=reward)


#: the three training configurations the paper prints (Section IV.B), exactly as printed
PAPER_CONFIGS: tuple[SymbolConfig, ...] = (
    _config("space_rover", "R", "P", "O", ".", "four_way", 3),
    _config("worm_in_garden", "R", "P", "O", ".", "four_way", 3),
    _config("desert_trek", "T", "O", "@", ".", "four_way", 2),
)

#: this project's seven training configurations, standing in for the seven the paper does not print
MAP_AGENT_CONFIGS: tuple[SymbolConfig, ...] = (
    _config("classic", "A", "G", "#", "-", "four_way", 1),
    _config("castle_escape", "K", "E", "H", "_", "diagonal", 5),
    _config("robot_warehouse", "B", "D", "=", ".", "jump2", 4),
    _config("mouse_and_cheese", "M", "C", "%", ".", "diagonal", 2),
    _config("harbour", "S", "H", "~", "o", "jump2", 6),
    _config("bee_hive", "b", "h", "x", ".", "four_way", 1),
    _config("car_park", "V", "Z", "&", ":", "jump2", 2),
)

#: the 10 training configurations: the paper's three, then this project's seven
TRAINING_CONFIGS: tuple[SymbolConfig, ...] = PAPER_CONFIGS + MAP_AGENT_CONFIGS

#: test set #2 (this project's; the paper gives none): symbols no training configuration uses, with the training
#: action sets
NEW_SYMBOL_CONFIGS: tuple[SymbolConfig, ...] = (
    _config("alien_base", "Q", "Y", "*", ",", "four_way", 3),
    _config("treasure_hunt", "J", "N", "$", ";", "diagonal", 2),
    _config("lunar_lander", "L", "U", "+", "0", "jump2", 4),
    _config("fox_den", "f", "d", "^", "`", "four_way", 5),
)

NEW_ACTION_SETS = ("jump3", "knight")


def _with_actions(configs: tuple[SymbolConfig, ...]) -> tuple[SymbolConfig, ...]:
    return tuple(c.model_copy(update={"name": f"{c.name}_{a}", "actions": ACTION_SETS[a]})
                 for c in configs for a in NEW_ACTION_SETS)


#: the configurations each test set draws from
TEST_CONFIGS: dict[int, tuple[SymbolConfig, ...]] = {
    1: TRAINING_CONFIGS,
    2: NEW_SYMBOL_CONFIGS,
    3: _with_actions(TRAINING_CONFIGS),
    4: _with_actions(NEW_SYMBOL_CONFIGS),
}


Source = Literal["paper", "map-agent"]
Prompt = Literal["paper", "map-agent"]


def config_source(config: SymbolConfig) -> Source:
    """``"paper"`` for a configuration the paper prints, ``"map-agent"`` for one this project made up."""
    return "paper" if config in PAPER_CONFIGS else "map-agent"


class MazeProblem(BaseModel):
    """One maze problem as the paper poses it: the symbol grid and its configuration."""

    model_config = ConfigDict(frozen=True)

    id: str
    test_set: int | None = Field(default=None, description="1-4 for test problems, None for training")
    config: SymbolConfig
    grid: list[list[str]]
    optimal_length: int = Field(ge=1, description="fewest moves from agent to goal")

    @property
    def maze(self) -> Maze:
        return parse_maze(self.grid, self.config, source=self.id)

    @property
    def config_source(self) -> Source:
        """Whether the problem's symbol configuration is the paper's or this project's."""
        return config_source(self.config)


def _draw(rng: random.Random, pid: str, test_set: int | None,
          configs: tuple[SymbolConfig, ...]) -> MazeProblem:
    width, height = rng.randint(*SIZE_RANGE), rng.randint(*SIZE_RANGE)
    config = rng.choice(configs)
    maze = generate_maze(rng, width, height, config.actions)
    return MazeProblem(id=pid, test_set=test_set, config=config, grid=render_grid(maze, config),
                       optimal_length=int(shortest_length(maze, config.actions)))


@cache
def load_test_set(number: int, seed: int = DEFAULT_SEED,
                  size: int = TEST_SET_SIZE) -> tuple[MazeProblem, ...]:
    """Test set #``number`` (1-4): ``size`` problems, the same for the same seed on every machine."""
    if number not in TEST_CONFIGS:
        raise KeyError(f"maze: unknown test set {number!r}; known: 1, 2, 3, 4")
    rng = random.Random(f"maze/test{number}/{seed}")
    return tuple(_draw(rng, f"test{number}-{i:03d}", number, TEST_CONFIGS[number]) for i in range(size))


@cache
def training_problems(n: int = TRAINING_SIZE, seed: int = DEFAULT_SEED) -> tuple[MazeProblem, ...]:
    """The ``n`` training mazes (a random training configuration each)."""
    rng = random.Random(f"maze/train/{seed}")
    return tuple(_draw(rng, f"train-{i:04d}", None, TRAINING_CONFIGS) for i in range(n))


# -- prompt and answer ---------------------------------------------------------------------------------------
#: the prompt formats: the paper's (the default) and this project's
PROMPTS: tuple[Prompt, ...] = ("paper", "map-agent")

#: the line that opens the answer in the paper's fine-tuning samples (Figure 2 puts it after ``[/INST]``)
ANSWER_LEAD = "Give me the solution of the problem:"


def _prompt_path(name: str) -> Traversable:
    return resources.files("map_agent.prompts") / "maze_code" / name


def _prompt_file(name: str) -> str:
    return _prompt_path(name).read_text(encoding="utf-8")


def _filled(name: str, **values: Any) -> str:
    """The prompt template ``name`` with its placeholders filled (a bad one names the file: ``files.fill``)."""
    return fill(_prompt_path(name), _prompt_file(name), **values)


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def user_prompt(problem: MazeProblem, prompt: Prompt = "paper") -> str:
    """The problem description for one maze: the paper's Figure 2 (agent, goal and wall symbols, the actions,
    the goal reward), or this project's, which also names the empty-cell symbol and ends with the request.

    Where the paper's text leaves a choice: its figures name the four basic moves ("Up", "Down", ...) or leave
    the action line empty, and its configurations list actions as offsets; the offsets are written here, the
    only form that also covers diagonals, jumps and knight moves.
    """
    c = problem.config
    return _filled(
        f"{prompt}.user.md", maze=grid_literal(problem.grid), agent=c.agent, goal=c.goal, wall=c.wall, empty=c.empty,
        actions=", ".join(f"({dr}, {dc})" for dr, dc in c.actions), reward=_number(c.reward)).strip()


def system_prompt(prompt: Prompt = "paper") -> str | None:
    """The system message: none in the paper's prompt (its ``<<SYS>>`` block is empty); this project's states
    the answer's contract, a script binding ``maze`` and ``value_iteration``."""
    return None if prompt == "paper" else _prompt_file("map-agent.system.md").strip()


def prompt_tuning_prompt(problem: MazeProblem, shots: Sequence[MazeProblem]) -> str:
    """The paper's prompt tuning (Figure 3): solved examples, each the problem description, the answer line and
    the script, then the problem. The paper's samples also carry CodeLlama's ``[INST]`` tokens inside the
    prompt; a chat API wraps the message in its own template, so they are left out."""
    samples = "\n\n".join(f"{user_prompt(shot)}\n\n{answer(shot)}" for shot in shots)
    return _filled("paper.examples.md", samples=samples.strip(), problem=user_prompt(problem)).strip()


_SCRIPT = '''\
"""Value iteration for the maze: the free cells are the states, the moves below the actions, and entering the
goal pays the goal reward and ends the episode."""

{maze}

AGENT, GOAL, WALL = {agent!r}, {goal!r}, {wall!r}
ACTIONS = {actions}
GOAL_REWARD = {reward}
GAMMA = 0.9


def value_iteration(maze, actions=ACTIONS, reward=GOAL_REWARD, gamma=GAMMA, tol=1e-9, max_iterations=10000):
    """V(s) = max over legal moves s -> s' of (reward if s' is the goal else 0) + gamma * V(s')."""
    height, width = len(maze), len(maze[0])
    cells = [(r, c) for r in range(height) for c in range(width) if maze[r][c] not in (WALL, GOAL)]
    values = [[0.0] * width for _ in range(height)]
    for _ in range(max_iterations):
        updated = [row[:] for row in values]
        delta = 0.0
        for r, c in cells:
            best = 0.0
            for dr, dc in actions:
                nr, nc = r + dr, c + dc
                if 0 <= nr < height and 0 <= nc < width and maze[nr][nc] != WALL:
                    gain = reward if maze[nr][nc] == GOAL else 0.0
                    best = max(best, gain + gamma * values[nr][nc])
            delta = max(delta, abs(best - values[r][c]))
            updated[r][c] = best
        values = updated
        if delta < tol:
            break
    return values


solution = value_iteration(maze)
'''


def reference_script(problem: MazeProblem) -> str:
    """The answer the model is fine-tuned to write: a complete script binding ``maze`` and
    ``value_iteration``."""
    c = problem.config
    return _SCRIPT.format(maze=grid_literal(problem.grid), agent=c.agent, goal=c.goal, wall=c.wall,
                          actions=repr([tuple(a) for a in c.actions]), reward=_number(c.reward))


def answer(problem: MazeProblem, prompt: Prompt = "paper") -> str:
    """The fine-tuning target: the paper's opens with :data:`ANSWER_LEAD`; this project's is the bare script."""
    script = reference_script(problem)
    return f"{ANSWER_LEAD}\n{script}" if prompt == "paper" else script


def chat_example(problem: MazeProblem, prompt: Prompt = "paper") -> dict:
    """One supervised fine-tuning record in chat format."""
    system = system_prompt(prompt)
    return {"messages": [*([{"role": "system", "content": system}] if system else []),
                         {"role": "user", "content": user_prompt(problem, prompt)},
                         {"role": "assistant", "content": answer(problem, prompt)}]}


def training_examples(n: int = TRAINING_SIZE, seed: int = DEFAULT_SEED, prompt: Prompt = "paper") -> list[dict]:
    """The paper's 1000 training examples (prompt, reference script) as chat records."""
    return [chat_example(p, prompt) for p in training_problems(n, seed)]


def export_jsonl(path: Path | str, n: int = TRAINING_SIZE, seed: int = DEFAULT_SEED,
                 prompt: Prompt = "paper") -> int:
    """Write the training examples to ``path`` as JSONL (one chat record a line); returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    examples = training_examples(n, seed, prompt)
    with path.open("w", encoding="utf-8") as f:
        for example in examples:
            f.write(json.dumps(example, ensure_ascii=False) + "\n")
    return len(examples)


def main(argv: list[str] | None = None) -> int:
    """``python -m map_agent.tasks.maze.data --out FILE [--n 1000] [--seed 0] [--test-set K] [--prompt P]``."""
    parser = argparse.ArgumentParser(prog="map_agent.tasks.maze.data", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="JSONL file to write")
    parser.add_argument("--n", type=int, default=TRAINING_SIZE, help="number of training examples")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--test-set", type=int, choices=TEST_SETS,
                        help="export this test set's problems (prompt + reference answer) instead")
    parser.add_argument("--prompt", choices=PROMPTS, default="paper",
                        help="the paper's prompt format (default) or this project's (map-agent)")
    args = parser.parse_args(argv)
    if args.test_set:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", encoding="utf-8") as f:
            for p in load_test_set(args.test_set, args.seed):
                f.write(json.dumps({"id": p.id, **chat_example(p, args.prompt)}, ensure_ascii=False) + "\n")
        count = TEST_SET_SIZE
    else:
        count = export_jsonl(args.out, args.n, args.seed, args.prompt)
    print(f"wrote {count} examples to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
