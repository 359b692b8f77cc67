"""Append-only JSONL records, shared by every evaluation: no completed result is ever lost.

A record is written and flushed as soon as its problem is finished; a run killed mid-write leaves at most one
torn last line, which readers skip and writers never glue the next record onto.
"""

from __future__ import annotations

import fcntl
import json
import threading
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from map_agent.files import FileError, validation_message


class RecordError(FileError):
    """A line that is JSON but not a record of this run (edited by hand, or from another run): it would skew the
    summary, so reading stops there, naming the file, the line and the field."""


class _Counts(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    n_actions: int = 0
    n_invalid: int = 0


class RecordCheck(BaseModel):
    """What ``summarise`` (and every reader of an evaluation's records: resume, report, view) relies on in a record,
    checked strictly (``solved: "no"`` is not false); the problem id must be one of the run's
    (``context={"problem_ids": ..., "runs": ...}``)."""

    model_config = ConfigDict(extra="allow", strict=True)

    problem_id: str
    run: int = Field(ge=0)
    solved: bool = False
    goal_reached: bool = False
    error: str | None = None
    ended_by: Literal["model", "environment", "infrastructure"] | None = None
    execution: _Counts | None = None
    usage: dict[str, Any] | None = None
    wall_seconds: float = 0.0

    @field_validator("problem_id")
    @classmethod
    def _known_problem(cls, value: str, info: ValidationInfo) -> str:
        ids = (info.context or {}).get("problem_ids")
        if ids is not None and value not in ids:
            raise ValueError("not a problem of this run")
        return value

    @field_validator("run")
    @classmethod
    def _known_run(cls, value: int, info: ValidationInfo) -> int:
        runs = (info.context or {}).get("runs")
        if runs is not None and value >= runs:
            raise ValueError(f"this run has runs 0..{runs - 1}")
        return value


def read_records(path: Path, schema: type[BaseModel] | None = None,
                 context: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every record in a ``records.jsonl`` (none if it does not exist); a torn line is ignored.

    With ``schema`` each record is validated (``context`` is passed to its validators, e.g. the run's problem
    ids), and the first invalid one raises ``RecordError``: ``records.jsonl:3: solved: Input should be a valid
    boolean (got 'no')``.
    """
    if not path.exists():
        return []
    records = []
    # newline-delimited in the strict sense: ``str.splitlines`` would also split inside a string holding U+2028,
    # U+0085 or another Unicode line break, losing the record (older files were written with them unescaped)
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").split("\n"), start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if schema is not None:
            try:
                schema.model_validate(record, context=context)
            except ValidationError as e:
                raise RecordError(f"{path}:{number}: {validation_message(e, 'record')}") from None
        if isinstance(record, dict):
            records.append(record)
    return records


def append_record(path: Path, record: dict[str, Any], lock: threading.Lock | None = None) -> None:
    """Append one record as a JSON line and flush it; ``lock`` serialises the threads writing it, an ``flock`` the
    processes.

    The line is pure ASCII (``ensure_ascii``): no reader of the store, however it splits lines, can find a line
    break inside a record."""
    line = json.dumps(record, default=str, ensure_ascii=True) + "\n"
    with lock or nullcontext(), path.open("a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # other processes sharing the run directory append to the same file
        f.seek(0, 2)
        if f.tell() and (f.seek(-1, 2), f.read(1))[1] != b"\n":
            line = "\n" + line  # a killed run left a torn line: start on a fresh one
        f.write(line.encode())
        f.flush()


#: the fields of a record that measure when or how long, not what was planned
TIME_FIELDS = frozenset({"wall_seconds", "plan_seconds", "finished_at", "seconds", "model_seconds", "code_version"})


def untimed(value: Any) -> Any:
    """A record (or any JSON value) without its time fields, at any depth: two executors, two machines or two
    runs of the same work compare equal on what they planned."""
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if k not in TIME_FIELDS}
    if isinstance(value, list):
        return [untimed(v) for v in value]
    return value
