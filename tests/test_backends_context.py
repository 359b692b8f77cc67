"""Know the context window: learn it before a run, count prompts in the server's tokens, fit every request's
reply budget into it, and refuse up front -- in one line -- a module whose prompt cannot fit at all."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fake_openai import FakeOpenAI, completion
from langchain_core.messages import HumanMessage, SystemMessage

from map_agent.config import MAPConfig
from map_agent.llm import make_chat_model
from map_agent.llm.backends import SetupError, check_endpoint
from map_agent.llm.context import ContextWindowError, inspect_server, is_private
from map_agent.llm.preflight import prepare_model
from map_agent.task import get_task


def first_problem(name: str):
    task = get_task(name)
    problem = task.problems(next(iter(task.splits())))[0]
    return task, problem, MAPConfig().for_backend("openai", task).resolve(task, problem)


def words(n: int) -> str:
    """About ``n`` tokens of text in SmolLM2's vocabulary (" word" is one token)."""
    return " word" * n


# -- the real server: llama-cpp-python's, 2,048 tokens, reports no window ---------------------------------------
@pytest.mark.real_model
def test_the_check_learns_llama_cpp_pythons_window_and_tokenizer(llama_server):
    llm = make_chat_model("openai", "m", base_url=llama_server.url, cache=False)
    check_endpoint(llm)
    assert llm.context_length == 2048 and "over-long probe" in llm.context_source
    assert llama_server.alive()
    messages = [SystemMessage("You plan moves." + words(100)), HumanMessage("State: A" + words(20))]
    counted = llm.prompt_tokens(messages)
    served = llm.invoke(messages, max_tokens=1).usage_metadata["input_tokens"]
    assert served <= counted <= served + 40  # exact per message, the template's tokens a little over


@pytest.mark.real_model
def test_a_reply_budget_is_fitted_into_the_window_of_the_real_server(llama_server):
    llm = make_chat_model("openai", "m", base_url=llama_server.url, max_tokens=4096, json_schema="json_object",
                          cache=False)
    check_endpoint(llm)
    messages = [HumanMessage("Reply in JSON.")]
    prompt = llm.prompt_tokens(messages)
    schema = {"type": "object", "properties": {"answer": {"enum": ["yes"]}}, "required": ["answer"]}
    assert llm._get_request_payload(messages)["max_tokens"] == 2048 - prompt
    reply = llm.invoke(messages, response_format=llm.response_format_for(schema))  # sent fitted, and answered
    assert json.loads(reply.content) == {"answer": "yes"}


@pytest.mark.real_model
def test_a_prompt_that_leaves_no_room_for_a_reply_is_refused_naming_the_sizes(llama_server):
    llm = make_chat_model("openai", "m", base_url=llama_server.url, cache=False)
    check_endpoint(llm)
    with pytest.raises(ContextWindowError, match=r"prompt 2,\d{3} tokens \+ reply ≥ 64 > context 2,048 of "
                                                 rf"{llama_server.url}"):
        llm.invoke([HumanMessage(words(2010))])
    assert llama_server.alive()


@pytest.mark.real_model
def test_an_unchecked_model_learns_the_window_from_the_servers_refusal(llama_server):
    llm = make_chat_model("openai", "m", base_url=llama_server.url, cache=False)  # no check: window unknown
    with pytest.raises(ContextWindowError, match="> context 2,048"):
        llm.invoke([HumanMessage(words(2100))])
    assert llm.context_length == 2048 and llm.context_source == "named by a context-length refusal"


@pytest.mark.real_model
def test_the_over_long_probe_goes_to_private_addresses_only(llama_server, monkeypatch):
    import map_agent.llm.context as context

    monkeypatch.setattr(context, "is_private", lambda url: False)  # as if the server were a public API
    info = inspect_server(llama_server.url, "m", None)
    assert info.context_length is None and info.tokenizer.kind == "llama-cpp-python"


def test_private_and_public_endpoints():
    assert is_private("http://localhost:8000/v1") and is_private("http://10.1.2.3/v1")
    assert is_private("http://[::1]:8000/v1") and is_private("http://192.168.0.7:8080/v1")
    assert not is_private("http://8.8.8.8/v1") and not is_private("not a url")


@pytest.mark.real_model
def test_preflight_passes_hanoi_and_refuses_logistics_in_one_line(llama_server):
    llm = make_chat_model("openai", "m", base_url=llama_server.url, cache=False)
    prepare_model(llm, *first_problem("hanoi"))  # 400-1,300-token prompts fit 2,048
    with pytest.raises(SetupError) as refused:
        prepare_model(llm, *first_problem("logistics"))
    message = str(refused.value)
    assert message.startswith("logistics ") and "\n" not in message
    assert f"> context 2,048 of {llama_server.url} (serve a longer context" in message
    assert llama_server.alive()


