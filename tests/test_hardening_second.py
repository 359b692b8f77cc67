"""Issue 16, the second hardening pass: no record lost or mis-scored, model output treated as data, and no
credential in any output."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import shutil
import socket
import threading
import time

import httpx
import pytest
from fake_openai import FakeOpenAI
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.tools import ToolException

import map_agent.prompts
from map_agent.cli import main
from map_agent.eval.maze_code import EXCERPT_CHARS, evaluate
from map_agent.eval.records import append_record, read_records
from map_agent.eval.runner import Evaluation, RunSpec
from map_agent.llm import make_chat_model
from map_agent.llm.backends import SetupError, check_endpoint
from map_agent.llm.http import bounded_client
from map_agent.tasks.maze.data import load_test_set
from map_agent.tools.sandbox import SandboxLimits
from map_agent.tools.value_iteration_tool import solve, value_iteration_tool

LIMITS = SandboxLimits(wall_s=10, cpu_s=5, memory_mb=768)

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


# -- 5: model output is data ----------------------------------------------------------------------------------
HOSTILE_TABLES = {  # what value_iteration(maze) returns -> what the bad answer is called
    "{(0.5, 1): 1.0}": "not a (row, col)",
    "{((0,), 1): 1.0}": "not a (row, col)",
    "{(True, 0): 1.0}": "not a (row, col)",
    "{(0, 0): 10 ** 400}": "does not fit a float",
    "[[10 ** 400] * len(m[0]) for _ in m]": "does not fit a float",
    "[[float('nan')] * len(m[0]) for _ in m]": "NaN",
    "[[[1]] * len(m[0]) for _ in m]": "not a number",
    "[['1'] * len(m[0]) for _ in m]": "not a number",
    "{(0, 0): [1]}": "not a number",
    "[[1] * 3, [1] * 4]": "not a matrix",
    "{(i, 0): 1 for i in range(100_000)}": "entries",
}


def test_a_hostile_value_table_is_that_problems_bad_answer_and_the_evaluation_goes_on(tmp_path):
    problems = load_test_set(1)[:len(HOSTILE_TABLES)]
    replies = [f"```python\nmaze = {p.grid!r}\ndef value_iteration(m):\n    return {table}\n```"
               for p, table in zip(problems, HOSTILE_TABLES, strict=True)]
    replies[-1] += "\n" + "# padding\n" * 200_000  # a 2 MB reply: the record keeps an excerpt
    summary = evaluate(FakeListChatModel(responses=replies), problems, tmp_path, limits=LIMITS)
    records = read_records(tmp_path / "records.jsonl")
    assert summary["scored"] == len(HOSTILE_TABLES) and summary["status"] == {"bad_output": len(HOSTILE_TABLES)}
    for record, complaint in zip(records, HOSTILE_TABLES.values(), strict=True):
        assert record["executed"] and complaint in record["error"], (record["error"], complaint)
        assert len(json.dumps(record)) < 3 * EXCERPT_CHARS
    assert "more characters" in records[-1]["reply"]


def test_a_script_that_fills_the_tmpfs_with_empty_files_is_that_problems_disk_failure(tmp_path):
    """Empty files take no space, so only the tmpfs's inode cap ends this script; the evaluation goes on."""
    problems = load_test_set(1)[:2]
    zeros = "def value_iteration(m):\n    return [[0] * len(m[0]) for _ in m]\n```"
    flood = f"```python\nfor i in range(200_000):\n    open(f'e{{i}}', 'w').close()\n{zeros}"
    sane = f"```python\nmaze = {problems[1].grid!r}\n{zeros}"
    started = time.perf_counter()
    summary = evaluate(FakeListChatModel(responses=[flood, sane]), problems, tmp_path,
                       limits=LIMITS.model_copy(update={"inodes": 2000}))
    first, second = read_records(tmp_path / "records.jsonl")
    assert (first["status"], first["executed"]) == ("disk", False) and "No space left" in first["error"], first
    assert second["executed"] and summary["scored"] == 2
    assert time.perf_counter() - started < 2 * LIMITS.wall_s


