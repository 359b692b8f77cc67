"""Structured output real servers accept: the schema form is a name, "auto" finds the first the server takes,
a 5xx on a probe is a refusal (unless the probe killed the server), no form at all means plain prompting, and
every schema that leaves the process is the grammar-safe one."""

from __future__ import annotations

import json

import pytest
from fake_openai import FakeOpenAI
from langchain_core.messages import HumanMessage

from map_agent.llm import make_chat_model
from map_agent.llm.backends import SetupError, check_endpoint
from map_agent.llm.schema import GRAMMAR_MAX_STRING
from map_agent.modules.schemas import outputs_for
from map_agent.task import TASKS, get_task


def form_of(request) -> str:
    body = request["body"]
    if "guided_json" in body:
        return "guided_json"
    return (body.get("response_format") or {}).get("type", "off")


def error(status: int, message: str) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps({"error": {"message": message}}).encode()


# -- the real server (llama-cpp-python's own) ----------------------------------------------------------------
@pytest.mark.real_model
def test_auto_picks_json_object_on_llama_cpp_pythons_server(llama_server):
    llm = make_chat_model("openai", "m", base_url=llama_server.url, cache=False)
    assert llm.json_schema_form == "auto"  # the default
    check_endpoint(llm)
    assert llm.json_schema_form == "json_object" and llama_server.alive()


@pytest.mark.real_model
def test_every_module_schema_of_every_task_is_accepted_by_the_real_server(llama_server):
    """The raw module schemas (2,000-character reasoning) crash this server's process with json_object; what is
    sent is the grammar-safe form, which it takes."""
    llm = make_chat_model("openai", "m", base_url=llama_server.url, json_schema="json_object", max_tokens=4,
                          cache=False)
    schemas = {}
    for name in TASKS:
        task = get_task(name)
        for reasoning in (True, False):
            for module, model in outputs_for(task, reasoning).items():
                schemas.setdefault(json.dumps(model.model_json_schema(), sort_keys=True), f"{name} {module}")
    for text, where in schemas.items():
        reply = llm.invoke([HumanMessage("Reply in JSON.")], response_format=llm.response_format_for(json.loads(text)))
        assert reply.response_metadata.get("finish_reason") in ("length", "stop"), where  # a 200 with a reply
    assert llama_server.alive(), "a schema crashed the server"


# -- forced failure modes (the fake server) -------------------------------------------------------------------
def test_a_5xx_on_a_form_counts_as_a_refusal_and_the_next_form_is_tried():
    def server(n, request):  # llama-cpp-python's answer to json_schema: a 500, then it goes on serving
        if form_of(request) == "json_schema":
            return error(500, "Input should be 'text' or 'json_object'")
        return None

    with FakeOpenAI(respond=server) as fake:
        llm = make_chat_model("openai", "m", base_url=fake.url, cache=False)
        check_endpoint(llm)
        assert [form_of(r) for r in fake.requests] == ["json_schema", "json_object"]
    assert llm.json_schema_form == "json_object"


def test_a_probe_that_kills_the_server_fails_in_one_line():
    fake = FakeOpenAI()

    def crash(n, request):
        server = fake._server
        server.shutdown()  # stop serving and listening, then answer this last request with a 500
        server.server_close()
        return error(500, "Segmentation fault")

    fake.respond = crash
    with fake:
        llm = make_chat_model("openai", "m", base_url=fake.url, timeout=5, cache=False)
        with pytest.raises(SetupError, match=r"stopped answering after the json_schema schema form probe") as e:
            check_endpoint(llm)
    assert "\n" not in str(e.value)


def test_a_server_that_takes_no_form_is_prompted_without_a_schema_with_a_warning():
    def refuse_schemas(n, request):
        return error(400, "response_format is not supported") if form_of(request) != "off" else None

    with FakeOpenAI(respond=refuse_schemas) as fake:
        llm = make_chat_model("openai", "m", base_url=fake.url, cache=False)
        with pytest.warns(RuntimeWarning, match="takes no JSON schema form"):
            check_endpoint(llm)
        assert llm.json_schema_form == "off" and not llm.json_schema_decoding
        llm.invoke("hi")
        assert form_of(fake.requests[-1]) == "off"


def test_guided_json_is_tried_when_the_standard_forms_are_refused_and_goes_in_the_body():
    def old_vllm(n, request):
        return error(400, "unsupported response_format") if form_of(request) != "guided_json" else None

    with FakeOpenAI(respond=old_vllm) as fake:
        llm = make_chat_model("openai", "m", base_url=fake.url, cache=False)
        check_endpoint(llm)
        assert llm.json_schema_form == "guided_json"
        llm.invoke("hi", response_format=llm.response_format_for({"type": "object"}))
        body = fake.requests[-1]["body"]
    assert "response_format" not in body and body["guided_json"] == {"type": "object"}


def test_an_unchecked_auto_model_sends_no_schema_until_the_check_resolves_it():
    from map_agent.config import MAPConfig
    from map_agent.llm.preflight import representative_input
    from map_agent.modules import LLM_MODULES
    from map_agent.tasks import hanoi

    task, problem = get_task("hanoi"), hanoi.problem(7)
    inp = representative_input("Evaluator", task, problem, MAPConfig().resolve(task, problem))
    with FakeOpenAI() as fake:
        llm = make_chat_model("openai", "m", base_url=fake.url, cache=False)
        module = LLM_MODULES["Evaluator"](task, problem, llm, parse_retries=0)
        assert module(inp).ok and form_of(fake.requests[-1]) == "off"
        check_endpoint(llm)
        assert module(inp).ok and form_of(fake.requests[-1]) == "json_schema"


@pytest.mark.parametrize("given,form", [(True, "auto"), (False, "off"), ("json_object", "json_object"),
                                        ("guided_json", "guided_json"), ("off", "off")])
def test_the_form_is_a_name_and_booleans_still_work(given, form):
    assert make_chat_model("openai", "m", api_key="k", json_schema=given, cache=False).json_schema_form == form


def test_an_unknown_form_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown form 'xml'"):
        make_chat_model("openai", "m", api_key="k", json_schema="xml", cache=False)


@pytest.mark.parametrize("form", ["json_schema", "json_object", "guided_json"])
def test_every_schema_sent_is_the_grammar_safe_one(form):
    raw = outputs_for(get_task("hanoi"), True)["Monitor"].model_json_schema()
    assert "2000" in json.dumps(raw)
    with FakeOpenAI() as fake:
        llm = make_chat_model("openai", "m", base_url=fake.url, json_schema=form, cache=False)
        llm.invoke("hi", response_format=llm.response_format_for(raw))
        sent = json.dumps(fake.requests[-1]["body"])
    assert "2000" not in sent and f'"maxLength": {GRAMMAR_MAX_STRING}' in sent


def test_an_explicit_form_the_server_refuses_fails_the_check_naming_it():
    with FakeOpenAI(respond=lambda n, r: error(400, "unknown field guided_json")) as fake:
        llm = make_chat_model("openai", "m", base_url=fake.url, json_schema="guided_json", cache=False)
        with pytest.raises(SetupError, match="refused the guided_json schema form"):
            check_endpoint(llm)