@pytest.mark.real_model
def test_an_evaluation_is_prepared_against_the_window(llama_server, tmp_path):
    from map_agent.eval.runner import Evaluation, RunSpec

    task, problem, _ = first_problem("logistics")
    spec = RunSpec(task="logistics", split=next(iter(task.splits())), runs=1, backend="openai", model="m",
                   config=MAPConfig(), problem_ids=[problem.id])
    with pytest.raises(SetupError, match=r"logistics \w+: prompt [\d,]+ tokens \+ reply"):
        Evaluation(spec, tmp_path, "r", base_url=llama_server.url, cache=False).prepare()


@pytest.mark.real_model
def test_the_local_model_is_checked_against_its_own_n_ctx():
    llm = make_chat_model("local", n_ctx=1024, threads=1, cache=False)
    with pytest.raises(SetupError, match=r"hanoi \w+: prompt 1,\d{3} tokens \+ reply ≥ \d+ > context 1,024 of "
                                         "the local model"):
        prepare_model(llm, *first_problem("hanoi"))


# -- forced cases (fake servers) --------------------------------------------------------------------------------
def test_a_refusal_at_run_time_teaches_the_window_and_the_call_is_sent_again_fitted():
    refusal = json.dumps({"error": {"message": "This model's maximum context length is 300 tokens. However, "
                                               "you requested 530 tokens", "code": "context_length_exceeded"}})

    def vllm_like(n, request):
        return (400, "application/json", refusal.encode()) if request["body"]["max_tokens"] > 280 else None

    with FakeOpenAI(respond=vllm_like) as fake:
        llm = make_chat_model("openai", "m", base_url=fake.url, max_tokens=512, cache=False)
        assert llm.invoke("hi").content == "{}"
        budgets = [r["body"]["max_tokens"] for r in fake.requests]
    assert budgets[0] == 512 and len(budgets) == 2 and budgets[1] <= 280
    assert llm.context_length == 300


def test_a_given_context_length_is_used_without_asking():
    with FakeOpenAI() as fake:
        llm = make_chat_model("openai", "m", base_url=fake.url, context_length=100, max_tokens=512, cache=False)
        check_endpoint(llm)
        assert (llm.context_length, llm.context_source) == (100, "given")
        llm.invoke("hi")
        assert fake.requests[-1]["body"]["max_tokens"] < 100


class InfoServer:
    """A server that answers GETs too: llama.cpp's llama-server or vLLM, as far as discovery asks them."""

    def __init__(self, gets: dict[str, Any], tokenize: Any) -> None:
        self.gets, self.tokenize, self.tokenized = gets, tokenize, []

    def __enter__(self) -> InfoServer:
        info = self

        class Handler(BaseHTTPRequestHandler):
            def reply(self, status: int, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                found = info.gets.get(self.path)
                self.reply(200 if found else 404, json.dumps(found or {"error": "not found"}).encode())

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path == "/tokenize":
                    info.tokenized.append(body)
                    self.reply(200, json.dumps(info.tokenize(body)).encode())
                elif self.path == "/v1/chat/completions":
                    self.reply(200, completion("{}"))
                else:
                    self.reply(404, b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_llama_server_reports_its_window_in_props_and_tokenizes_each_text_once():
    gets = {"/props": {"default_generation_settings": {"n_ctx": 4096}}}
    with InfoServer(gets, lambda body: {"tokens": body["content"].split()}) as server:
        llm = make_chat_model("openai", "m", base_url=server.url, json_schema="off", cache=False)
        check_endpoint(llm)
        assert (llm.context_length, llm.context_source) == (4096, "GET /props")
        system = SystemMessage("the same long system prompt" + words(1000))
        for question in ("first question", "second question", "first question"):
            llm.prompt_tokens([system, HumanMessage(question)])
        assert [b["content"] for b in server.tokenized] == [system.content, "first question", "second question"]
        assert llm.prompt_tokens([system]) == 1005 + 6 + 16  # the text's tokens, one message, the prompt's frame


def test_vllm_reports_max_model_len_and_tokenizes_with_the_model_name():
    gets = {"/v1/models": {"data": [{"id": "other", "max_model_len": 1}, {"id": "m", "max_model_len": 32768}]}}
    with InfoServer(gets, lambda body: {"count": len(body["prompt"].split()), "model": body["model"]}) as server:
        llm = make_chat_model("openai", "m", base_url=server.url, json_schema="off", cache=False)
        check_endpoint(llm)
        assert llm.context_length == 32768 and "max_model_len" in llm.context_source
        assert llm.prompt_tokens([HumanMessage("a b c")]) == 3 + 6 + 16
        assert server.tokenized[-1] == {"model": "m", "prompt": "a b c", "add_special_tokens": False}
