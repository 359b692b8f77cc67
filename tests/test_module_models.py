"""Fine-tuned modules behind one server: each MAP module's requests ask for its own model name (``--module-model``),
so one base model plus one LoRA adapter per module serve a whole run (llama.cpp's server here, vLLM's
``--lora-modules`` on a GPU)."""

from __future__ import annotations

import json

import pytest
from fake_openai import FakeOpenAI

from map_agent import MAPAgent, MAPConfig, cli
from map_agent.learned.adapters import adapter_path
from map_agent.llm import DiskPromptCache, make_chat_model
from map_agent.llm.backends import embedded_model_path
from map_agent.llm.cache import CACHE_HIT
from map_agent.tasks import hanoi

ROUTES = {"Monitor": "map-hanoi-monitor", "Predictor": "map-hanoi-predictor"}


def asks(module: str | None) -> dict:
    """The run metadata every MAP module call carries (``modules.base.LLMModule``)."""
    return {"metadata": {"map_agent_module": module}} if module else {}


def test_each_module_asks_for_its_model_and_the_rest_for_the_base(tmp_path):
    with FakeOpenAI() as fake:
        llm = make_chat_model("openai", "base", base_url=fake.url, json_schema="off", module_models=ROUTES,
                              cache=False)
        for module in ("Monitor", "Predictor", "Actor", None):
            llm.invoke("hi", config=asks(module))
        assert [r["body"]["model"] for r in fake.requests] == ["map-hanoi-monitor", "map-hanoi-predictor", "base",
                                                                 "base"]
        fake.requests.clear()
        # a whole run through the graph (the fake's smallest replies: a subgoal, then "achieved")
        llm = make_chat_model("openai", "base", base_url=fake.url, json_schema="off", cache=False,
                              module_models={"Orchestrator": "map-hanoi-orchestrator"})
        config = MAPConfig(max_actions=1, monitor_retries=0, parse_retries=0, search=False)
        # one call at a time, so the requests arrive in the order the calls are logged (the start's TaskDecomposer
        # and final-goal Orchestrator calls share a superstep)
        result = MAPAgent(hanoi.problem(7), llm=llm, config=config).plan(max_concurrency=1)
        asked = [r["body"]["model"] for r in fake.requests]
    called = [c["module"] for c in result.calls]
    assert "TaskDecomposer" in called and "Orchestrator" in called
    assert asked == ["map-hanoi-orchestrator" if m == "Orchestrator" else "base" for m in called]


def test_a_routed_reply_is_cached_apart_from_the_base_models(tmp_path):
    cache = DiskPromptCache(tmp_path / "cache")
    with FakeOpenAI() as fake:
        routed = make_chat_model("openai", "base", base_url=fake.url, json_schema="off", module_models=ROUTES,
                                 cache=cache)
        plain = make_chat_model("openai", "base", base_url=fake.url, json_schema="off", cache=cache)
        again = make_chat_model("openai", "base", base_url=fake.url, json_schema="off", module_models=ROUTES,
                                cache=cache)
        assert not routed.invoke("hi", config=asks("Monitor")).response_metadata.get(CACHE_HIT)
        assert not plain.invoke("hi", config=asks("Monitor")).response_metadata.get(CACHE_HIT)  # not the adapter's
        assert again.invoke("hi", config=asks("Monitor")).response_metadata.get(CACHE_HIT)  # the same routes: a hit
    assert len(fake.requests) == 2


@pytest.mark.slow
@pytest.mark.real_model
def test_llama_cpp_server_with_a_base_and_an_adapter_serves_each_module_its_model(tmp_path, monkeypatch, capsys):
    """llama-cpp-python's server from a config file holding the embedded base (``smollm2``) and the shipped adapter
    on it (``map-hanoi``); the TaskDecomposer, which the adapter learnt worst, stays on the base."""
    import llama_server

    port = llama_server.free_port()
    threads = {"n_threads": 1, "n_threads_batch": 1}
    config = tmp_path / "models.json"
    config.write_text(json.dumps({"host": "127.0.0.1", "port": port, "models": [
        {"model": str(embedded_model_path()), "model_alias": "smollm2", **threads},
        {"model": str(embedded_model_path()), "model_alias": "map-hanoi", "lora_path": str(adapter_path("map-hanoi")),
         **threads}]}))
    monkeypatch.setattr(llama_server, "free_port", lambda: port)  # the config file names the port it serves on
    server = llama_server.LlamaServer(tmp_path / "server.log", None, "--config_file", str(config))
    try:
        adapted = make_chat_model("openai", "smollm2", base_url=server.url, module_models={"Monitor": "map-hanoi"},
                                  json_schema="off", max_tokens=24, cache=False)
        prompt = "Tower of Hanoi, A = [0, 1, 2], B = [], C = []. Is moving disk 0 from A to C valid?"
        by_adapter, by_base = (adapted.invoke(prompt, config=asks(m)).content for m in ("Monitor", "Actor"))
        assert by_adapter != by_base  # a name the server did not know would have fallen back to the base

        routes = [arg for m in ("Actor", "Monitor", "Predictor", "Evaluator", "Orchestrator")
                  for arg in ("--module-model", f"{m}=map-hanoi")]
        code = cli.main(["eval", "hanoi", "--split", "test3", "--limit", "1", "--runs", "1", "--out", str(tmp_path),
                         "--run-id", "r", "--backend", "openai", "--base-url", server.url, "--model", "smollm2",
                         *routes, "--prompts", "ft", "--no-actor-history", "--max-actions", "1",
                         "--monitor-retries", "0", "--parse-retries", "1", "--max-tokens", "192"])
        assert code == 0, capsys.readouterr().err
        assert server.alive()
    finally:
        server.stop()
    (record,) = [json.loads(line) for line in (tmp_path / "r" / "records.jsonl").read_text().splitlines()]
    assert record.get("error") is None and record["usage"]["total"]["model_calls"] > 0
    spec = json.loads((tmp_path / "r" / "config.json").read_text())
    assert spec["module_models"]["Monitor"] == "map-hanoi" and "TaskDecomposer" not in spec["module_models"]
    assert any(not call["failed"] for call in record["calls"] if call["module"] != "TaskDecomposer")


def test_a_served_graph_routes_modules_by_its_configurable():
    """``langgraph dev``: the run's configurable carries the routes like the CLI's --module-model."""
    from map_agent.graph.server import make_graph

    with FakeOpenAI() as fake:
        run = {"configurable": {"backend": "openai", "model": "base", "base_url": fake.url, "json_schema": "off",
                                "module_models": {"Orchestrator": "map-hanoi-orchestrator"}}}
        make_graph(run).invoke({"task": "hanoi", "problem_id": "7",
                                "map_config": {"parse_retries": 0, "monitor_retries": 0, "max_actions": 1}}, run)
        asked = {r["body"]["model"] for r in fake.requests}
    assert asked == {"base", "map-hanoi-orchestrator"}
