"""Model and LoRA adapter files checked before llama.cpp opens them.

llama.cpp trusts its input: a missing, empty, truncated or foreign file, or an adapter made for another model,
ends the whole process with a segmentation fault (exit 139) and no message. Everything it would trip on is checked
here with the ``gguf`` package (llama.cpp's own reader, in Python), and each problem is one ``SetupError`` line
naming the file.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from gguf import GGUFReader

from map_agent.llm.backends import SetupError

GGUF_MAGIC = b"GGUF"
LORA_SUFFIXES = (".lora_a", ".lora_b")


class GGUFHeader:
    """What the checks need of a GGUF file: its metadata and its tensors' shapes (llama.cpp's ``ne`` order).
    ``GGUFReader`` maps every tensor's bytes, so a file cut anywhere fails here."""

    def __init__(self, path: Path) -> None:
        reader = GGUFReader(path)
        self.fields = {name: _value(field) for name, field in reader.fields.items()
                       if name.startswith(("general.", "adapter."))}
        self.shapes = {t.name: tuple(int(n) for n in t.shape) for t in reader.tensors}

    @property
    def kind(self) -> str:
        return str(self.fields.get("general.type", "model"))

    @property
    def architecture(self) -> str | None:
        value = self.fields.get("general.architecture")
        return None if value is None else str(value)


def _value(field: object) -> object:
    try:
        return field.contents()  # type: ignore[attr-defined]
    except (ValueError, IndexError, TypeError):
        return None


def check_model_file(path: str | Path, what: str = "model") -> GGUFHeader:
    """The header of a GGUF file llama.cpp can open, else ``SetupError`` saying what is wrong with it."""
    path = Path(path)
    label = f"{what} {path}"
    if not path.exists():
        raise SetupError(f"{label}: no such file")
    if path.is_dir():
        raise SetupError(f"{label}: is a directory, not a GGUF file")
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise SetupError(f"{label}: cannot be read ({e.strerror or e})") from None
    stat = path.stat()
    size = stat.st_size
    if size == 0:
        raise SetupError(f"{label}: the file is empty")
    if magic != GGUF_MAGIC:
        raise SetupError(f"{label}: not a GGUF file (it starts with {magic!r}, a GGUF file with {GGUF_MAGIC!r})")
    header = _header(str(path.resolve()), size, stat.st_mtime_ns)
    if isinstance(header, str):
        raise SetupError(f"{label}: {header}")
    return header


@lru_cache(maxsize=16)
def _header(path: str, size: int, mtime_ns: int) -> GGUFHeader | str:
    """The parsed header, or why it does not parse; cached per file version (a base model's header takes a
    second or two: its vocabulary is tens of thousands of strings)."""
    try:
        return GGUFHeader(Path(path))
    except Exception as e:  # the reader fails on a corrupt file in many ways (ValueError, IndexError, ...)
        text = " ".join(str(e).split())[:200]
        return f"corrupt or truncated GGUF file ({type(e).__name__}: {text})"


def check_lora_file(adapter: str | Path, base: str | Path) -> None:
    """``adapter`` is a GGUF LoRA adapter that fits the base model ``base``, as llama.cpp checks when it applies
    one: the same architecture, and for every adapted tensor a base tensor of that name whose shape the
    low-rank pair matches. Else ``SetupError`` naming the adapter and the problem."""
    header = check_model_file(adapter, "LoRA adapter")
    label = f"LoRA adapter {adapter}"
    if header.kind != "adapter":
        raise SetupError(f"{label}: not a LoRA adapter (general.type is {header.kind!r}; a model goes in --model)")
    if str(header.fields.get("adapter.type", "lora")) != "lora":
        raise SetupError(f"{label}: an adapter of type {header.fields['adapter.type']!r}, not a LoRA adapter")
    base_header = check_model_file(base)
    if header.architecture != base_header.architecture:
        raise SetupError(f"{label}: made for a {header.architecture!r} model, but the base model {base} is "
                         f"{base_header.architecture!r}")
    pairs: dict[str, dict[str, tuple[int, ...]]] = {}
    for name, shape in header.shapes.items():
        if not name.endswith(LORA_SUFFIXES):
            raise SetupError(f"{label}: tensor {name} is not a lora_a/lora_b tensor")
        pairs.setdefault(name[:-len(".lora_a")], {})[name[-1]] = shape
    if not pairs:
        raise SetupError(f"{label}: holds no LoRA tensors")
    for name, pair in sorted(pairs.items()):
        weight = base_header.shapes.get(name)
        if weight is None:
            raise SetupError(f"{label}: adapts {name}, which the base model {Path(base).name} does not have "
                             "(an adapter for another model?)")
        a, b = pair.get("a"), pair.get("b")
        if a is None or b is None:
            raise SetupError(f"{label}: {name} has lora_{'b' if a else 'a'} without lora_{'a' if a else 'b'}")
        if len(a) < 2 or len(b) < 2 or len(weight) < 2 or a[1] != b[0] or a[0] != weight[0] or b[1] != weight[1]:
            raise SetupError(f"{label}: {name} shapes do not fit the base model {Path(base).name} (lora_a {a}, "
                             f"lora_b {b}, base {weight})")
