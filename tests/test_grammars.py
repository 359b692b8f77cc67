"""State-dependent reply grammars (``--actor-grammar``, ``--predictor-grammar``) and ``--no-revisit``: the schemas
Hanoi writes for sample states, that they reach the request, that a real server takes them, and that the defaults
are the original's."""

import itertools

import pytest
from fake_openai import FakeOpenAI

from map_agent.config import MAPConfig
from map_agent.llm import make_chat_model
from map_agent.llm.backends import SetupError
from map_agent.llm.preflight import prepare_model, representative_input
from map_agent.llm.schema import grammar_friendly
from map_agent.modules import build_modules
from map_agent.modules.schemas import ActorInput, PredictorInput
from map_agent.search.algorithms import Branch, Choice, search
from map_agent.search.memo import Ctx, key
from map_agent.search.plan import Progress, Step, advance
from map_agent.task import canonical, get_task
from map_agent.tasks import hanoi
from map_agent.tasks.hanoi import PEGS, HanoiMove, HanoiState

jsonschema = pytest.importorskip("jsonschema")

TASK = get_task("hanoi")
P = hanoi.problem(7)  # A=[0, 2], B=[1], C=[]
S = TASK.start(P)
G = TASK.goal(P)
GRAMMARS = {"actor_grammar": "legal_source", "predictor_grammar": "configurations"}


def reply_schemas(state, **config):
    """The Actor's and the Predictor's reply schemas in ``state``, as a module would send them."""
    resolved = MAPConfig(**config).resolve(TASK, P)
    modules = build_modules(TASK, P, resolved, make_chat_model("openai", "m", api_key="k", cache=False))
    action = TASK.legal_actions(state, P)[0]
    return (modules["Actor"].reply_schema(ActorInput(state=state, goal=G, n_actions=2)),
            modules["Predictor"].reply_schema(PredictorInput(state=state, action=action)))


def accepts(schema, value) -> bool:
    return jsonschema.Draft202012Validator(schema).is_valid(value)


def moves(*triples):
    return {"actions": [{"disk": d, "source": s, "target": t} for d, s, t in triples]}


# -- the schemas -----------------------------------------------------------------------------------------------
def test_the_actor_grammar_admits_the_top_number_of_a_non_empty_list_only():
    actor, _ = reply_schemas(S, **GRAMMARS)
    assert accepts(actor, moves((2, "A", "B"), (1, "B", "C")))
    assert accepts(actor, moves((2, "A", "B"), (2, "A", "C")))  # the target is the Monitor's to judge
    assert accepts(actor, moves((1, "B", "A")))  # Rule 2 broken (1 onto 2), Rule 1 kept: admitted
    assert not accepts(actor, moves((0, "A", "C")))  # 0 lies under 2
    assert not accepts(actor, moves((2, "C", "A")))  # C is empty
    assert not accepts(actor, moves((1, "A", "C")))  # 1 is not in A
    assert not accepts(actor, moves((2, "A", "A")))  # not a move
    legal = {"actions": [m.model_dump() for m in TASK.legal_actions(S, P)][:4]}
    assert accepts(actor, legal)


def test_the_actor_grammar_follows_the_state():
    state = HanoiState(A=[3], B=[0, 1, 2], C=[])
    actor, _ = reply_schemas(state, **GRAMMARS)
    assert accepts(actor, moves((3, "A", "C"), (2, "B", "C")))
    assert not accepts(actor, moves((2, "A", "C")))  # the top of A in the three-disk start, not here
    assert not accepts(actor, moves((0, "B", "C")))


def test_the_predictor_grammar_admits_every_configuration_of_the_same_numbers_and_nothing_else():
    _, predictor = reply_schemas(S, **GRAMMARS)
    configurations = [{p: [d for d, at in zip([0, 1, 2], where, strict=True) if at == p] for p in PEGS}
                      for where in itertools.product(PEGS, repeat=3)]
    assert len(configurations) == 27 and all(accepts(predictor, {"next_state": c}) for c in configurations)
    for wrong in ({"A": [0, 2], "B": [1], "C": [2]},  # a number twice
                  {"A": [0], "B": [1], "C": []},  # a number lost
                  {"A": [2, 0], "B": [1], "C": []},  # a list not increasing
                  {"A": [0, 2], "B": [1], "C": [3]},  # a number invented
                  {"A": [0, 2], "B": [1]}):  # a list missing
        assert not accepts(predictor, {"next_state": wrong}), wrong


