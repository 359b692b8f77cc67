"""Issue 9: nothing hangs, a broken setup fails loudly and once, errors are one line, records hold no secret.

Every test that talks HTTP does so with ``fake_openai.FakeOpenAI`` on 127.0.0.1 (or a port nothing listens on).
"""

from __future__ import annotations

import json
import socket
import time

import pytest
from fake_openai import FakeOpenAI, completion

from map_agent.cli import main
from map_agent.eval.records import RecordError, read_records
from map_agent.eval.runner import Evaluation, RecordCheck, RunSpec
from map_agent.llm import make_chat_model
from map_agent.llm.backends import MalformedReplyError, SetupError, check_endpoint, redact
from map_agent.modules import LLM_MODULES
from map_agent.modules.base import make_input
from map_agent.task import get_task
from map_agent.tasks import hanoi

QUICK = ["--parse-retries", "0", "--monitor-retries", "0", "--no-cache"]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens here once the socket is closed


def orchestrator(llm):
    task, problem = get_task("hanoi"), hanoi.problem(7)
    module = LLM_MODULES["Orchestrator"](task, problem, llm, parse_retries=0)
    return module, make_input("Orchestrator", task, {"state": problem.start, "goal": problem.goal})


def one_line_error(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert "Traceback" not in text and "validation error" not in text, text
    (error,) = [line for line in lines if line.startswith("error:")]
    return error


# -- nothing hangs --------------------------------------------------------------------------------------------
def test_a_server_that_never_answers_becomes_a_retried_then_recorded_failure():
    with FakeOpenAI(hang_after=0) as server:
        module, inp = orchestrator(make_chat_model("openai", "m", base_url=server.url, timeout=0.3, cache=False))
        module.network_attempts = 2
        started = time.monotonic()
        result = module(inp)
        elapsed = time.monotonic() - started
        assert len(server.requests) == 2  # retried once, then given up
    assert not result.ok and "Timeout" in result.record.error
    assert elapsed < 10


def test_the_default_request_timeout_is_finite():
    llm = make_chat_model("openai", "m", api_key="sk-test", cache=False)
    assert llm.request_timeout == 120


def test_a_200_reply_that_is_not_json_is_retried_like_a_5xx():
    def garbage_first(n, request):
        return (200, "text/html", b"<html>proxy error</html>") if n == 0 else None

    with FakeOpenAI(respond=garbage_first) as server:
        module, inp = orchestrator(make_chat_model("openai", "m", base_url=server.url, cache=False))
        result = module(inp)
        assert len(server.requests) == 2
    assert result.ok and result.output.achieved is True


@pytest.mark.parametrize("body,kind", [(b'{"id": "x", "choi', "application/json"),
                                       (b'{"hello": 1}', "application/json"), (b"oops", "text/plain")])
def test_every_kind_of_malformed_body_is_a_retryable_error(body, kind):
    with FakeOpenAI(respond=lambda n, r: (200, kind, body)) as server:
        llm = make_chat_model("openai", "m", base_url=server.url, cache=False)
        with pytest.raises(MalformedReplyError):
            llm.invoke("hi")


# -- a broken setup fails loudly, once --------------------------------------------------------------------
def test_the_endpoint_check_names_the_url_and_the_error():
    url = f"http://127.0.0.1:{closed_port()}/v1"
    with pytest.raises(SetupError, match=rf"{url}: cannot connect"):
        check_endpoint(make_chat_model("openai", "m", base_url=url, cache=False))
    with FakeOpenAI(hang_after=0) as server, pytest.raises(SetupError, match="no answer within 0.3 s"):
        check_endpoint(make_chat_model("openai", "m", base_url=server.url, timeout=0.3, cache=False))
    refuse = FakeOpenAI(respond=lambda n, r: (401, "application/json", b'{"error": {"message": "bad key"}}'))
    with refuse as server, pytest.raises(SetupError, match="API key was refused"):
        check_endpoint(make_chat_model("openai", "m", base_url=server.url, cache=False))


def test_auto_json_schema_switches_to_the_form_llama_cpp_python_takes():
    def llama_cpp_python(n, request):  # its ResponseFormat accepts only "text" and "json_object"
        kind = (request["body"].get("response_format") or {}).get("type")
        if kind == "json_schema":
            return 422, "application/json", b'{"detail": [{"msg": "Input should be \'text\' or \'json_object\'"}]}'
        return None

    with FakeOpenAI(respond=llama_cpp_python) as server:
        llm = make_chat_model("openai", "m", base_url=server.url, json_schema="auto", cache=False)
        check_endpoint(llm, auto_form=True)
        assert llm.json_schema_form == "json_object"
        module, inp = orchestrator(llm)
        assert module(inp).ok
        sent = server.requests[-1]["body"]["response_format"]
        assert sent["type"] == "json_object" and "achieved" in json.dumps(sent["schema"])


def test_eval_against_an_unreachable_endpoint_exits_with_one_line(tmp_path, capsys):
    url = f"http://127.0.0.1:{closed_port()}/v1"
    code = main(["eval", "hanoi", "--limit", "2", "--backend", "openai", "--base-url", url, "--out", str(tmp_path)])
    assert code == 2
    assert url in one_line_error(capsys.readouterr().err)
    assert not list(tmp_path.glob("*/records.jsonl"))  # no problem was started


def test_eval_without_a_key_exits_with_one_line(tmp_path, capsys, monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "MAP_AGENT_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    assert main(["eval", "hanoi", "--limit", "2", "--backend", "openai", "--out", str(tmp_path)]) == 2
    assert "set OPENAI_API_KEY" in one_line_error(capsys.readouterr().err)


def test_an_unusable_cache_dir_exits_with_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with FakeOpenAI() as server:
        code = main(["eval", "hanoi", "--limit", "1", "--backend", "openai", "--base-url", server.url,
                     "--cache-dir", str(blocker / "cache"), "--out", str(tmp_path)])
    assert code == 2
    assert "prompt cache directory" in one_line_error(capsys.readouterr().err)


@pytest.mark.parametrize("option", ["--runs", "--limit", "--concurrency"])
def test_counts_below_one_are_refused(option, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["eval", "hanoi", "--backend", "oracle", option, "0"])
    assert stop.value.code == 2 and "out of range" in capsys.readouterr().err


def test_a_run_where_every_problem_errored_exits_non_zero(tmp_path, capsys, monkeypatch):
    def broken(self, problem, config):
        raise RuntimeError("the planner broke")

    monkeypatch.setattr(Evaluation, "_agent", broken)
    code = main(["eval", "hanoi", "--limit", "2", "--runs", "1", "--backend", "oracle", "--out", str(tmp_path),
                 "--run-id", "r"])
    captured = capsys.readouterr()
    assert code == 1
    assert "every problem failed (2 of 2)" in one_line_error(captured.err) and "the planner broke" in captured.err
    assert "problems failed                2" in captured.out  # the closing table; the JSON is in summary.json
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["errors"] == 2


def test_module_failures_are_totalled_and_a_resumed_run_keeps_its_wall_time(tmp_path, capsys):
    def fail_monitor(n, request):  # the Orchestrator never sees the goal reached, the Monitor always fails
        system = request["body"]["messages"][0]["content"]
        if "OrchestratorOutput" in system:
            return 200, "application/json", completion('{"achieved": false}')
        return (400, "application/json", b'{"error": "boom"}') if "MonitorOutput" in system else None

    with FakeOpenAI(respond=fail_monitor) as server:
        args = ["eval", "hanoi", "--limit", "2", "--runs", "1", "--backend", "openai", "--base-url", server.url,
                "--max-actions", "1", "--out", str(tmp_path), "--run-id", "r", *QUICK]
        assert main(args) == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    per_module = sum(m.get("failures", 0) for m in summary["usage"]["modules"].values())
    assert summary["module_failures"] >= 2 and summary["module_failures"] == per_module
    path = tmp_path / "r" / "summary.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "wall_seconds": 1000.0}))
    assert main(args) == 0  # resumed: nothing left to do, the earlier sessions' time is kept
    assert json.loads(path.read_text())["wall_seconds"] >= 1000.0
    assert "wall time                      100" in capsys.readouterr().out  # the table shows the kept time


# -- one-line errors --------------------------------------------------------------------------------------
def test_a_bad_module_option_explains_name_equals_impl(capsys):
    assert main(["plan", "hanoi", "--problem", "7", "--backend", "oracle", "--module", "Evaluator"]) == 2
    error = one_line_error(capsys.readouterr().err)
    assert "expected NAME=IMPL" in error and "Evaluator=oracle" in error


def test_an_out_of_range_setting_names_the_field_and_value(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["plan", "hanoi", "--problem", "7", "--backend", "oracle", "--branches", "9"])
    (error,) = capsys.readouterr().err.strip().splitlines()  # the one line that matters, not the usage block
    assert stop.value.code == 2 and "--branches" in error and "9 is out of range: 1 to 4" in error


def test_an_unknown_problem_says_how_to_list_ids(capsys):
    assert main(["plan", "hanoi", "--problem", "999", "--backend", "oracle"]) == 2
    assert "map-agent tasks hanoi --ids" in one_line_error(capsys.readouterr().err)
    assert main(["tasks", "hanoi", "--ids"]) == 0
    listing = capsys.readouterr().out
    assert "test3: 1 2 4" in listing


def test_tasks_lists_to_stdout(capsys):
    assert main(["tasks"]) == 0
    captured = capsys.readouterr()
    assert "hanoi" in captured.out and "test3" in captured.out and captured.err == ""


@pytest.mark.parametrize("command", ["tasks", "plan", "eval"])
def test_every_subcommand_help_shows_defaults_and_an_example(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    assert f"example:\n  map-agent {command}" in text
    if command != "tasks":
        assert "(default 2)" in text and "(default: local)" in text


def test_version(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.startswith("map-agent ")


def test_a_bad_prompt_example_file_is_one_line_in_plan_and_eval(tmp_path, capsys, monkeypatch):
    prompts = tmp_path / "prompts"
    source = get_task("hanoi").prompt_dir(hanoi.problem(7))
    prompts.mkdir()
    for f in source.iterdir():
        if f.is_file():
            (prompts / f.name).write_text(f.read_text())
    (prompts / "monitor.examples.json").write_text('[{"input": {}, "output": {"valid": "perhaps"}}]')
    monkeypatch.setattr(type(get_task("hanoi")), "prompt_dir", lambda self, problem: prompts)
    with FakeOpenAI() as server:
        common = ["--backend", "openai", "--base-url", server.url, *QUICK]
        assert main(["plan", "hanoi", "--problem", "7", *common]) == 2
        plan_error = one_line_error(capsys.readouterr().err)
        assert main(["eval", "hanoi", "--limit", "2", "--out", str(tmp_path), *common]) == 2
        eval_error = one_line_error(capsys.readouterr().err)
    assert "monitor.examples.json: example 0" in plan_error and "monitor.examples.json: example 0" in eval_error
    assert not list(tmp_path.glob("*/records.jsonl"))


@pytest.mark.parametrize("line,complaint", [
    ('{"problem_id": "999", "run": 0, "solved": true}', "problem_id: Value error, not a problem of this run"),
    ('{"problem_id": "1", "run": 0, "solved": "no"}', "solved: Input should be a valid boolean (got 'no')"),
    ('{"problem_id": "1", "run": "0", "solved": true}', "run: Input should be a valid integer"),
    ('{"problem_id": "1", "run": 7, "solved": true}', "run: Value error, this run has runs 0..0"),
    ('{"problem_id": "1", "run": 0, "execution": {"n_actions": "5"}}', "execution.n_actions"),
])
def test_corrupted_record_lines_are_refused_with_their_line_number(tmp_path, capsys, line, complaint):
    run = tmp_path / "r"
    run.mkdir()
    good = json.dumps({"problem_id": "2", "run": 0, "solved": True})
    (run / "records.jsonl").write_text(good + "\n" + '{"problem_id": "4", "ru\n' + line + "\n")
    code = main(["eval", "hanoi", "--split", "test3", "--limit", "3", "--runs", "1", "--backend", "oracle",
                 "--out", str(tmp_path), "--run-id", "r"])
    assert code == 2
    error = one_line_error(capsys.readouterr().err)
    assert "records.jsonl:3: " in error and complaint in error


def test_record_check_accepts_what_the_runner_writes(tmp_path):
    spec = RunSpec(task="hanoi", split="test3", runs=1, backend="oracle", model=None, config={},
                   problem_ids=["1", "2"])
    Evaluation(spec, tmp_path, "ok").run()
    assert len(read_records(tmp_path / "ok" / "records.jsonl", RecordCheck,
                            {"problem_ids": {"1", "2"}, "runs": 1})) == 2
    with pytest.raises(RecordError, match=r"records.jsonl:1: problem_id"):
        read_records(tmp_path / "ok" / "records.jsonl", RecordCheck, {"problem_ids": {"2"}})


# -- no secret in records -----------------------------------------------------------------------------------
def test_error_text_in_records_holds_no_endpoint_path_query_or_key(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-live-0123456789abcdefXYZ")

    def echo_after_probe(n, request):  # a server that echoes the path and the credentials in its errors
        if n == 0:
            return None
        echo = f'no route {request["path"]} for {request["headers"].get("Authorization")}'
        return 404, "application/json", json.dumps({"error": {"message": echo}}).encode()

    with FakeOpenAI(respond=echo_after_probe, path="/v1/t0k3n-in-path") as server:
        url = server.url + "?api-key=query-secret"
        assert main(["eval", "hanoi", "--limit", "1", "--runs", "1", "--backend", "openai", "--base-url", url,
                     "--max-actions", "1",
                     "--out", str(tmp_path), "--run-id", "r", *QUICK]) == 0
    text = (tmp_path / "r" / "records.jsonl").read_text()
    assert "no route" in text and "<redacted>" in text  # the error is kept, its secrets are not
    for secret in ("t0k3n-in-path", "query-secret", "sk-live-0123456789abcdefXYZ", "0123456789abcdef"):
        assert secret not in text and secret not in capsys.readouterr().err


def test_redact_covers_key_shapes():
    assert redact("Authorization: Bearer abc.def-ghi_jkl") == "Authorization: <redacted>"
    assert redact("?api_key=abc123&x=1") == "?api_key=<redacted>&x=1"
    assert redact("hf_abcdefghijklmnop and gsk_abcdefghijkl") == "<redacted> and <redacted>"
    assert redact("plain words stay") == "plain words stay"


# -- friction ------------------------------------------------------------------------------------------------
def test_an_evaluation_builds_one_chat_model_for_all_its_problems(tmp_path, monkeypatch):
    import map_agent.llm.backends as backends

    built = []

    def counting(*args, **kwargs):
        built.append(make_chat_model(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(backends, "make_chat_model", counting)
    with FakeOpenAI() as server:
        spec = RunSpec(task="hanoi", split="test3", runs=1, backend="openai", model="m", config={"parse_retries": 0},
                       problem_ids=["1", "2", "4"])
        summary = Evaluation(spec, tmp_path, "one", concurrency=2, base_url=server.url, cache=False).run()
    assert summary["records"] == 3 and summary["errors"] == 0 and len(built) == 1


@pytest.mark.real_model
def test_local_models_loading_in_parallel_threads_leave_stdout_and_stderr_alone():
    """llama-cpp-python points fds 1 and 2 at /dev/null around a load; two threads doing so at once used to
    restore each other's /dev/null (reproduced 3 times out of 3 without ``LLAMA_LOCK``)."""
    import subprocess
    import sys

    script = ("import os, threading\n"
              "from map_agent.llm import make_chat_model\n"
              "ts = [threading.Thread(target=make_chat_model, args=('local',), kwargs={'cache': False, 'threads': 1})"
              " for _ in range(4)]\n"
              "[t.start() for t in ts]; [t.join() for t in ts]\n"
              "os.write(1, b'stdout alive'); os.write(2, b'stderr alive')\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=300)
    assert b"stdout alive" in out.stdout and b"stderr alive" in out.stderr


def test_the_local_backend_processes_prompts_with_its_own_thread_count():
    pytest.importorskip("llama_cpp")
    llm = make_chat_model("local", cache=False, threads=1)
    assert llm.client.context_params.n_threads_batch == 1 == llm.client.context_params.n_threads


@pytest.mark.slow
def test_an_eval_against_a_server_that_stops_answering_finishes_by_itself(tmp_path, capsys):
    """The hang test: after the endpoint check every request is held open; the run still ends, on its own."""
    with FakeOpenAI(hang_after=1) as server:
        started = time.monotonic()
        code = main(["eval", "hanoi", "--limit", "1", "--runs", "1", "--backend", "openai", "--base-url", server.url,
                     "--timeout", "0.3", "--max-actions", "1", "--out", str(tmp_path), "--run-id", "r", *QUICK])
        elapsed = time.monotonic() - started
        held = len(server.requests) - 1
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    # an outage is not a planning failure: unscored, counted apart, and the command fails (issue 16)
    assert code == 1 and summary["records"] == 0 and summary["infrastructure_failures"] == 1
    assert summary["module_failures"] >= 1 and held >= 4  # each failed call was retried before it was recorded
    (record,) = read_records(tmp_path / "r" / "records.jsonl")
    assert record["ended_by"] == "infrastructure"
    assert record["failures"] and all("Timeout" in f["error"] for f in record["failures"])
    assert elapsed < 120
