"""JSON schemas as servers take them: the grammar-safe rewrite every schema goes through before it leaves the
process, and the smallest reply a schema accepts (what a reply budget must at least hold).

One definition for every backend: the embedded llama.cpp and every OpenAI-compatible server get the same rewrite,
because the raw module schemas (a 2,000-character ``reasoning`` limit) crash llama-cpp-python's server process
when it unrolls them into a grammar.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

GRAMMAR_INT_BOUND = 10**6
GRAMMAR_MAX_STRING = 300

#: the fewest tokens any module reply is given, whatever its schema: room for the braces, a key and a verdict
MIN_REPLY_TOKENS = 64
#: tokens added to the smallest instance of a schema (whitespace, a model's choice of longer values)
REPLY_MARGIN = 16


def grammar_friendly(schema: Any) -> Any:
    """Rewrite a JSON schema into one llama.cpp turns into a fast, *finite* grammar; it accepts a subset of what
    the schema accepts, so every reply the grammar allows still validates.

    * Free text is capped at ``GRAMMAR_MAX_STRING`` characters (or the schema's own ``maxLength`` if smaller). A
      tiny model left unbounded rambles inside a string until ``max_tokens`` cuts the JSON off; llama.cpp
      unrolls the bound into nested rules, which it rejects (and may crash on) in the thousands, hence a cap
      rather than the schema's larger limits.
    * An unbounded ``integer`` becomes a 15-level nested rule that is ~50x slower to sample than a bounded
      one, so missing bounds are set to +-10^6.

    >>> grammar_friendly({"type": "string", "maxLength": 2000})
    {'type': 'string', 'maxLength': 300}
    """
    if isinstance(schema, list):
        return [grammar_friendly(v) for v in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: grammar_friendly(v) for k, v in schema.items()}
    if out.get("type") == "string" and not {"enum", "const", "pattern"} & out.keys():
        out["maxLength"] = min(out.get("maxLength", GRAMMAR_MAX_STRING), GRAMMAR_MAX_STRING)
    if out.get("type") == "integer":
        out.setdefault("minimum", -GRAMMAR_INT_BOUND)
        out.setdefault("maximum", GRAMMAR_INT_BOUND)
    return out


def smallest_instance(schema: dict[str, Any], defs: dict[str, Any] | None = None) -> Any:
    """The shortest value a JSON schema accepts, near enough: required properties only, the fewest items, the
    lowest number, the shortest string.

    >>> smallest_instance({"type": "object", "properties": {"n": {"type": "integer", "minimum": 3}},
    ...                    "required": ["n"]})
    {'n': 3}
    """
    defs = defs if defs is not None else schema.get("$defs", {})
    if "$ref" in schema:
        return smallest_instance(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return smallest_instance(options[0], defs)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return min(schema["enum"], key=lambda v: len(json.dumps(v)))
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        return {name: smallest_instance(props.get(name, {}), defs) for name in schema.get("required", [])}
    if kind == "array":  # the fixed leading items (``prefixItems``) first, then ``items`` up to minItems
        need = schema.get("minItems", 0)
        prefix = [smallest_instance(s, defs) for s in schema.get("prefixItems", [])][:need]
        return prefix + [smallest_instance(schema.get("items") or {}, defs) for _ in range(need - len(prefix))]
    if kind in ("integer", "number"):
        low, high = schema.get("minimum", 0), schema.get("maximum", 0)
        return low if low > 0 else high if high < 0 else 0
    if kind == "string":
        return "x" * schema.get("minLength", 0)
    if kind == "boolean":
        return True
    return None


def minimal_reply_tokens(schema: dict[str, Any] | None, count: Callable[[str], int] | None = None) -> int:
    """The reply budget below which no valid reply to ``schema`` fits: the smallest instance's tokens (``count``,
    else its UTF-8 bytes: no tokenizer makes more tokens than bytes) plus a margin, and never under
    ``MIN_REPLY_TOKENS``.

    >>> minimal_reply_tokens(None)
    64
    """
    if not schema:
        return MIN_REPLY_TOKENS
    text = json.dumps(smallest_instance(schema))
    return max(MIN_REPLY_TOKENS, (count(text) if count else len(text.encode())) + REPLY_MARGIN)
