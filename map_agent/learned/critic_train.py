"""Training and measuring the learned critic (``map_agent.learned.critic``) offline, from a task's ground truth.

Data: trajectories through the task's state space -- optimal ones (``shortest_path`` to a goal), epsilon-greedy
ones (a random legal action with probability ``epsilon``) and random walks -- from every state reachable from the
training problems' starts, start and goal always in the same world (the states one problem reaches: a goal of
another size could never be reached). Every step is relabelled with hindsight goals (states the same trajectory reaches
later) besides the goal it was heading for; the reward is -1 per action and the episode ends when the goal is
reached, so ``Q(s, a, g) = -(1 + d(s', g))`` and ``V(s, g) = -d(s, g)``, 0 at the goal. A stated fraction of
the states is never used as a goal (held-out goals); the task's final goals are always trained.

Learning: IQL (Kostrikov et al.) as "Planning without Search" uses it -- ``Q`` regresses on
``r + V(s', g)``, ``V`` on an upper expectile of a slowly updated copy of ``Q`` over the data's actions, so
``V`` approaches the best action's value without querying actions the data never took. torch comes from the
``[train]`` extra; the result is exported to numpy weights (``CriticWeights``).

``map-agent train-critic hanoi --split world2,all3,world5 --features structural --out
map_agent/learned/critics/hanoi.npz`` trains and measures the shipped Hanoi critic (held out: 20% of the states
as goals, and every four-disk state).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
from pydantic import BaseModel, Field

from map_agent.learned.critic import FEATURES, Critic, CriticWeights, Embedder, Features, Item, make_features
from map_agent.learned.train import TRAIN_EXTRA
from map_agent.task import Problem, Task, canonical, get_task, shortest_path


class CriticConfig(BaseModel):
    """Data and optimisation settings of one critic (recorded in its card)."""

    features: Literal["embedding", "structural"] = Field(
        default="embedding", description="what the critic reads: SmolLM2 embeddings of the task's renderings, or the "
                                         "task's structural features relative to the goal (one layout for every size)")
    heldout_goals: float = Field(default=0.2, ge=0, lt=1, description="fraction of states never used as goals")
    oracle: int = Field(default=300, ge=0, description="optimal trajectories to random training goals, per world")
    noisy: int = Field(default=150, ge=0, description="epsilon-greedy trajectories to random training goals, per "
                                                     "world")
    walks: int = Field(default=100, ge=0, description="random-walk trajectories, per world")
    epsilon: float = Field(default=0.3, ge=0, le=1)
    walk_length: int = Field(default=12, ge=1)
    hindsight: int = Field(default=4, ge=0, description="future states used as goals per step")
    projection: int = Field(default=64, ge=4, description="width of the shared feature projection")
    hidden: int = Field(default=256, ge=8)
    steps: int = Field(default=4000, ge=1)
    batch_size: int = Field(default=256, ge=8)
    learning_rate: float = Field(default=3e-3, gt=0)
    expectile: float = Field(default=0.8, gt=0.5, lt=1, description="IQL's tau: V tracks this expectile of Q")
    polyak: float = Field(default=0.02, gt=0, le=1, description="target-Q update rate")
    seed: int = 0


class Distances:
    """Memoised true distances (ground truth for labels of the metrics; never a training target)."""

    def __init__(self, task: Task, problem: Problem) -> None:
        self.task, self.problem = task, problem
        self._memo: dict[tuple[str, str], float] = {}

    def __call__(self, state: BaseModel, goal: BaseModel) -> float:
        k = (canonical(state), canonical(goal))
        if k not in self._memo:
            self._memo[k] = self.task.distance(state, goal, self.problem)
        return self._memo[k]


def reachable_states(task: Task, problem: Problem, limit: int = 10_000) -> list[BaseModel]:
    """Every state reachable from the problem's start (breadth-first, at most ``limit``)."""
    seen: dict[str, BaseModel] = {}
    frontier = [task.start(problem)]
    while frontier and len(seen) < limit:
        state = frontier.pop()
        k = canonical(state)
        if k in seen:
            continue
        seen[k] = state
        frontier += [task.apply(state, a, problem) for a in task.legal_actions(state, problem)]
    return list(seen.values())


