"""Issue 16, the second hardening pass: no record lost or mis-scored, model output treated as data, and no
credential in any output."""

from __future__ import annotations

import json

import pytest
from fake_openai import FakeOpenAI
from hypothesis import given, settings
from hypothesis import strategies as st

from map_agent.cli import main
from map_agent.eval.records import append_record, read_records

#: every code point ``str.splitlines`` treats as a line boundary, plus the JSON-relevant controls
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"

_text = st.text(st.one_of(st.sampled_from(LINE_BREAKS), st.characters()), max_size=40)
_records = st.lists(st.fixed_dictionaries({"problem_id": _text, "run": st.integers(0, 5), "reply": _text,
                                           "calls": st.lists(st.dictionaries(_text, _text, max_size=3),
                                                             max_size=3)}),
                    min_size=1, max_size=5)


@settings(max_examples=150, deadline=None)
@given(_records)
def test_records_round_trip_whatever_unicode_their_strings_hold(tmp_path_factory, records):
    path = tmp_path_factory.mktemp("records") / "records.jsonl"
    for record in records:
        append_record(path, record)
    assert read_records(path) == records


def test_a_store_written_before_the_fix_with_raw_line_separators_still_reads(tmp_path):
    path = tmp_path / "records.jsonl"
    lines = [json.dumps({"problem_id": "p", "run": 0, "reply": f"a{c}b"}, ensure_ascii=False) for c in "\u2028\x85"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert [r["reply"] for r in read_records(path)] == ["a\u2028b", "a\x85b"]


# -- 6: no credential in any output ---------------------------------------------------------------------------
USER_TOKEN, PATH_TOKEN, QUERY_TOKEN, KEY = "u5erT0ken", "p4thT0ken", "qu3ryT0ken", "sk-live-0123456789abcdefXYZ"


def _echo_after_probe(n, request):
    """A server that answers the start-up probe, then echoes the path, query and credentials in every error."""
    if request["body"].get("max_completion_tokens") == 16:  # the probe (maze-code and text-to-pddl send none)
        return None
    echo = f'no route {request["path"]} for {request["headers"].get("Authorization")} at http://me:{USER_TOKEN}@x'
    return 404, "application/json", json.dumps({"error": {"message": echo}}).encode()


@pytest.mark.parametrize("command", [
    ["plan", "hanoi", "--problem", "7", "--json", "--max-actions", "1"],
    ["eval", "hanoi", "--limit", "1", "--runs", "1", "--max-actions", "1"],
    ["eval", "maze-code", "--test-set", "1", "--limit", "1"],
    ["eval", "text-to-pddl", "--limit", "1"],
], ids=lambda c: " ".join(c[:2]))
def test_no_subcommand_prints_or_stores_a_token_planted_in_the_base_url_or_key(command, tmp_path, capfd,
                                                                                 monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with FakeOpenAI(respond=_echo_after_probe, path=f"/v1/{PATH_TOKEN}") as server:
        url = server.url.replace("http://", f"http://user:{USER_TOKEN}@") + f"?api-key={QUERY_TOKEN}"
        extra = [] if command[0] == "plan" else ["--out", str(tmp_path), "--run-id", "r"]
        main([*command, "--backend", "openai", "--base-url", url, "--no-cache", "--timeout", "5", *extra])
    outputs = capfd.readouterr()
    channels = {"stdout": outputs.out, "stderr": outputs.err,
                **{str(p): p.read_text() for p in tmp_path.rglob("*") if p.is_file()}}
    assert any("no route" in text for text in channels.values()), channels  # the server's errors were shown
    for name, text in channels.items():
        for secret in (USER_TOKEN, PATH_TOKEN, QUERY_TOKEN, KEY, "0123456789abcdef"):
            assert secret not in text, f"{secret} in {name}"
