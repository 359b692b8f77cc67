"""Value iteration on hand-solved MDPs, and the vectorised solver against the plain-Python reference."""

import numpy as np
import pytest

from map_agent.tools.mdp import MDP, greedy_policy, rollout, value_iteration, value_iteration_reference


def chain() -> MDP:
    """0 -> 1 -> 2 (goal, absorbing); action 0 moves right, action 1 stays. Entering 2 pays 1."""
    right = np.array([[0, 1, 0], [0, 0, 1], [0, 0, 1]])
    stay = np.eye(3)
    rewards = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    return MDP.from_dense(np.stack([right, stay]), rewards, gamma=0.9)


def test_deterministic_chain_values_policy_and_rollout():
    result = value_iteration(chain())
    assert result.converged
    np.testing.assert_allclose(result.values, [0.9, 1.0, 0.0], atol=1e-9)
    policy = greedy_policy(chain(), result.values)
    assert policy[:2].tolist() == [0, 0]
    assert policy[2] == 0  # a tie at the absorbing goal: the first action wins
    assert rollout(chain(), policy, 0, max_steps=10, terminal=[2]) == [0, 1, 2]


def test_stochastic_mdp_matches_the_hand_solution():
    # state 0: "gamble" reaches terminal 1 w.p. 0.5 (reward 1) or stays; "safe" reaches 1 surely with reward 0.8
    gamble = np.array([[0.5, 0.5], [0.0, 1.0]])
    safe = np.array([[0.0, 1.0], [0.0, 1.0]])
    mdp = MDP.from_dense(np.stack([gamble, safe]), np.array([[0.5, 0.0], [0.8, 0.0]]), gamma=0.9)
    result = value_iteration(mdp, tol=1e-13)
    # V0 = 0.5 + 0.5 * 0.9 * V0  =>  V0 = 0.5 / 0.55
    assert result.values[0] == pytest.approx(0.5 / 0.55, abs=1e-10)
    assert greedy_policy(mdp, result.values)[0] == 0
    path = rollout(mdp, [0, 0], 0, max_steps=200, terminal=[1], rng=np.random.default_rng(0))
    assert path[-1] == 1 and set(path) <= {0, 1}


def test_vectorised_agrees_with_plain_python_on_random_stochastic_mdps():
    rng = np.random.default_rng(7)
    for _ in range(5):
        n, a = int(rng.integers(3, 15)), int(rng.integers(1, 5))
        t = rng.random((a, n, n)) * (rng.random((a, n, n)) < 0.4)
        t[:, np.arange(n), np.arange(n)] += 0.05
        t /= t.sum(axis=2, keepdims=True)
        mdp = MDP.from_dense(t, rng.normal(size=(a, n)), gamma=float(rng.uniform(0.5, 0.95)))
        np.testing.assert_allclose(value_iteration(mdp, tol=1e-12).values, value_iteration_reference(mdp, 1e-12),
                                   atol=1e-9)


def test_iteration_cap_is_reported():
    result = value_iteration(chain(), max_iter=1)
    assert not result.converged and result.iterations == 1


@pytest.mark.parametrize("transitions, rewards, gamma, message", [
    (np.array([[[0.5, 0.4], [0, 1]]]), np.zeros((1, 2)), 0.9, "row 0 sums to 0.9"),
    (np.array([[[0, 1], [0, 1]]]), np.zeros((2, 2)), 0.9, "rewards has shape"),
    (np.array([[[0, 1], [0, 1]]]), np.zeros((1, 2)), 1.0, "gamma=1.0"),
])
def test_invalid_mdp_is_rejected_with_a_reason(transitions, rewards, gamma, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        MDP.from_dense(transitions, rewards, gamma)
