"""LoRA adapters shipped with the package, selectable by name: ``--backend local --model map-hanoi``.

Each adapter is an f16 GGUF LoRA for the embedded SmolLM2-135M (applied by llama.cpp on the shipped Q4_1 base)
with a JSON card beside it: the data, steps, seed and measured accuracies, and the prompt variant it was trained
on (``MAPConfig.prompts``), which a run with it must use.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FOLDER = Path(__file__).parent
#: name -> adapter file in this folder (its card is the same name with .json)
ADAPTERS: dict[str, str] = {"map-hanoi": "map-hanoi.gguf"}


def adapter_path(name: str) -> Path:
    """The GGUF file of a shipped adapter (``KeyError`` naming the known ones)."""
    try:
        path = FOLDER / ADAPTERS[name]
    except KeyError:
        raise KeyError(f"no shipped adapter {name!r}; known: {', '.join(sorted(ADAPTERS))}") from None
    if not path.is_file():
        raise FileNotFoundError(f"adapter {name!r}: {path} is missing from this installation")
    return path


def adapter_config(name: str, config: Any) -> Any:
    """``config`` (a ``MAPConfig``) with the settings the adapter was trained under (its card's ``config``: the
    short prompts, no move history) for every field the user did not set."""
    trained = card(name).get("config", {"prompts": "ft"})
    return config.model_copy(update={k: v for k, v in trained.items() if k not in config.model_fields_set})


def card(name: str) -> dict[str, Any]:
    """What the adapter was trained on and how it measured (its JSON card)."""
    return json.loads(adapter_path(name).with_suffix(".json").read_text(encoding="utf-8"))