def test_the_defaults_send_the_modules_static_schemas():
    actor, predictor = reply_schemas(S)
    outputs = build_modules(TASK, P, MAPConfig().resolve(TASK, P), make_chat_model(
        "openai", "m", api_key="k", cache=False))
    assert actor == outputs["Actor"].output_model.model_json_schema()
    assert predictor == outputs["Predictor"].output_model.model_json_schema()
    assert (MAPConfig().actor_grammar, MAPConfig().predictor_grammar, MAPConfig().revisit) == ("static", "static", True)
    assert MAPConfig(**GRAMMARS, revisit=False).deviations() == {**GRAMMARS, "revisit": False}


def test_a_grammar_the_task_cannot_write_fails_when_the_run_is_configured():
    cogeval = get_task("cogeval")
    problem = cogeval.problems(next(iter(cogeval.splits())))[0]
    with pytest.raises(ValueError, match="actor_grammar: cogeval has no 'legal_source' grammar for the Actor"):
        MAPConfig(actor_grammar="legal_source").resolve(cogeval, problem)


# -- the request -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("form", ["json_object", "json_schema"])
def test_the_restricted_schema_is_what_the_request_carries(form):
    resolved = MAPConfig(**GRAMMARS).resolve(TASK, P)
    with FakeOpenAI() as fake:
        llm = make_chat_model("openai", "m", base_url=fake.url, json_schema=form, cache=False)
        modules = build_modules(TASK, P, resolved, llm)
        for name, restricted in (("Actor", hanoi.legal_source_schema(S)),
                                 ("Predictor", hanoi.configurations_schema(S))):
            modules[name](representative_input(name, TASK, P, resolved))
            body = fake.requests[-1]["body"]["response_format"]
            sent = body["schema"] if form == "json_object" else body["json_schema"]["schema"]
            assert sent["$defs"][TASK.Action.__name__ if name == "Actor" else TASK.State.__name__] == \
                grammar_friendly(restricted)
        # the prompt still shows the static schema, so its prefix (and the prompt cache's) is shared by all states
        system = fake.requests[-1]["body"]["messages"][0]["content"]
        assert "anyOf" not in system


def test_a_grammar_without_schema_decoding_fails_before_the_run():
    with FakeOpenAI() as fake:
        llm = make_chat_model("openai", "m", base_url=fake.url, json_schema="off", cache=False)
        resolved = MAPConfig(actor_grammar="legal_source").resolve(TASK, P)
        with pytest.raises(SetupError, match="actor_grammar legal_source: a reply grammar needs"):
            prepare_model(llm, TASK, P, resolved)
        prepare_model(llm, TASK, P, MAPConfig().resolve(TASK, P))  # the static schemas need nothing


@pytest.mark.real_model
def test_the_real_server_takes_the_restricted_schemas_and_replies_inside_them(llama_server):
    """llama-cpp-python's server has crashed on schemas it could not turn into a grammar; these it takes, and its
    replies fall inside them (four disks: 81 configurations)."""
    problem = hanoi.problem(30)
    resolved = MAPConfig(**GRAMMARS, prompts="ft").resolve(TASK, problem)
    llm = make_chat_model("openai", "m", base_url=llama_server.url, json_schema="json_object", max_tokens=96,
                          cache=False)
    modules = build_modules(TASK, problem, resolved, llm)
    for name in ("Actor", "Predictor"):
        inp = representative_input(name, TASK, problem, resolved)
        result = modules[name](inp)
        assert result.ok, result.record.error
        assert accepts(modules[name].reply_schema(inp), result.output.model_dump(mode="json"))
    assert llama_server.alive()


