"""``langgraph dev`` serves the graph offline, and the langgraph-sdk client runs a plan over loopback."""

import asyncio
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
        return final, state

    try:
        final, state = asyncio.run(run_plan())
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
    assert final["progress"]["status"] == "goal"
    assert [m["disk"] for m in final["progress"]["plan"]] == [2, 0, 2, 1, 2]
    assert final["score"]["solved"] and final["score"]["n_invalid"] == 0  # scored by the environment
    assert state["values"]["progress"]["plan"] == final["progress"]["plan"]


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