def test_value_iteration_tool_refuses_an_infinite_reward_and_a_huge_maze_in_one_line():
    assert value_iteration_tool.invoke({"maze": [["A", "G"]], "reward": float("inf")}) \
        == "invalid arguments: reward: Input should be a finite number"
    with pytest.raises(ToolException, match="reward: must be a finite number"):
        solve([["A", "G"]], reward=float("inf"))
    huge = [["-"] * 1000 for _ in range(1000)]
    huge[0][0], huge[-1][-1] = "A", "G"
    started = time.perf_counter()
    answer = value_iteration_tool.invoke({"maze": huge})
    assert answer == "maze: 1000000 cells, more than the 40000 this tool solves"
    assert time.perf_counter() - started < 5


# -- 2: failure taxonomy --------------------------------------------------------------------------------------
QUICK = ["--parse-retries", "0", "--monitor-retries", "0", "--no-cache", "--max-actions", "1"]


def test_an_endpoint_that_goes_down_mid_run_is_not_scored_and_is_retried_on_resume(tmp_path, capsys):
    answered = 6  # the probe and a few module calls, then every request is refused with a 503

    def down_after(n, request):
        return None if n < answered else (503, "application/json", b'{"error": {"message": "overloaded"}}')

    command = ["eval", "hanoi", "--limit", "3", "--runs", "1", "--backend", "openai", "--out", str(tmp_path),
               "--run-id", "r", *QUICK]
    with FakeOpenAI(respond=down_after) as server:
        code = main([*command, "--base-url", server.url])
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    records = read_records(tmp_path / "r" / "records.jsonl")
    assert code == 1 and "ended by the endpoint, not the model" in capsys.readouterr().err
    infra = [r for r in records if r["ended_by"] == "infrastructure"]
    assert infra and summary["infrastructure_failures"] == len(infra)
    assert summary["records"] == len(records) - len(infra)  # only what the model ended is scored
    assert all(r["ended_by"] in ("model", "infrastructure") for r in records)
    with FakeOpenAI() as healthy:  # resuming against a healthy server retries exactly the unscored problems
        assert main([*command, "--base-url", healthy.url]) == 0
        assert len(healthy.requests) > 1
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["infrastructure_failures"] == 0 and summary["records"] == 3


@pytest.mark.slow
def test_a_real_server_killed_mid_eval_ends_its_problems_as_infrastructure(tmp_path, capsys):
    """llama-cpp-python's own server, stopped once the first record is written: what follows is the outage's."""
    from llama_server import LlamaServer

    server = LlamaServer(tmp_path / "server.log")
    records = tmp_path / "r" / "records.jsonl"

    def kill_after_first_record():
        while not (records.exists() and records.read_text().strip()):
            time.sleep(0.05)
        server.stop()

    killer = threading.Thread(target=kill_after_first_record, daemon=True)
    killer.start()
    try:
        code = main(["eval", "hanoi", "--limit", "3", "--runs", "1", "--backend", "openai", "--base-url", server.url,
                     "--timeout", "30", "--out", str(tmp_path), "--run-id", "r", *QUICK])
    finally:
        server.stop()
    killer.join(5)
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    ended = [r["ended_by"] for r in read_records(records)]
    assert code == 1 and "ended by the endpoint" in capsys.readouterr().err
    assert ended[0] == "model" and "infrastructure" in ended[1:]
    assert summary["records"] == ended.count("model") and summary["infrastructure_failures"] == ended.count(
        "infrastructure")


