"""Finite Markov decision processes and value iteration (the paper's section II.B).

An MDP ``<S, A, T, R, gamma>`` is stored as one sparse matrix per action, ``T[a][s, s'] = P(s' | s, a)``, and
a dense expected-reward table ``R[a, s]``. Stacking the action matrices into one ``(|A|*|S|) x |S|`` CSR
matrix turns a Bellman backup over every state and action into a single sparse matrix-vector product, which is
what makes the solver fast on mazes with thousands of cells (``bench/bench_value_iteration.py`` measures it
against the plain Python loop, :func:`value_iteration_reference`).

>>> import numpy as np
>>> # two states; action 0 moves 0 -> 1 with reward 1, state 1 is absorbing
>>> mdp = MDP.from_dense(np.array([[[0, 1], [0, 1]]]), np.array([[1.0, 0.0]]), gamma=0.9)
>>> result = value_iteration(mdp)
>>> result.values.round(6).tolist()
[1.0, 0.0]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # scipy takes a third of a second to import: only an MDP that is built needs it
    from scipy import sparse

#: two values closer than this are treated as a tie by the greedy policy (first action in order wins)
TIE_TOLERANCE = 1e-12


@dataclass(frozen=True)
class MDP:
    """A finite MDP with ``n_states`` states and ``n_actions`` actions.

    ``transitions[a]`` is an ``n_states x n_states`` row-stochastic sparse matrix; ``rewards[a, s]`` is the
    expected immediate reward of taking ``a`` in ``s``. Terminal (absorbing) states are modelled as self-loops
    with zero reward, so no special case is needed in the backup.
    """

    transitions: tuple[sparse.csr_matrix, ...]
    rewards: np.ndarray
    gamma: float
    stacked: sparse.csr_matrix = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        from scipy import sparse

        if not self.transitions:
            raise ValueError("MDP: at least one action is needed")
        n = self.transitions[0].shape[0]
        for a, t in enumerate(self.transitions):
            if t.shape != (n, n):
                raise ValueError(f"MDP: transitions[{a}] has shape {t.shape}, expected ({n}, {n})")
            rows = np.asarray(t.sum(axis=1)).ravel()
            bad = np.flatnonzero(np.abs(rows - 1.0) > 1e-9)
            if bad.size:
                raise ValueError(f"MDP: transitions[{a}] row {bad[0]} sums to {rows[bad[0]]:.6g}, not 1")
            if t.nnz and not np.isfinite(t.data).all():
                raise ValueError(f"MDP: transitions[{a}] has a probability that is not a finite number")
            if t.nnz and t.data.min() < 0:
                raise ValueError(f"MDP: transitions[{a}] has a negative probability")
        if self.rewards.shape != (len(self.transitions), n):
            expected = (len(self.transitions), n)
            raise ValueError(f"MDP: rewards has shape {self.rewards.shape}, expected {expected}")
        if not np.isfinite(self.rewards).all():
            raise ValueError("MDP: rewards must be finite numbers")
        if not 0.0 <= self.gamma < 1.0:
            raise ValueError(f"MDP: discount gamma={self.gamma} must lie in [0, 1) for value iteration to "
                             "converge")
        object.__setattr__(self, "stacked", sparse.vstack(self.transitions, format="csr"))

    @property
    def n_states(self) -> int:
        return self.transitions[0].shape[0]

    @property
    def n_actions(self) -> int:
        return len(self.transitions)

    @classmethod
    def from_dense(cls, transitions: np.ndarray, rewards: np.ndarray, gamma: float) -> MDP:
        """Build from a dense ``(A, S, S)`` transition array and an ``(A, S)`` reward array."""
        from scipy import sparse

        t = np.asarray(transitions, dtype=float)
        if t.ndim != 3:
            raise ValueError(f"MDP: dense transitions must have shape (A, S, S), got {t.shape}")
        return cls(tuple(sparse.csr_matrix(t[a]) for a in range(t.shape[0])),
                   np.asarray(rewards, dtype=float), gamma)


@dataclass(frozen=True)
class VIResult:
    """Optimal values ``V*``, action values ``Q*[a, s]`` and how the iteration ended."""

    values: np.ndarray
    q: np.ndarray
    iterations: int
    converged: bool
    residual: float


def q_values(mdp: MDP, values: np.ndarray) -> np.ndarray:
    """One Bellman backup for every (action, state): ``R[a, s] + gamma * sum_s' T[a][s, s'] V(s')``."""
    return mdp.rewards + mdp.gamma * (mdp.stacked @ values).reshape(mdp.n_actions, mdp.n_states)


def value_iteration(mdp: MDP, tol: float = 1e-10, max_iter: int = 100_000,
                    initial: np.ndarray | None = None) -> VIResult:
    """Vectorised value iteration: ``V <- max_a Q(V)`` over all states at once until ``max|dV| <= tol``.

    ``tol`` bounds the last change of any value (the sup-norm residual); the error to ``V*`` is then at most
    ``tol * gamma / (1 - gamma)``. ``max_iter`` caps the loop; ``converged`` says whether the tolerance was
    met.
    """
    values = np.zeros(mdp.n_states) if initial is None else np.asarray(initial, dtype=float).copy()
    residual = float("inf")
    for iteration in range(1, max_iter + 1):
        q = q_values(mdp, values)
        new = q.max(axis=0)
        residual = float(np.max(np.abs(new - values))) if new.size else 0.0
        values = new
        if residual <= tol:
            return VIResult(values, q_values(mdp, values), iteration, True, residual)
    return VIResult(values, q_values(mdp, values), max_iter, False, residual)


def greedy_policy(mdp: MDP, values: np.ndarray) -> np.ndarray:
    """``pi(s) = argmax_a Q(s, a)``; among actions within ``TIE_TOLERANCE`` of the best, the lowest index
    wins.

    Breaking ties by action order (not by floating-point noise) keeps the policy, and every path derived from
    it, deterministic across machines.
    """
    q = q_values(mdp, values)
    best = q.max(axis=0)
    return np.argmax(q >= best - TIE_TOLERANCE * np.maximum(1.0, np.abs(best)), axis=0)


def rollout(mdp: MDP, policy: Sequence[int] | np.ndarray, start: int, max_steps: int,
            terminal: Sequence[int] = (), rng: np.random.Generator | None = None) -> list[int]:
    """The states visited by following ``policy`` from ``start`` for at most ``max_steps`` steps.

    Stops on entering a state in ``terminal``. Without ``rng`` each step takes the most likely successor
    (exact for deterministic MDPs); with ``rng`` successors are sampled from ``T``.
    """
    stop = set(terminal)
    states = [start]
    s = start
    for _ in range(max_steps):
        if s in stop:
            break
        row = mdp.transitions[int(policy[s])].getrow(s)
        if rng is None:
            s = int(row.indices[np.argmax(row.data)])
        else:
            s = int(rng.choice(row.indices, p=row.data / row.data.sum()))
        states.append(s)
    return states


def value_iteration_reference(mdp: MDP, tol: float = 1e-10, max_iter: int = 100_000) -> list[float]:
    """Plain-Python value iteration over dict-of-successor lists: the textbook loop the vectorised solver must
    match.

    Kept as the yardstick for tests and the benchmark; it visits every (state, action, successor) in Python.
    """
    n, gamma = mdp.n_states, mdp.gamma
    successors: list[list[list[tuple[int, float]]]] = []
    for t in mdp.transitions:
        csr = t.tocsr()
        successors.append([list(zip(csr.indices[csr.indptr[s]:csr.indptr[s + 1]].tolist(),
                                    csr.data[csr.indptr[s]:csr.indptr[s + 1]].tolist(), strict=True))
                           for s in range(n)])
    rewards = mdp.rewards.tolist()
    values = [0.0] * n
    for _ in range(max_iter):
        new = [max(rewards[a][s] + gamma * sum(p * values[s2] for s2, p in successors[a][s])
                   for a in range(mdp.n_actions)) for s in range(n)]
        residual = max((abs(x - y) for x, y in zip(new, values, strict=True)), default=0.0)
        values = new
        if residual <= tol:
            break
    return values
