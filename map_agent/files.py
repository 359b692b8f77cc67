"""Reading the files a person or an earlier run hands to map-agent: run directories, experiments, prompts.

Whatever is wrong with such a file -- not UTF-8, not JSON or YAML, the wrong shape, a field of the wrong type, a
placeholder its template does not fill -- ends as one :class:`FileError` whose message names the file, the field
(or line) and the problem. It is a ``ValueError``, so the CLI prints it as its one error line and exits 2: the
person fixes the file, where an ``internal error`` would send them to the traceback. Missing or unreadable files
stay ``OSError``, whose message already names the file.

>>> import tempfile
>>> from pathlib import Path
>>> path = Path(tempfile.mkdtemp()) / "routes.json"
>>> _ = path.write_text('{"Actor": 7}')
>>> try:
...     load_file(path, dict[str, str])
... except FileError as e:
...     print(str(e).replace(str(path.parent), "DIR"))
DIR/routes.json: Actor: Input should be a valid string (got 7)
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from string import Formatter
from typing import Any

from pydantic import TypeAdapter, ValidationError


class FileError(ValueError):
    """A file that cannot be used as it is; the message is one line: the file, the field or line, the problem."""


#: pydantic's words for "not an object", which name a Python class the person never wrote
_NOT_AN_OBJECT = ("model_type", "model_attributes_type", "dict_type")


def validation_message(error: ValidationError, whole: str = "value") -> str:
    """A pydantic error as one line: the field (``whole`` when the value itself is wrong), the problem and the
    offending value (first error, and a count)."""
    errors = error.errors()
    first = errors[0]
    where = ".".join(map(str, first["loc"])) or whole
    problem = "Input should be an object" if first["type"] in _NOT_AN_OBJECT else first["msg"]
    value = repr(first.get("input"))
    text = f"{where}: {problem} (got {value if len(value) <= 60 else value[:60] + '...'})"
    return text + (f" and {len(errors) - 1} more error(s)" if len(errors) > 1 else "")


@contextmanager
def entry_of(path: str | Path, index: int) -> Iterator[None]:
    """Whatever goes wrong while entry ``index`` of a file is used (a field missing, a value the task's types
    refuse) as a FileError naming the file, the entry and the field: an examples file's entries are checked where
    they are rendered, with the task's own types."""
    try:
        yield
    except ValidationError as e:
        raise FileError(f"{path}: example {index}: {validation_message(e)}") from None
    except KeyError as e:
        raise FileError(f"{path}: example {index}: no field {e}") from None


def read_text(path: str | Path) -> str:
    """A text file's content; a file that is not UTF-8 raises FileError naming it and the first bad byte."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise FileError(f"{path}: not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start})") from None


def load_file(path: str | Path, schema: Any, *, text: str | None = None, context: dict[str, Any] | None = None) -> Any:
    """``path`` parsed (YAML for ``.yaml``/``.yml``, else JSON) and validated as ``schema`` (a pydantic model or
    any type pydantic validates, such as ``list[Example]``); ``text`` is the content when the caller has read (or
    cached) it, ``context`` goes to the validators. Every problem raises FileError naming the file."""
    text = read_text(path) if text is None else text
    if Path(path).suffix in (".yaml", ".yml"):
        import yaml

        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise FileError(f"{path}: not YAML{where}: {getattr(e, 'problem', None) or e}") from None
    else:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            raise FileError(f"{path}: not JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    try:
        return _adapter(schema).validate_python(raw, context=context)
    except ValidationError as e:
        raise FileError(f"{path}: {validation_message(e, 'the whole file')}") from None


@cache
def _adapter(schema: Any) -> TypeAdapter:
    """One validator per schema: pydantic builds it anew for every ``TypeAdapter``, a good part of reading a
    module's examples, which every plan does for each of its modules."""
    return TypeAdapter(schema)


def fill(path: str | Path, template: str, **values: Any) -> str:
    """A prompt template with its ``{placeholders}`` filled; a placeholder that ``values`` lacks, a stray brace or
    a bad format spec raises FileError naming the file (a literal brace is written ``{{`` or ``}}``)."""
    try:
        names = {name for _, name, _, _ in Formatter().parse(template) if name is not None}
        unknown = sorted({re.split(r"[.\[]", name)[0] for name in names} - set(values))
        if not unknown:
            return template.format(**values)
    except (ValueError, IndexError, KeyError, AttributeError) as e:
        raise FileError(f"{path}: not a template: {e} (a literal brace is written {{{{ or }}}})") from None
    raise FileError(f"{path}: unknown placeholder {{{unknown[0]}}}; this prompt fills "
                    f"{', '.join('{' + name + '}' for name in sorted(values)) or 'none'}")
