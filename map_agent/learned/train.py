"""LoRA fine-tuning of the embedded model on distilled module examples, and export to a llama.cpp adapter:
``map-agent train`` (optional extra ``[train]``: CPU torch, transformers, peft, gguf).

The pipeline, each step chosen from what was measured on a 2-core CPU:

1. the base model is the GGUF the package already ships (SmolLM2-135M-Instruct), dequantised by transformers;
   ``save_pretrained`` refuses a GGUF-loaded model, so a copy built with ``from_config`` + ``load_state_dict``
   (identical logits) is saved as the converter's ``--base`` folder -- nothing is downloaded from a hub;
2. multi-task SFT over every module and task in the data, loss on the reply only, LoRA on all projections;
   a checkpoint (adapter, optimiser, step, data order) every ``save_every`` steps makes it resumable;
3. llama.cpp's own ``convert_lora_to_gguf.py`` -- from the llama-cpp-python source distribution of the *installed*
   version, so the adapter format matches the runtime -- writes an f16 GGUF adapter that llama.cpp applies on the
   shipped Q4_1 base. (Merging and re-quantising to Q4_1 was measured to destroy the gains: keep the adapter.)
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from map_agent.llm.backends import embedded_model_path

TRAIN_EXTRA = "pip install 'map-agent[train]' (CPU torch: pip install torch==2.13.0 first)"


class TrainConfig(BaseModel):
    """What a training run is; stored beside its checkpoints and its adapter."""

    data: list[str] = Field(description="distilled data folders (their train/*.jsonl are used)")
    modules: list[str] | None = Field(default=None, description="only these modules (default: all in the data)")
    steps: int = Field(default=200, ge=1)
    batch_size: int = Field(default=16, ge=1)
    learning_rate: float = Field(default=5e-4, gt=0)
    rank: int = Field(default=16, ge=1)
    alpha: int = Field(default=32, ge=1)
    max_tokens: int = Field(default=384, ge=32, description="examples longer than this are dropped")
    seed: int = 0
    threads: int = Field(default=1, ge=1, description="torch threads")
    save_every: int = Field(default=25, ge=1)


def _require_train_extra() -> Any:
    try:
        import peft  # noqa: F401
        import torch
        import transformers  # noqa: F401
    except ImportError as e:
        raise RuntimeError(f"training needs the [train] extra ({e.name} is missing): {TRAIN_EXTRA}") from None
    return torch


def load_base(gguf: Path | None = None):
    """The embedded model and tokenizer in transformers, from the shipped GGUF (dequantised to float32)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = gguf or embedded_model_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype="float32")
    return model, tokenizer


def save_base(model, tokenizer, folder: Path) -> Path:
    """A plain Hugging Face folder of the base model (the converter's ``--base``); reused when present."""
    from transformers import AutoModelForCausalLM

    if (folder / "config.json").exists():
        return folder
    fresh = AutoModelForCausalLM.from_config(model.config)
    fresh.load_state_dict(model.state_dict())
    fresh.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    # the weights saved are plain float32: the GGUF origin's quantisation note would stop the converter
    config = json.loads((folder / "config.json").read_text())
    config.pop("quantization_config", None)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return folder


def read_examples(folders: list[str], modules: list[str] | None, part: str = "train") -> list[dict[str, Any]]:
    examples = []
    for folder in folders:
        files = sorted(Path(folder, part).glob("*.jsonl"))
        if not files:
            raise FileNotFoundError(f"{folder}/{part}: no distilled examples (run `map-agent distill` first)")
        for file in files:
            if modules and file.stem not in modules:
                continue
            for i, line in enumerate(file.read_text(encoding="utf-8").splitlines()):
                try:
                    ex = json.loads(line)
                    ex["messages"][-1]["content"]  # noqa: B018 -- shape check
                except (json.JSONDecodeError, KeyError, IndexError, TypeError):
                    raise ValueError(f"{file}:{i + 1}: not a distilled chat example") from None
                examples.append(ex)
    return examples


def encode(tokenizer, messages: list[dict[str, str]], max_tokens: int) -> tuple[list[int], list[int]] | None:
    """Token ids and labels of one example; only the reply (and its end token) is learnt."""
    prompt = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=False)
    full = prompt + messages[-1]["content"] + tokenizer.eos_token
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    ids = tokenizer(full, add_special_tokens=False)["input_ids"]
    if len(ids) > max_tokens:
        return None
    return ids, [-100] * len(prompt_ids) + ids[len(prompt_ids):]


