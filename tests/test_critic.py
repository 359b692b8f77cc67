"""The learned critic (``map_agent.learned.critic``): IQL training learns distances, numpy inference equals the
torch model, the shipped Hanoi critic ranks held-out moves, and it plugs into MAP as the Evaluator and as the
Actor's natural-language critic."""

from __future__ import annotations

import json

import numpy as np
import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from map_agent.agent import MAPAgent
from map_agent.config import MAPConfig
from map_agent.learned.critic import FEATURES, critic_for, feature_kind, load_critic
from map_agent.learned.critic_train import (
    CriticConfig,
    Distances,
    ranking_metrics,
    reachable_states,
    split_goals,
    train_critic,
)
from map_agent.modules import LLM_MODULES, build_modules
from map_agent.modules.base import make_input
from map_agent.search.algorithms import propose_action
from map_agent.search.memo import Ctx, key
from map_agent.task import MODULES, Problem, get_task

HANOI = get_task("hanoi")
#: two disks: nine states, small enough to learn in seconds
TWO = Problem(task="hanoi", id="two-disks", start={"A": [0, 1], "B": [], "C": []},
              goal={"A": [], "B": [], "C": [0, 1]}, max_actions=6)


def char_embedder(texts):
    """A cheap injective text feature (one-hot character per position) standing in for llama.cpp in training."""
    out = np.zeros((len(texts), 40 * 16), dtype=np.float32)
    for i, text in enumerate(texts):
        for j, ch in enumerate(text[:40]):
            out[i, j * 16 + ord(ch) % 16] = 1.0
    return out


@pytest.fixture(scope="module")
def tiny():
    torch = pytest.importorskip("torch", reason="training needs the [train] extra")
    torch.set_num_threads(1)
    config = CriticConfig(oracle=60, noisy=30, walks=30, walk_length=6, steps=800, heldout_goals=0.0,
                          projection=16, hidden=64, batch_size=64, polyak=0.05, learning_rate=3e-3)
    return train_critic(HANOI, [TWO], config, embedder=char_embedder)


def test_a_tiny_iql_run_learns_the_distances(tiny):
    critic, card, _ = tiny
    states = reachable_states(HANOI, TWO)
    assert len(states) == 9 and card["data"]["transitions"] > 100
    pairs = [(s, HANOI.as_goal(g)) for s in states for g in states]
    m = ranking_metrics(critic, HANOI, TWO, pairs)
    assert m["spearman"] > 0.8 and m["mae"] < 0.5
    assert m["top1"] > m["chance"] + 0.15


