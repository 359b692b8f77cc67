"""``langgraph dev`` serves the graph offline, and the langgraph-sdk client runs a plan over loopback."""

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_langgraph_dev_and_sdk_plan_over_loopback(tmp_path):
    cli = shutil.which("langgraph", path=str(Path(sys.executable).parent)) or shutil.which("langgraph")
    assert cli, "langgraph-cli is a dev dependency"
    from langgraph_sdk import get_client

    port = free_port()
    env = {**os.environ, "LANGGRAPH_CLI_NO_ANALYTICS": "1", "MAP_AGENT_CACHE_DIR": str(tmp_path / "cache")}
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen([cli, "dev", "--port", str(port), "--host", "127.0.0.1", "--no-browser",
                               "--no-reload", "--config", str(ROOT / "langgraph.json")],
                              cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    async def run_plan():
        client = get_client(url=f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 90
        while True:
            try:
                assistants = await client.assistants.search(graph_id="map")
                break
            except Exception:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                await asyncio.sleep(1)
        assert assistants and assistants[0]["graph_id"] == "map"
        thread = await client.threads.create()
        final = await client.runs.wait(thread["thread_id"], "map", input={"task": "hanoi", "problem_id": "7"},
                                       config={"configurable": {"backend": "oracle"}})
        state = await client.threads.get_state(thread["thread_id"])  # checkpointed: inspectable by thread id
        failing = await client.threads.create()  # a run against an endpoint that does not answer is an error
        run = await client.runs.create(failing["thread_id"], "map", input={"task": "hanoi", "problem_id": "7"},
                                       config={"configurable": {"backend": "openai", "base_url": dead}})
        await client.runs.join(failing["thread_id"], run["run_id"])
        failed = await client.runs.get(failing["thread_id"], run["run_id"])
        return final, state, failed

    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{unused.getsockname()[1]}/v1"
    try:
        final, state, failed = asyncio.run(run_plan())
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
    assert final["progress"]["status"] == "goal"
    assert [m["disk"] for m in final["progress"]["plan"]] == [2, 0, 2, 1, 2]
    assert final["score"]["solved"] and final["score"]["n_invalid"] == 0  # scored by the environment
    assert state["values"]["progress"]["plan"] == final["progress"]["plan"]
    assert "hidden" not in json.dumps(final) and "hidden" not in json.dumps(state["values"])  # no ground truth
    assert failed["status"] == "error"


def test_the_served_graph_ends_with_the_environments_score():
    from map_agent.graph.server import make_graph

    run = {"configurable": {"backend": "oracle"}}
    final = make_graph(run).invoke({"task": "hanoi", "problem_id": "7"}, run)
    assert final["score"]["solved"] and final["score"]["n_actions"] == 5 == len(final["progress"]["plan"])
    assert final["score"]["goal_reached"] and len(final["score"]["steps"]) == 5


def test_base_url_and_json_schema_are_set_per_run_in_configurable():
    from fake_openai import FakeOpenAI

    from map_agent.graph.server import make_graph

    with FakeOpenAI() as server:
        run = {"configurable": {"backend": "openai", "model": "served-model", "base_url": server.url,
                                "json_schema": "json_object"}}
        final = make_graph(run).invoke({"task": "hanoi", "problem_id": "7",
                                        "map_config": {"parse_retries": 0, "monitor_retries": 0}}, run)
        assert server.requests, "the run's base_url was not used"
        body = server.requests[0]["body"]
    assert body["model"] == "served-model" and body["response_format"]["type"] == "json_object"
    assert "score" in final and final["score"]["solved"] is False


def keys(value) -> set[str]:
    """Every key of a JSON value, at any depth."""
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in keys(v)}
    return set()


def test_clients_see_the_public_problem_only():
    from map_agent.graph.server import make_graph
    from map_agent.tasks import hanoi

    assert hanoi.problem(7).hidden  # the optimal plan, which a client must not read
    run = {"configurable": {"backend": "oracle"}}
    final = make_graph(run).invoke({"task": "hanoi", "problem_id": "7"}, run)
    assert "hidden" not in keys(final) and final["problem"]["optimal_length"] is None
    assert final["score"]["solved"] and final["score"]["n_actions"] == 5  # the oracles still read it server-side


def test_an_unreachable_endpoint_fails_the_run_at_once_in_one_line():
    from map_agent.graph.server import make_graph
    from map_agent.llm.backends import SetupError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/v1"  # nothing listens (the socket is bound, not listening)
        run = {"configurable": {"backend": "openai", "model": "m", "base_url": url}}
        started = time.monotonic()
        with pytest.raises(SetupError, match=rf"^{url}: cannot connect") as failed:
            make_graph(run).invoke({"task": "hanoi", "problem_id": "7"}, run)
    assert time.monotonic() - started < 10 and "\n" not in str(failed.value)


def test_a_run_whose_every_module_call_failed_ends_in_an_error():
    from fake_openai import FakeOpenAI

    from map_agent.graph.server import RunFailedError, make_graph

    def refuse_after_check(n, request):  # the endpoint check passes; every module call is refused
        return None if n == 0 else (400, "application/json", b'{"error": {"message": "model overloaded"}}')

    with FakeOpenAI(respond=refuse_after_check) as server:
        run = {"configurable": {"backend": "openai", "model": "m", "base_url": server.url,
                                "json_schema": "json_object", "context_length": 100_000}}
        with pytest.raises(RunFailedError, match=r"^all \d+ module calls failed; the first, \w+: .*model overloaded"):
            make_graph(run).invoke({"task": "hanoi", "problem_id": "7",
                                    "map_config": {"parse_retries": 0, "monitor_retries": 0}}, run)


@pytest.mark.real_model
def test_a_served_run_that_cannot_fit_the_real_servers_window_fails_before_any_module_call(llama_server):
    from map_agent.graph.server import make_graph
    from map_agent.llm.backends import SetupError

    run = {"configurable": {"backend": "openai", "model": "m", "base_url": llama_server.url}}
    with pytest.raises(SetupError, match=rf"^logistics \w+: prompt [\d,]+ tokens .* > context 2,048 of "
                                         rf"{llama_server.url}"):
        make_graph(run).invoke({"task": "logistics", "problem_id": "2"}, run)