def split_goals(task: Task, problems: Sequence[Problem], states: list[BaseModel], fraction: float,
                seed: int) -> tuple[list[BaseModel], list[BaseModel]]:
    """(training goals, held-out goals) among ``states``; the problems' own final goals always train."""
    finals = {canonical(task.goal(p)) for p in problems}
    rng = random.Random(f"{seed}|goals")
    candidates = [s for s in states if canonical(task.as_goal(s)) not in finals]
    held = {canonical(s) for s in rng.sample(candidates, round(fraction * len(states)))}
    train = [task.as_goal(s) for s in states if canonical(s) not in held]
    return train, [task.as_goal(s) for s in states if canonical(s) in held]


Trajectory = tuple[list[BaseModel], list[BaseModel], BaseModel | None]  # states, actions, the goal it headed for


def trajectories(task: Task, problem: Problem, states: list[BaseModel], goals: list[BaseModel],
                 config: CriticConfig, rng: random.Random) -> list[Trajectory]:
    """Optimal, epsilon-greedy and random-walk trajectories from random states of ``states``."""
    distance = Distances(task, problem)
    out: list[Trajectory] = []
    for _ in range(config.oracle):
        start, goal = rng.choice(states), rng.choice(goals)
        path = shortest_path(task, start, goal, problem)
        if math.isfinite(path.distance):
            out.append(([task.State.model_validate(s) for s in path.states],
                        [task.Action.model_validate(a) for a in path.actions], goal))
    for _ in range(config.noisy):
        state, goal = rng.choice(states), rng.choice(goals)
        seen, actions = [state], []
        for _ in range(problem.max_actions):
            legal = task.legal_actions(state, problem)
            if not legal or task.satisfies(state, goal, problem):
                break
            if rng.random() < config.epsilon:
                action = rng.choice(legal)
            else:
                action = min(legal, key=lambda a: distance(task.apply(state, a, problem), goal))
            state = task.apply(state, action, problem)
            seen.append(state)
            actions.append(action)
        out.append((seen, actions, goal))
    for _ in range(config.walks):
        state = rng.choice(states)
        seen, actions = [state], []
        for _ in range(config.walk_length):
            legal = task.legal_actions(state, problem)
            if not legal:
                break
            actions.append(rng.choice(legal))
            state = task.apply(state, actions[-1], problem)
            seen.append(state)
        out.append((seen, actions, None))
    return out


class Dataset(BaseModel):
    """Transitions as indices into ``texts``, the keys of the states, actions and goals that get a feature row
    (their renderings for embeddings; value and goal for goal-relative features), ``items`` what they stand for."""

    texts: list[str]
    items: list[Any] = []
    s: list[int] = []
    a: list[int] = []
    s2: list[int] = []
    g: list[int] = []
    done: list[bool] = []
    #: (state, goal) pairs where the state achieves the goal: V = 0 there
    at_goal: list[tuple[int, int]] = []


def relabel(task: Task, problem: Problem, trajs: list[Trajectory], goals: list[BaseModel], config: CriticConfig,
            rng: random.Random, features: Features) -> Dataset:
    """Hindsight relabelling: each step gets its trajectory's goal and ``config.hindsight`` later states of the
    trajectory as goals (training goals only)."""
    allowed = {canonical(g) for g in goals}
    ids: dict[str, int] = {}
    items: list[Item] = []

    def idx(role: str, value: BaseModel, goal: BaseModel) -> int:
        k = features.key((role, value, goal))
        if k not in ids:
            ids[k] = len(ids)
            items.append((role, value, goal))
        return ids[k]

    data: dict[str, list] = {k: [] for k in ("s", "a", "s2", "g", "done", "at_goal")}
    for states, actions, headed in trajs:
        for t, action in enumerate(actions):
            later = [task.as_goal(s) for s in states[t + 1:]]
            chosen = rng.sample(later, min(config.hindsight, len(later)))
            for goal in ([headed] if headed is not None else []) + chosen:
                if canonical(goal) not in allowed:
                    continue
                data["s"].append(idx("state", states[t], goal))
                data["a"].append(idx("action", action, goal))
                data["s2"].append(idx("state", states[t + 1], goal))
                data["g"].append(idx("goal", goal, goal))
                data["done"].append(task.satisfies(states[t + 1], goal, problem))
        for state in states:
            if canonical(goal := task.as_goal(state)) in allowed:
                data["at_goal"].append((idx("state", state, goal), idx("goal", goal, goal)))
    return Dataset(texts=list(ids), items=items, **data)