def train(config: TrainConfig, out: Path, *, progress: bool = True) -> dict[str, Any]:
    """Train (or resume) a LoRA adapter in ``out``; returns the run's summary (also ``out/train.json``)."""
    torch = _require_train_extra()
    from peft import LoraConfig, PeftModel, get_peft_model

    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    out.mkdir(parents=True, exist_ok=True)
    pinned = out / "train_config.json"
    if pinned.exists() and json.loads(pinned.read_text()) != config.model_dump():
        raise ValueError(f"{out}: holds a run with another configuration; use another --out")
    pinned.write_text(config.model_dump_json(indent=2))

    model, tokenizer = load_base()
    save_base(model, tokenizer, out / "base")
    data = [e for e in (encode(tokenizer, ex["messages"], config.max_tokens)
                        for ex in read_examples(config.data, config.modules)) if e]
    if not data:
        raise ValueError(f"no training example fits in {config.max_tokens} tokens")
    checkpoint = out / "checkpoint"
    if (checkpoint / "adapter_config.json").exists():
        model = PeftModel.from_pretrained(model, checkpoint, is_trainable=True)
        state = torch.load(checkpoint / "trainer.pt", weights_only=False)
    else:
        lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=0.0, task_type="CAUSAL_LM",
                          target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                          "down_proj"])
        model = get_peft_model(model, lora)
        state = {"step": 0, "losses": [], "optimizer": None, "seconds": 0.0}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate)
    if state["optimizer"]:
        optimizer.load_state_dict(state["optimizer"])
    order = random.Random(config.seed)
    batches = [order.sample(range(len(data)), min(config.batch_size, len(data))) for _ in range(config.steps)]
    model.train()
    with _progress(config.steps, state["step"], progress) as bar:
        _steps(config, model, tokenizer, optimizer, data, batches, state, checkpoint, bar, torch)
    summary = {"steps": state["step"], "examples": len(data), "seconds": round(state["seconds"], 1),
               "first_loss": state["losses"][0] if state["losses"] else None,
               "last_loss": sum(state["losses"][-10:]) / max(1, len(state["losses"][-10:]))}
    (out / "train.json").write_text(json.dumps(summary, indent=2))
    return summary


def _steps(config: TrainConfig, model: Any, tokenizer: Any, optimizer: Any, data: list, batches: list,
           state: dict[str, Any], checkpoint: Path, bar: Callable[..., None], torch: Any) -> None:
    """The training steps from ``state["step"]`` on, checkpointing every ``save_every``."""
    started = time.perf_counter()
    for step in range(state["step"], config.steps):
        batch = [data[i] for i in batches[step]]
        width = max(len(ids) for ids, _ in batch)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        ids = torch.tensor([x + [pad] * (width - len(x)) for x, _ in batch])
        labels = torch.tensor([y + [-100] * (width - len(y)) for _, y in batch])
        mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x, _ in batch])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        state["losses"].append(float(loss.detach()))
        state["step"] = step + 1
        bar(loss=float(loss))
        if state["step"] % config.save_every == 0 or state["step"] == config.steps:
            state["seconds"] += time.perf_counter() - started
            started = time.perf_counter()
            model.save_pretrained(checkpoint)
            torch.save({**state, "optimizer": optimizer.state_dict()}, checkpoint / "trainer.pt")


@contextmanager
def _progress(total: int, done: int, show: bool) -> Iterator[Callable[..., None]]:
    """The shared progress display (``map_agent.progress``) on the LoRA steps, with the last loss."""
    if not show:
        yield lambda **_: None
        return
    from map_agent.progress import progress

    with progress("LoRA steps", total) as display:
        line = display.lines[0]
        line.update(completed=done)
        yield lambda **fields: line.advance(note="  ".join(f"{k} {v:.3f}" for k, v in fields.items()))


def converter(cache: Path) -> Path:
    """llama.cpp's ``convert_lora_to_gguf.py`` from the source distribution of the installed llama-cpp-python
    (downloaded once from PyPI by ``pip download``, then cached): the adapter format follows the runtime."""
    from importlib.metadata import version

    installed = version("llama_cpp_python")
    root = cache / f"llama-cpp-python-{installed}"
    script = root / "vendor" / "llama.cpp" / "convert_lora_to_gguf.py"
    if script.exists():
        return script
    cache.mkdir(parents=True, exist_ok=True)
    if not list(cache.glob(f"llama_cpp_python-{installed}.tar.gz")):
        subprocess.run([sys.executable, "-m", "pip", "download", f"llama-cpp-python=={installed}", "--no-deps",
                        "--no-binary", ":all:", "-d", str(cache), "-q"], check=True)
    archive = next(cache.glob(f"llama_cpp_python-{installed}.tar.gz"))
    wanted = ("vendor/llama.cpp/convert_", "vendor/llama.cpp/conversion/", "vendor/llama.cpp/gguf-py/")
    with tarfile.open(archive) as tar:
        members = []
        for m in tar.getmembers():
            rel = m.name.split("/", 1)[-1]
            if rel.startswith(wanted) and m.isfile():
                m.name = rel
                members.append(m)
        tar.extractall(root, members=members, filter="data")
    archive.unlink()
    return script


def export(out: Path, cache: Path, adapter: Path | None = None) -> Path:
    """The trained adapter as an f16 GGUF LoRA for llama.cpp (``--lora``)."""
    script = converter(cache)
    adapter = adapter or out / "adapter.gguf"
    env_path = str(script.parent / "gguf-py")
    subprocess.run([sys.executable, str(script), "--base", str(out / "base"), "--outfile", str(adapter),
                    "--outtype", "f16", str(out / "checkpoint")], check=True,
                   env={**os.environ, "PYTHONPATH": env_path + ":" + str(script.parent),
                        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    return adapter