def test_numpy_inference_equals_the_torch_model(tiny):
    import torch

    critic, _, net = tiny
    states = reachable_states(HANOI, TWO)
    state, goal = states[3], HANOI.as_goal(states[7])
    actions = HANOI.legal_actions(state, TWO)
    w = critic.weights

    def x(texts):
        return torch.tensor((char_embedder(texts) - w.mean) / w.std)

    n = len(actions)
    with torch.no_grad():
        q = net.q_of(x([HANOI.render_state(state)] * n), x([HANOI.render_action(a) for a in actions]),
                     x([HANOI.render_goal(goal)] * n)).numpy()
        v = net.v_of(x([HANOI.render_state(state)]), x([HANOI.render_goal(goal)])).numpy()
    np.testing.assert_allclose(critic.q_values(state, actions, goal), q, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(critic.values([state], [goal]), v, rtol=1e-4, atol=1e-4)


def test_held_out_goals_are_never_trained_and_the_final_goal_always_is():
    problems = HANOI.problems("all3")
    states = reachable_states(HANOI, problems[0])
    train, held = split_goals(HANOI, problems, states, 0.2, seed=0)
    assert len(held) == round(0.2 * 27) and len(train) + len(held) == 27
    assert HANOI.goal(problems[0]) in train and HANOI.goal(problems[0]) not in held


def test_the_shipped_critic_ranks_held_out_hanoi_moves_above_chance():
    critic = load_critic(HANOI)  # weights and card from the package, embeddings from the embedded GGUF
    assert critic.card["task"] == "hanoi" and critic.card["metrics"]
    three = HANOI.problem(7)
    states = reachable_states(HANOI, three)
    held = [HANOI.as_goal(s) for s in states if HANOI.render_goal(HANOI.as_goal(s))
            in critic.card["data"]["heldout_goals"]]
    assert held and HANOI.goal(three) not in held
    m = ranking_metrics(critic, HANOI, three, [(s, g) for g in held[:3] for s in states], Distances(HANOI, three))
    assert m["top1"] > m["chance"] and m["spearman"] > 0.4


def test_learned_evaluator_plans_a_hanoi_problem_end_to_end():
    problem = HANOI.problem(7)
    agent = MAPAgent(problem, backend="oracle", config=MAPConfig(modules={"Evaluator": "learned"}))
    assert agent.config.modules["Evaluator"] == "learned" and agent.config.modules["Actor"] == "oracle"
    result = agent.plan()
    assert result.solved and result.invalid_moves == 0
    values = [c for c in result.calls if c["module"] == "Evaluator"]
    assert values and all("learned critic" in c["output"]["reasoning"] for c in values)


def test_learned_is_the_evaluators_only_and_needs_a_shipped_critic():
    with pytest.raises(ValueError, match="no learned implementation"):
        MAPConfig(modules={"Actor": "learned"})
    maze = get_task("maze")
    problem = maze.problems(next(iter(maze.splits())))[0]
    config = MAPConfig(modules={"Evaluator": "learned"}).for_backend("oracle", maze).resolve(maze, problem)
    with pytest.raises(KeyError, match="no learned critic for 'maze'"):
        build_modules(maze, problem, config, None)


def test_the_critique_reaches_the_actors_prompt():
    problem = HANOI.problem(7)  # A=[0, 2], B=[1], C=[]
    state, goal = HANOI.start(problem), HANOI.goal(problem)
    draft = [HANOI.Action(disk=2, source="A", target="C"), HANOI.Action(disk=1, source="B", target="C")]
    config = MAPConfig(critic="learned", modules=dict.fromkeys(MODULES, "llm")).resolve(HANOI, problem)
    ctx = Ctx(task=HANOI, problem=problem, config=config,
              tables={"proposals": {key(state, goal, 0): {"actions": [a.model_dump() for a in draft]}}})
    assert propose_action(ctx, state, goal) is None  # waits for the Actor's revised proposal
    (job,) = ctx.jobs.values()
    notes = job.input["critique"]
    assert job.module == "Actor" and len(notes) == 2
    assert all(HANOI.render_action(a) in n and " looks " in n for a, n in zip(draft, notes, strict=True))
    actor = LLM_MODULES["Actor"](HANOI, problem, FakeListChatModel(responses=["{}"]))
    prompt = actor.render(make_input("Actor", HANOI, job.input))
    assert "critic" in prompt and notes[0] in prompt and notes[1] in prompt
    assert tuple(notes) == critic_for("hanoi").critique(state, goal, draft)


def test_critic_off_asks_the_actor_once_per_round():
    problem = HANOI.problem(7)
    state, goal = HANOI.start(problem), HANOI.goal(problem)
    draft = [HANOI.Action(disk=2, source="A", target="C"), HANOI.Action(disk=1, source="B", target="C")]
    config = MAPConfig(modules={**dict.fromkeys(MODULES, "llm"), "Monitor": "off"}).resolve(HANOI, problem)
    ctx = Ctx(task=HANOI, problem=problem, config=config,
              tables={"proposals": {key(state, goal, 0): {"actions": [a.model_dump() for a in draft]}}})
    assert propose_action(ctx, state, goal) == draft
    assert not ctx.jobs  # no critique round


# -- structural features: one layout for every size ------------------------------------------------------------
def test_structural_features_keep_one_layout_and_say_where_each_disk_is_and_should_be():
    goal = HANOI.State(A=[], B=[], C=[0, 1])
    row = HANOI.critic_features(HANOI.State(A=[0], B=[], C=[1]), goal)
    assert row[:16] == [1, 1, 0, 0, 0, 0, 1, 0,  # disk 0: present, on A, goal C, not there
                        1, 0, 0, 1, 0, 0, 1, 1]  # disk 1: present, on C, goal C, there
    assert not any(row[16:])  # numbers 2-9 absent
    worlds = [reachable_states(HANOI, HANOI.problems(split)[0]) for split in ("world2", "all3", "test4", "world5")]
    assert {len(HANOI.critic_features(s, HANOI.as_goal(w[-1]))) for w in worlds for s in w[:20]} == {len(row)}


def test_a_moves_row_is_the_change_it_makes_to_the_states_row():
    problem = HANOI.problem(30)  # four disks
    goal = HANOI.goal(problem)
    for state in reachable_states(HANOI, problem)[:30]:
        for move in HANOI.legal_actions(state, problem):
            after = HANOI.apply(state, move, problem)
            np.testing.assert_array_equal(
                np.add(HANOI.critic_features(state, goal), HANOI.critic_features(move, goal)),
                HANOI.critic_features(after, goal))


def test_a_structural_critic_trains_saves_and_loads_with_its_kind(tmp_path):
    torch = pytest.importorskip("torch", reason="training needs the [train] extra")
    torch.set_num_threads(1)
    config = CriticConfig(features="structural", oracle=60, noisy=30, walks=30, walk_length=6, steps=600,
                          heldout_goals=0.0, projection=16, hidden=64, batch_size=64, polyak=0.05)
    critic, card, _ = train_critic(HANOI, [TWO], config)
    assert card["features"]["kind"] == "structural" and card["data"]["sizes"] == [2]
    critic.weights.save(tmp_path / "c.npz")
    (tmp_path / "c.json").write_text(json.dumps(card))
    loaded = load_critic(HANOI, tmp_path / "c.npz")
    assert loaded.features.kind == "structural"
    states = reachable_states(HANOI, TWO)
    goals = [HANOI.as_goal(states[-1])] * len(states)
    np.testing.assert_allclose(loaded.values(states, goals), critic.values(states, goals), rtol=1e-5)
    m = ranking_metrics(critic, HANOI, TWO, [(s, HANOI.as_goal(g)) for s in states for g in states])
    assert m["mae"] < 0.5 and m["top1"] > m["chance"]


def test_a_card_without_a_feature_kind_is_an_embedding_critic():
    assert feature_kind({}) == "embedding" and feature_kind({"features": {"kind": "structural"}}) == "structural"


def test_the_shipped_card_names_its_features_sizes_and_split():
    card = load_critic(HANOI).card
    assert card["features"]["kind"] in FEATURES and card["features"]["dim"] > 0
    assert card["data"]["split"] and card["data"]["sizes"] and card["config"]["features"] == card["features"]["kind"]


def test_a_critic_reporting_held_out_sizes_never_trained_on_a_state_of_them():
    """Every training trajectory stays among the states its problems reach: none may have a held-out size."""
    card = load_critic(HANOI).card
    held = set(card["data"]["heldout_sizes"])
    assert 4 in held and any("4disk" in name for name in card["metrics"])
    trained = {len(s.disks()) for pid in card["data"]["problems"]
               for s in reachable_states(HANOI, HANOI.problem(pid))}
    assert trained == set(card["data"]["sizes"]) and not trained & held