def _torch():
    try:
        import torch
    except ImportError:
        raise RuntimeError(f"training a critic needs torch, from the [train] extra: {TRAIN_EXTRA}") from None
    return torch


def build_net(dim: int, config: CriticConfig):
    """The torch critic: a shared projection of standardised text features, then the Q and V heads."""
    torch = _torch()
    nn = torch.nn
    p, h = config.projection, config.hidden

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(dim, p)
            self.q = nn.Sequential(nn.Linear(5 * p, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, 1))
            self.v = nn.Sequential(nn.Linear(3 * p, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, 1))

        def q_of(self, s, a, g):
            zs, za, zg = self.proj(s), self.proj(a), self.proj(g)
            return self.q(torch.cat([zs, za, zg, zs * zg, zs * za], dim=1))[:, 0]

        def v_of(self, s, g):
            zs, zg = self.proj(s), self.proj(g)
            return self.v(torch.cat([zs, zg, zs * zg], dim=1))[:, 0]

    return Net()


def export(net: Any, mean: np.ndarray, std: np.ndarray) -> CriticWeights:
    def linear(layer: Any) -> tuple[np.ndarray, np.ndarray]:
        return layer.weight.detach().numpy().copy(), layer.bias.detach().numpy().copy()

    def head(seq: Any) -> list[tuple[np.ndarray, np.ndarray]]:
        return [linear(m) for m in seq if hasattr(m, "weight")]

    return CriticWeights(mean=mean.astype(np.float32), std=std.astype(np.float32), proj=linear(net.proj),
                         q=head(net.q), v=head(net.v))


