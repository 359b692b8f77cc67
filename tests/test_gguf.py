"""Bad model and adapter files end in one clear line, never in llama.cpp's segmentation fault (exit 139)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from map_agent.llm import make_chat_model
from map_agent.llm.backends import SetupError, embedded_model_path
from map_agent.llm.gguf_files import check_lora_file, check_model_file

pytest.importorskip("llama_cpp")
gguf = pytest.importorskip("gguf")

ROOT = Path(__file__).resolve().parents[1]
BASE = embedded_model_path()


def adapter(path: Path, arch: str = "llama", tensor: str = "blk.0.attn_q.weight", n_in: int = 576,
            n_out: int = 576, kind: str = "adapter") -> Path:
    """A LoRA adapter GGUF of rank 4 on one tensor (numpy shapes are llama.cpp's ``ne`` reversed)."""
    writer = gguf.GGUFWriter(str(path), arch=arch)
    writer.add_type(kind)
    writer.add_string("adapter.type", "lora")
    writer.add_tensor(f"{tensor}.lora_a", np.zeros((4, n_in), dtype=np.float32))
    writer.add_tensor(f"{tensor}.lora_b", np.zeros((n_out, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """name -> (file, what the error line says about it)."""
    d = tmp_path_factory.mktemp("bad-gguf")
    (d / "empty.gguf").write_bytes(b"")
    (d / "random.gguf").write_bytes(os.urandom(4096))
    data = BASE.read_bytes()
    (d / "header-cut.gguf").write_bytes(data[:100_000])  # the vocabulary is cut
    (d / "data-cut.gguf").write_bytes(data[: len(data) // 2])  # the header is whole, the tensors are not
    return {
        "missing": (d / "missing.gguf", "no such file"),
        "empty": (d / "empty.gguf", "the file is empty"),
        "random": (d / "random.gguf", "not a GGUF file"),
        "header-cut": (d / "header-cut.gguf", "corrupt or truncated GGUF file"),
        "data-cut": (d / "data-cut.gguf", "corrupt or truncated GGUF file"),
        "a base model": (BASE, "not a LoRA adapter (general.type is 'model'"),
        "another architecture": (adapter(d / "qwen.gguf", arch="qwen2"), "made for a 'qwen2' model"),
        "a tensor the base lacks": (adapter(d / "deep.gguf", tensor="blk.99.attn_q.weight"),
                                    "adapts blk.99.attn_q.weight, which the base model"),
        "a wrong shape": (adapter(d / "wide.gguf", n_in=1024), "shapes do not fit the base model"),
    }


ADAPTER_CASES = ["missing", "empty", "random", "header-cut", "data-cut", "a base model", "another architecture",
                 "a tensor the base lacks", "a wrong shape"]
MODEL_CASES = ["missing", "empty", "random", "header-cut", "data-cut"]


@pytest.mark.parametrize("case", ADAPTER_CASES)
def test_a_bad_lora_adapter_is_refused_by_make_chat_model(bad, case):
    path, says = bad[case]
    with pytest.raises(SetupError) as refused:
        make_chat_model("local", lora_path=str(path), cache=False, threads=1)
    assert str(refused.value).startswith(f"LoRA adapter {path}: ") and says in str(refused.value)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("case", MODEL_CASES)
def test_a_bad_model_file_is_refused_by_make_chat_model(bad, case):
    path, says = bad[case]
    with pytest.raises(SetupError, match=f"^model {re.escape(str(path))}: .*{re.escape(says)}"):
        make_chat_model("local", str(path), cache=False, threads=1)


def test_the_shipped_adapter_and_a_crafted_matching_one_pass(tmp_path):
    from map_agent.learned.adapters import adapter_path

    check_lora_file(adapter_path("map-hanoi"), BASE)
    check_lora_file(adapter(tmp_path / "fits.gguf"), BASE)
    assert check_model_file(BASE).architecture == "llama"


def test_map_agent_refuses_a_bad_lora_before_loading(bad):
    from map_agent import MAPAgent
    from map_agent.tasks import hanoi

    path, says = bad["a base model"]
    with pytest.raises(SetupError, match=re.escape(says)):
        MAPAgent(hanoi.problem(7), backend="local", lora=str(path))


def plan_with(option: str, path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "map_agent.cli", "plan", "hanoi", "--problem", "7", "--backend",
                           "local", option, str(path)], capture_output=True, text=True, timeout=120, cwd=ROOT)


def one_error_line(run: subprocess.CompletedProcess) -> str:
    """The run failed with exit 2 and one ``error:`` line, its last (a progress line may come before it)."""
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2, (run.returncode, run.stderr[-2000:])
    assert [line for line in lines if line.startswith("error:")] == lines[-1:], run.stderr[-2000:]
    return lines[-1]


@pytest.mark.parametrize("case", ["missing", "random", "data-cut", "a tensor the base lacks"])
def test_the_cli_exits_2_with_one_line_naming_the_adapter(bad, case):
    path, says = bad[case]
    line = one_error_line(plan_with("--lora", path))
    assert f"LoRA adapter {path}: " in line and says in line


def test_the_cli_refuses_a_bad_model_file_too(bad):
    path, says = bad["header-cut"]
    assert f"model {path}: {says}" in one_error_line(plan_with("--model", path))
