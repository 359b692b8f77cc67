"""Learned modules: what the oracles teach the embedded model, and a goal-conditioned critic.

* ``distill`` -- per-module chat examples labelled by a task's ground truth (``map-agent distill``);
* ``train``   -- LoRA fine-tuning of the embedded model on them and export to a GGUF adapter (``map-agent train``,
  the optional ``[train]`` extra);
* ``adapters``-- the adapters shipped with the package, selectable by name (``--model map-hanoi``).

Heavy imports (torch, transformers, peft) happen inside ``train`` only: the core install never needs them.
"""