# -- 3: whole-request deadlines, capped bodies, a busy probe, a cached rerun ----------------------------------
def _raw_server(handler):
    """A loopback HTTP server speaking raw bytes: ``handler(connection)`` for each connection."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)

    def accept():
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=handler, args=(connection,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return server, f"http://127.0.0.1:{server.getsockname()[1]}/v1"


def _drip(connection):  # headers and body one byte every 50 ms: no single read ever times out
    connection.recv(65536)
    with contextlib.suppress(OSError):
        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b" " * 100_000:
            connection.sendall(bytes([byte]))
            time.sleep(0.05)


def _huge(connection):  # a 300 MiB body
    connection.recv(65536)
    with contextlib.suppress(OSError):
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (300 * 2**20))
        for _ in range(300):
            connection.sendall(b" " * 2**20)


def test_timeout_bounds_the_whole_request_and_reply_bodies_are_capped():
    for handler, complaint, seconds in ((_drip, "no answer within 1 s", 3), (_huge, "exceeds 32 MiB", 5)):
        server, url = _raw_server(handler)
        started = time.monotonic()
        with pytest.raises(SetupError, match=complaint):
            check_endpoint(make_chat_model("openai", "m", base_url=url, timeout=1.0, cache=False))
        assert time.monotonic() - started < seconds
        server.close()


def test_the_transport_speaks_http_1_1_and_refuses_a_header_with_a_line_break():
    def answer(connection):  # a chunked reply from an HTTP/1.1 server, the request echoed in a header
        head = connection.recv(65536).split(b"\r\n\r\n")[0]
        echo = head.split(b"\r\n")[0]
        with contextlib.suppress(OSError):
            connection.sendall(b"HTTP/1.1 200 OK\r\nX-Request: " + echo + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
                               b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
            connection.close()

    server, url = _raw_server(answer)
    with bounded_client(5.0) as client:
        reply = client.post(f"{url}/chat/completions?x=1", content=b"{}")
        assert reply.status_code == 200 and reply.content == b"hello world"
        assert reply.headers["x-request"] == "POST /v1/chat/completions?x=1 HTTP/1.1"
        assert reply.extensions["http_version"] == b"HTTP/1.1"
        with pytest.raises(httpx.LocalProtocolError, match="line break"):
            client.post(f"{url}/chat/completions", headers={"Authorization": "Bearer k\r\nX-Evil: 1"})
        with socket.socket() as unused:  # a port that nothing listens on
            unused.bind(("127.0.0.1", 0))
            port = unused.getsockname()[1]
        with pytest.raises(httpx.ConnectError):
            client.post(f"http://127.0.0.1:{port}/v1/chat/completions", content=b"{}")
        with pytest.raises(httpx.ConnectError, match="SSL|TLS|record"):  # https to a plain-HTTP server
            client.post(url.replace("http://", "https://") + "/chat/completions", content=b"{}")
    server.close()


def test_connections_are_kept_alive_where_the_server_allows_and_a_closed_one_is_replaced():
    for keep_alive, connections in ((True, 1), (False, 3)):
        with FakeOpenAI(keep_alive=keep_alive) as server, bounded_client(5.0) as client:
            for _ in range(3):
                assert client.post(f"{server.url}/chat/completions", content=b"{}").status_code == 200
            assert len({r["client_port"] for r in server.requests}) == connections

    accepted = []

    def once_then_close(connection):  # answers one request as HTTP/1.1 (kept alive), then hangs up
        accepted.append(connection)
        connection.recv(65536)
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        connection.close()

    server, url = _raw_server(once_then_close)
    with bounded_client(5.0) as client:
        assert client.post(f"{url}/chat/completions", content=b"{}").content == b"ok"
        time.sleep(0.1)  # the server has closed the kept connection by now
        assert client.post(f"{url}/chat/completions", content=b"{}").content == b"ok"
    assert len(accepted) == 2
    server.close()


def test_a_429_on_the_start_up_probe_is_waited_out():
    def busy_twice(n, request):
        return (429, "application/json", b'{"error": {"message": "slow down"}}') if n < 2 else None

    with FakeOpenAI(respond=busy_twice) as server:
        check_endpoint(make_chat_model("openai", "m", base_url=server.url, json_schema="off", cache=False))
        assert len(server.requests) >= 3


def test_a_fully_cached_rerun_needs_no_endpoint(tmp_path, capsys):
    command = ["eval", "hanoi", "--limit", "1", "--runs", "1", "--backend", "openai", "--cache-dir",
               str(tmp_path / "cache"), "--parse-retries", "0", "--monitor-retries", "0", "--max-actions", "1"]
    with FakeOpenAI() as server:
        assert main([*command, "--base-url", server.url, "--out", str(tmp_path / "first")]) == 0
        url = server.url
    with pytest.warns(RuntimeWarning, match="earlier run's endpoint check"):  # the server is gone now
        assert main([*command, "--base-url", url, "--out", str(tmp_path / "again")]) == 0
    first, again = (read_records(next((tmp_path / d).glob("*/records.jsonl"))) for d in ("first", "again"))
    assert [r["plan"] for r in again] == [r["plan"] for r in first]
    assert again[0]["ended_by"] == "model"


# -- 7: several processes, one run ----------------------------------------------------------------------------
IDS = ["1", "2", "4", "5", "6", "7"]


def _plan_shared(out, start):
    """One of several processes on the same run directory: all start planning at the same moment."""
    from map_agent import MAPAgent

    def slow_oracle(problem, config):
        time.sleep(0.2)  # long enough for every process to want every job
        return MAPAgent(problem, backend="oracle", config=config)

    spec = RunSpec(task="hanoi", split="test3", runs=1, backend="oracle", model=None, config={},
                   problem_ids=IDS)
    evaluation = Evaluation(spec, out, "shared", agent_factory=slow_oracle)
    evaluation.prepare()
    start.wait()
    evaluation.run()


def test_processes_sharing_a_run_directory_plan_each_problem_once(tmp_path):
    context = multiprocessing.get_context("fork")
    start = context.Barrier(4)
    workers = [context.Process(target=_plan_shared, args=(tmp_path, start)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [w.exitcode for w in workers] == [0] * 4
    records = read_records(tmp_path / "shared" / "records.jsonl")
    assert sorted(r["problem_id"] for r in records) == sorted(IDS)
    assert all(r["solved"] for r in records)


# -- a broken file is one line naming it, never an internal error ------------------------------------------------
#: what is broken -> (the file under the test's folder, "write" or "append", the bytes, the command, what the error
#: line says after the file's path: the field, or the line number)
BAD_FILES = {
    "records line a JSON list": ("run/records.jsonl", "append", b"[1, 2]\n", "report", ":3: record: Input should "
                                 "be an object"),
    "records line a number": ("run/records.jsonl", "append", b"42\n", "view", ":3: record: Input should be an object"),
    "records line without its problem": ("run/records.jsonl", "append", b'{"run": 0}\n', "report",
                                         ":3: problem_id: Field required"),
    "records field of the wrong type": ("run/records.jsonl", "append", b'{"problem_id": "1", "run": "zero"}\n',
                                        "view", ":3: run: Input should be a valid integer"),
    "config not JSON": ("run/config.json", "write", b"{task: hanoi", "eval", ": not JSON at line 1 column 2"),
    "config a list": ("run/config.json", "write", b"[1]", "report", ": the whole file: Input should be an object"),
    "config not UTF-8": ("run/config.json", "write", b'{"task": "\xff"}', "view", ": not UTF-8 text (byte 0xff"),
    "config field of the wrong type": ("run/config.json", "patch", b'{"runs": "two"}', "report",
                                       ": runs: Input should be a valid integer"),
    "summary a list": ("run/summary.json", "write", b"[]", "view", ": the whole file: Input should be an object"),
    "cell a string": ("run/cell.json", "write", b'"map"', "report", ": the whole file: Input should be an object"),
    "experiment cell a list": ("exp.yaml", "write", b"title: t\nsource: s\ncells:\n  - [hanoi, test3]\n",
                               "reproduce", ": cells.0: Input should be an object"),
    "experiment field of the wrong type": ("exp.yaml", "write", b"title: t\nsource: s\ncells:\n  - {task: hanoi, "
                                           b"split: test3, runs: two}\n", "reproduce", ": cells.0.runs: Input should"),
    "examples entries not objects": ("prompts/hanoi/actor.examples.json", "write", b"[1, 2]", "eval map",
                                     ": 0: Input should be an object"),
    "prompt not UTF-8": ("prompts/hanoi/actor.md", "write", b"You are the \xe9 Actor", "eval map",
                         ": not UTF-8 text (byte 0xe9 at offset 12)"),
    "template placeholder unknown": ("prompts/hanoi/baselines/cot.md", "write", b"Plan {max_actions} moves; {steps}",
                                     "eval cot", ": unknown placeholder {steps}"),
    "module routes not UTF-8": ("routes.yaml", "write", b"Actor: \xff", "eval map", ": not UTF-8 text"),
    "module routes entry empty": ("routes.yaml", "write", b"Actor: ''", "eval map", ": Actor: String should have"),
    "examples entry of the wrong shape": ("prompts/hanoi/actor.examples.json", "write",
                                          b'[{"input": {"state": 7}, "output": {}}]', "eval map", ": example 0: "),
    "ToT examples entry without a field": ("prompts/hanoi/baselines/tot_judge.examples.json", "write",
                                           b'[{"start": {}, "goal": {}}]', "eval tot", ": example 0: no field 'steps'"),
    "ToT examples entry of the wrong type": ("prompts/hanoi/baselines/tot_propose.examples.json", "write",
                                             b'[{"state": "A", "options": []}]', "eval tot", ": example 0: "),
}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished")
    assert main(["eval", "hanoi", "--backend", "oracle", "--limit", "2", "--runs", "1", "--out", str(out),
                 "--run-id", "run"]) == 0
    return out / "run"


@pytest.mark.parametrize("broken", BAD_FILES)
def test_a_broken_file_ends_as_one_line_naming_it_and_its_field(broken, finished_run, tmp_path, capsys,
                                                                  monkeypatch):
    name, how, data, command, said = BAD_FILES[broken]
    shutil.copytree(finished_run, tmp_path / "run")
    shutil.copytree(map_agent.prompts.PROMPT_ROOT / "hanoi", tmp_path / "prompts" / "hanoi")
    monkeypatch.setattr(map_agent.prompts, "PROMPT_ROOT", tmp_path / "prompts")
    path = tmp_path / name
    if how == "patch":
        path.write_text(json.dumps({**json.loads(path.read_text()), **json.loads(data)}))
    else:
        with path.open("ab" if how == "append" else "wb") as f:
            f.write(data)
    capsys.readouterr()
    with FakeOpenAI() as server:
        model = ["--backend", "openai", "--base-url", server.url, "--no-cache", "--max-actions", "1"]
        argv = {
            "eval": ["eval", "hanoi", "--backend", "oracle", "--limit", "2", "--runs", "1", "--out", str(tmp_path),
                     "--run-id", "run"],
            "report": ["report", str(tmp_path / "run"), "--out", str(tmp_path / "report")],
            "view": ["view", str(tmp_path / "run"), "--out", str(tmp_path / "pages")],
            "reproduce": ["reproduce", str(path), "--backend", "oracle", "--out", str(tmp_path / "repro")],
            "eval map": ["eval", "hanoi", "--limit", "1", "--runs", "1", "--out", str(tmp_path), "--run-id", "llm",
                         *model, *(["--module-models", str(path)] if name == "routes.yaml" else [])],
            "eval cot": ["eval", "hanoi", "--method", "cot", "--limit", "1", "--runs", "1", "--out", str(tmp_path),
                         "--run-id", "cot", *model],
            "eval tot": ["eval", "hanoi", "--method", "tot", "--limit", "1", "--runs", "1", "--out", str(tmp_path),
                         "--run-id", "tot", *model],
        }[command]
        code = main(argv)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and errors == err.strip().splitlines()[-1:], err
    assert errors[0].startswith(f"error: {path}{said}"), (errors[0], f"{path}{said}")
    assert "internal error" not in err and "Traceback" not in err
