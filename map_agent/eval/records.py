"""Append-only JSONL records, shared by every evaluation: no completed result is ever lost.

A record is written and flushed as soon as its problem is finished; a run killed mid-write leaves at most one
torn last line, which readers skip and writers never glue the next record onto.
"""

from __future__ import annotations

import json
import threading
from contextlib import nullcontext
from pathlib import Path
from typing import Any


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every record in a ``records.jsonl`` (none if it does not exist); a torn line is ignored."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def append_record(path: Path, record: dict[str, Any], lock: threading.Lock | None = None) -> None:
    """Append one record as a JSON line and flush it; ``lock`` serialises writers sharing the file."""
    line = json.dumps(record, default=str, ensure_ascii=False) + "\n"
    with lock or nullcontext(), path.open("a+b") as f:
        f.seek(0, 2)
        if f.tell() and (f.seek(-1, 2), f.read(1))[1] != b"\n":
            line = "\n" + line  # a killed run left a torn line: start on a fresh one
        f.write(line.encode())
        f.flush()