# -- no revisit --------------------------------------------------------------------------------------------------
TO_B = HanoiMove(disk=2, source="A", target="B")
TO_C = HanoiMove(disk=2, source="A", target="C")
SB, SC = TASK.apply(S, TO_B, P), TASK.apply(S, TO_C, P)


def tables(value_b: int, value_c: int) -> dict:
    """One layer, two valid branches: TO_B to SB valued ``value_b``, TO_C to SC valued ``value_c``."""
    return {"proposals": {key(S, G, 0): {"actions": [TO_B.model_dump(), TO_C.model_dump()]}},
            "verdicts": {key(S, TO_B): {"valid": True}, key(S, TO_C): {"valid": True}},
            "predictions": {key(S, TO_B): {"next_state": SB.model_dump()},
                            key(S, TO_C): {"next_state": SC.model_dump()}},
            "achieved": {key(s, G): {"achieved": False} for s in (S, SB, SC)},
            "values": {key(SB, G): {"steps_to_goal": value_b}, key(SC, G): {"steps_to_goal": value_c}}}


def chosen(visited, **config) -> dict:
    ctx = Ctx(task=TASK, problem=P, config=MAPConfig(layers=1, **config).resolve(TASK, P), tables=tables(3, 5))
    return search(ctx, S, G, visited=frozenset(canonical(s) for s in visited)).chosen.action


def test_no_revisit_passes_over_a_branch_back_into_the_plan_only_while_another_exists():
    assert chosen([SB]) == TO_B.model_dump()  # the original takes the best value, visited or not
    assert chosen([SB], revisit=False) == TO_C.model_dump()
    assert chosen([], revisit=False) == TO_B.model_dump()  # no revisit at stake: the same choice
    assert chosen([SC], revisit=False) == TO_B.model_dump()
    assert chosen([SB, SC], revisit=False) == TO_B.model_dump()  # every branch revisits: the best one still


def test_the_plan_loop_counts_every_state_it_has_been_in_as_visited():
    back = HanoiMove(disk=2, source="B", target="A")  # SB -> S: the plan came from SB
    step = Step(index=0, state=SB.model_dump(), goal=G.model_dump(), goal_index=0,
                choice=Choice(chosen=Branch(action=back.model_dump(), predicted=S.model_dump(), value=4),
                              branches=[]))
    progress = Progress(goals=[G.model_dump()], current=S.model_dump(), plan=[back.model_dump()], steps=[step])
    for revisit, expected in ((True, TO_B), (False, TO_C)):
        config = MAPConfig(layers=1, actor_history=False, modules={"TaskDecomposer": "off"}, revisit=revisit)
        ctx = Ctx(task=TASK, problem=P, config=config.resolve(TASK, P), tables=tables(3, 5))
        after, _ = advance(ctx, progress)
        assert after.plan[1] == expected.model_dump()


@pytest.mark.parametrize("method", ["icl", "cot"])
def test_a_baseline_request_keeps_its_static_reply_schema(tmp_path, method):
    """Baseline calls go through the same request path as the modules but have no grammar option: each of their
    requests must still carry its reply schema, and no call may fail on the missing option (it did, found by the
    real-server suite: every baseline call against a schema-decoding server failed before sending)."""
    import json

    from map_agent.cli import main
    from map_agent.eval.records import read_records

    with FakeOpenAI() as fake:
        code = main(["eval", "hanoi", "--method", method, "--limit", "1", "--runs", "1", "--backend", "openai",
                     "--base-url", fake.url, "--no-cache", "--out", str(tmp_path), "--run-id", method])
    sent = [r["body"] for r in fake.requests if r["body"].get("messages")]
    assert code == 0
    assert sent and sent[-1].get("response_format")  # the last request is a baseline call
    calls = [c for r in read_records(tmp_path / method / "records.jsonl") for c in r["calls"]]
    assert calls and not [c["error"] for c in calls if c.get("error")], json.dumps(calls)[:2000]
