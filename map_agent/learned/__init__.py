"""Learned modules: what the oracles teach the embedded model, and a goal-conditioned critic.

* ``distill`` -- per-module chat examples labelled by a task's ground truth (``map-agent distill``);
* ``train``   -- LoRA fine-tuning of the embedded model on them and export to a GGUF adapter (``map-agent train``,
  the optional ``[train]`` extra);
* ``adapters``-- the adapters shipped with the package, selectable by name (``--model map-hanoi``);
* ``critic``  -- a goal-conditioned value function over the embedded model's embeddings (IQL, ``critic_train``),
  used as the Evaluator (``--module Evaluator=learned``) or as the Actor's natural-language critic.

Heavy imports (torch, transformers, peft) happen inside ``train`` only: the core install never needs them.
"""