def fit(data: Dataset, features: np.ndarray, config: CriticConfig, *, horizon: float,
        log: Any = None) -> tuple[CriticWeights, Any, dict[str, float]]:
    """IQL on the relabelled transitions; returns the numpy weights, the torch net and the final losses."""
    torch = _torch()
    torch.manual_seed(config.seed)
    mean, std = features.mean(axis=0), features.std(axis=0)
    std = np.where(std > 1e-6, std, 1.0)  # a feature constant in training (an unused slot) passes unscaled
    x = torch.tensor((features - mean) / std, dtype=torch.float32)
    net = build_net(features.shape[1], config)
    target = build_net(features.shape[1], config)
    target.load_state_dict(net.state_dict())
    opt = torch.optim.Adam(net.parameters(), lr=config.learning_rate)
    s, a, s2, g = (torch.tensor(getattr(data, k)) for k in ("s", "a", "s2", "g"))
    done = torch.tensor(data.done, dtype=torch.float32)
    at_goal = torch.tensor(data.at_goal or [(0, 0)])
    gen = torch.Generator().manual_seed(config.seed)
    losses: dict[str, float] = {}
    for step in range(config.steps):
        b = torch.randint(len(s), (config.batch_size,), generator=gen)
        xs, xa, xs2, xg = x[s[b]], x[a[b]], x[s2[b]], x[g[b]]
        with torch.no_grad():
            v_next = net.v_of(xs2, xg).clamp(-horizon, 0.0)
            q_target = -1.0 + (1.0 - done[b]) * v_next
            q_slow = target.q_of(xs, xa, xg)
        q_loss = ((net.q_of(xs, xa, xg) - q_target) ** 2).mean()
        diff = q_slow - net.v_of(xs, xg)
        weight = torch.abs(config.expectile - (diff < 0).float())
        v_loss = (weight * diff ** 2).mean()
        gb = at_goal[torch.randint(len(at_goal), (config.batch_size // 4,), generator=gen)]
        goal_loss = (net.v_of(x[gb[:, 0]], x[gb[:, 1]]) ** 2).mean() if data.at_goal else torch.zeros(())
        loss = q_loss + v_loss + goal_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            for pt, pn in zip(target.parameters(), net.parameters(), strict=True):
                pt.mul_(1 - config.polyak).add_(config.polyak * pn)
        losses = {"q": q_loss.item(), "v": v_loss.item(), "goal": goal_loss.item()}
        if log and (step + 1) % max(1, config.steps // 10) == 0:
            log(f"step {step + 1}/{config.steps}  " + "  ".join(f"{k} {v:.3f}" for k, v in losses.items()))
    return export(net, mean, std), net, losses


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks with ties averaged (for Spearman's rho)."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x))
    for value in np.unique(x):
        tied = x == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    rx, ry = _ranks(np.asarray(x, dtype=float)), _ranks(np.asarray(y, dtype=float))
    if rx.std() == 0 or ry.std() == 0:
        return 0.0
    return float(np.corrcoef(rx, ry)[0, 1])


def ranking_metrics(critic: Critic, task: Task, problem: Problem, pairs: list[tuple[BaseModel, BaseModel]],
                    distance: Distances | None = None) -> dict[str, float]:
    """How well the critic ranks, against the true distances, on (state, goal) pairs:

    * ``top1``: the action with the highest Q is optimal (pairs whose state is not the goal); ``chance``: the
      same for a uniformly random legal action;
    * ``spearman``: rank correlation of -V(s, g) with the true distance; ``mae``: mean |round(-V) - d|.
    """
    distance = distance or Distances(task, problem)
    hits, chance, true, est = [], [], [], []
    values = critic.values([s for s, _ in pairs], [g for _, g in pairs])
    for (state, goal), value in zip(pairs, values, strict=True):
        d = distance(state, goal)
        if not math.isfinite(d):
            continue
        true.append(d)
        est.append(-float(value))
        legal = task.legal_actions(state, problem)
        if d == 0 or not legal:
            continue
        good = [distance(task.apply(state, a, problem), goal) == d - 1 for a in legal]
        q = critic.q_values(state, legal, goal)
        hits.append(good[int(np.argmax(q))])
        chance.append(sum(good) / len(good))
    return {"pairs": len(true), "top1": float(np.mean(hits)) if hits else math.nan,
            "chance": float(np.mean(chance)) if chance else math.nan, "spearman": spearman(est, true),
            "mae": float(np.mean(np.abs(np.clip(np.round(est), 0, None) - np.asarray(true))))}


def train_critic(task: Task, problems: Sequence[Problem], config: CriticConfig, *, embedder: Embedder | None = None,
                 log: Any = None) -> tuple[Critic, dict[str, Any], Any]:
    """Generate data from ``problems``, train, and return the critic, its card (data, settings, losses, held-out
    goals) and the torch net."""
    featurizer = make_features(task, config.features, embedder)
    rng = random.Random(config.seed)
    states: list[BaseModel] = []
    world_of: dict[str, int] = {}  # a state's and its goal's key -> the first problem that reaches it: its world
    for i, p in enumerate(problems):
        for state in reachable_states(task, p):
            if canonical(state) not in world_of:
                states.append(state)
                world_of[canonical(state)] = world_of[canonical(task.as_goal(state))] = i
    train_goals, held_goals = split_goals(task, problems, states, config.heldout_goals, config.seed)
    trajs: list[Trajectory] = []
    for i in dict.fromkeys(world_of.values()):  # start and goal from one world: another's is unreachable
        mine = [s for s in states if world_of[canonical(s)] == i]
        goals = [g for g in train_goals if world_of[canonical(g)] == i]
        trajs += trajectories(task, problems[i], mine, goals, config, rng)
    data = relabel(task, problems[0], trajs, train_goals, config, rng, featurizer)
    started = time.perf_counter()
    features = featurizer(data.items)
    feature_seconds = time.perf_counter() - started
    horizon = float(max(len(actions) for _, actions, _ in trajs) or 1)
    started = time.perf_counter()
    weights, net, losses = fit(data, features, config, horizon=horizon, log=log)
    sizes = sorted({n for p in problems if (n := task.size(p)) is not None})
    card = {
        "task": task.name,
        "features": {"kind": featurizer.kind, "what": FEATURES[featurizer.kind], "dim": int(features.shape[1])},
        "data": {"problems": [p.id for p in problems], "sizes": sizes, "states": len(states),
                 "trajectories": len(trajs), "transitions": len(data.s), "rows": len(data.texts),
                 "train_goals": len(train_goals), "heldout_goals": [task.render_goal(g) for g in held_goals]},
        "config": config.model_dump(),
        "horizon": horizon,
        "losses": losses,
        "seconds": {"features": round(feature_seconds, 1), "training": round(time.perf_counter() - started, 1)},
        "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}, "
                   f"torch {_torch().__version__} ({_torch().get_num_threads()} thread)",
    }
    return Critic(task, weights, embedder, card), card, net


def evaluate_hanoi(critic: Critic, task: Task, heldout_goal_texts: list[str], seed: int = 0) -> dict[str, Any]:
    """The Hanoi critic's ranking quality: three-disk training goals, three-disk held-out goals, and four-disk
    states (never seen) with the four-disk final goal and five random four-disk goals."""
    three, four = task.problems("all3"), task.problems("test4")
    states3 = reachable_states(task, three[0])
    goals3 = [task.as_goal(s) for s in states3]
    held = [g for g in goals3 if task.render_goal(g) in heldout_goal_texts]
    trained = [g for g in goals3 if task.render_goal(g) not in heldout_goal_texts]
    states4 = reachable_states(task, four[0])
    rng = random.Random(seed)
    goals4 = [task.goal(four[0]), *(task.as_goal(s) for s in rng.sample(states4, 5))]
    d3, d4 = Distances(task, three[0]), Distances(task, four[0])
    return {
        "train_goals_3disk": ranking_metrics(critic, task, three[0], [(s, g) for g in trained for s in states3], d3),
        "heldout_goals_3disk": ranking_metrics(critic, task, three[0], [(s, g) for g in held for s in states3], d3),
        "heldout_states_4disk_final_goal": ranking_metrics(critic, task, four[0],
                                                           [(s, goals4[0]) for s in states4], d4),
        "heldout_states_4disk_random_goals": ranking_metrics(critic, task, four[0],
                                                             [(s, g) for g in goals4[1:] for s in states4], d4),
    }


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``map-agent train-critic``'s arguments: CriticConfig's fields, with the shared --out and --seed."""
    from map_agent.options import add_options

    p.add_argument("task")
    p.add_argument("--split", required=True, help="problems whose reachable states make the training data; several "
                                                  "splits separated by commas (e.g. world2,all3,world5)")
    for name, field in CriticConfig.model_fields.items():
        if name != "seed":
            choices = get_args(field.annotation) or None
            p.add_argument(f"--{name.replace('_', '-')}", type=type(field.default), default=field.default,
                           choices=choices, help=field.description)
    add_options(p, "out", "seed", defaults={"out": None, "seed": CriticConfig.model_fields["seed"].default})


def cli_run(args: argparse.Namespace) -> int:
    """``map-agent train-critic``: weights (.npz at --out) and a JSON card beside them."""
    if args.out is None:
        raise ValueError("--out: name the weights file (.npz); the card goes beside it (.json)")
    out = Path(args.out)
    torch = _torch()
    torch.set_num_threads(1)
    task = get_task(args.task)
    config = CriticConfig(**{k: getattr(args, k) for k in CriticConfig.model_fields})
    problems = [p for split in args.split.split(",") for p in task.problems(split.strip())]
    critic, card, _ = train_critic(task, problems, config, log=lambda line: print(line, file=sys.stderr, flush=True))
    card["data"]["split"] = args.split
    if task.name == "hanoi":
        card["metrics"] = evaluate_hanoi(critic, task, card["data"]["heldout_goals"], config.seed)
        # the sizes the metrics measure that training never saw (their states, not only their goals)
        card["data"]["heldout_sizes"] = [n for n in (3, 4) if n not in card["data"]["sizes"]]
    out.parent.mkdir(parents=True, exist_ok=True)
    critic.weights.save(out)
    out.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(card.get("metrics", card["losses"]), indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m map_agent.learned.critic_train``: the same as ``map-agent train-critic``."""
    from map_agent.cli import main as cli_main

    return cli_main(["train-critic", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
