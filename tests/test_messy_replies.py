"""Real replies are messy: what is unambiguous is parsed, what is not is retried with feedback saying why, and
every reply's raw text lands in the records; summaries stay honest when calls fail (no move, no % invalid)."""

import csv
import io
import json

import pytest
from messy_model import READABLE, REFUSAL, MessyChatModel
from pydantic import BaseModel

from map_agent import MAPAgent, MAPConfig
from map_agent.eval.diagnostics import aggregate, diagnose_record
from map_agent.eval.report import build_report
from map_agent.eval.runner import Evaluation, RunSpec, summarise
from map_agent.llm import DiskPromptCache
from map_agent.modules import LLM_MODULES
from map_agent.modules.base import CUT_OFF, REPLY_CHARS, RawReply, ReplyError, make_input, parse_reply
from map_agent.task import get_task
from map_agent.tasks import hanoi


class Verdict(BaseModel):
    valid: bool
    feedback: str = ""


@pytest.mark.parametrize("text", [
    '{"valid": true}',
    'Thinking about {the state}: the move is fine.\n{"valid": true}\nHope that helps {really}.',
    'Here is an example of the input: {"state": {"A": [0]}}\n```json\n{"valid": true}\n```',
    'Goal: A = [], B = [], C = [0, 1, 2] is what we want, so {"valid": true}',
    '{"valid": true} and, to repeat myself, {"valid": true}',  # one distinct object, twice
    '```\n{"valid": true}\n```\nOr in other words {"valid": false}',  # the fenced block decides
])
def test_an_unambiguous_reply_is_parsed(text):
    assert parse_reply(text, Verdict) == Verdict(valid=True)


@pytest.mark.parametrize(("text", "error"), [
    ("", "the reply was empty"),
    ("  \n", "the reply was empty"),
    (REFUSAL, "no JSON object was found"),
    ('{"valid": true} or maybe {"valid": false}', "2 different JSON objects that fit the schema"),
    ('```json\n{"valid": true}\n```\n```json\n{"valid": false}\n```', "2 different JSON objects"),
    ('A {stray} brace, then {"valid": tru, "feedback": "the object the model meant"}', "malformed"),
    ('{"verdict": "fine"}', "does not fit the schema: valid: Field required"),
])
def test_an_unusable_reply_says_why(text, error):
    with pytest.raises(ReplyError, match=error):
        parse_reply(text, Verdict)


def test_a_long_reply_is_kept_capped_with_a_marker_saying_how_much_was_cut():
    raw = RawReply.of("x" * 5000 + "END", "length", cache_hit=False)
    assert raw.chars == 5003 and raw.finish_reason == "length" and raw.text.endswith("END")
    assert "[... 3003 characters cut ...]" in raw.text and len(raw.text) < REPLY_CHARS + 40


def _plan(llm, problem=7, **config):
    return MAPAgent(hanoi.problem(problem), llm=llm, cache=False, config=MAPConfig(**config)).plan()


def test_a_plan_whose_replies_are_fenced_prose_or_echoed_is_solved_without_failures():
    messy = [s for s in READABLE if s != "clean"]
    llm = MessyChatModel(mix=messy)
    result = _plan(llm)
    assert {r["style"] for r in llm.requests} == set(messy)  # every style was met...
    assert result.solved and not result.failures and result.usage.total.failures == 0  # ...and read
    assert result.usage.total.model_calls == result.usage.total.calls  # no call needed a re-ask
    calls = result.record()["calls"]
    assert calls and all(len(c["replies"]) == 1 and c["replies"][0]["error"] is None for c in calls)
    assert {c["replies"][0]["text"][:3] for c in calls} >= {"```", "Sur", "Goa"}  # the raw text, as written


FEEDBACK = {"cut": CUT_OFF, "empty": "the reply was empty", "refusal": "no JSON object was found in the reply"}


@pytest.mark.parametrize("style", list(FEEDBACK))
def test_an_unreadable_reply_is_retried_with_feedback_saying_why(style):
    task, problem = get_task("hanoi"), hanoi.problem(7)
    llm = MessyChatModel(script={"Orchestrator": [style, "clean"]})
    module = LLM_MODULES["Orchestrator"](task, problem, llm, parse_retries=2)
    result = module(make_input("Orchestrator", task, {"state": problem.start, "goal": problem.goal}))
    assert result.ok and result.record.model_calls == 2
    retry = llm.requests[1]
    assert retry["attempt"] == 1 and FEEDBACK[style] in retry["messages"][-1].content
    first, second = result.record.replies
    assert first.error and second.error is None
    assert first.finish_reason == ("length" if style == "cut" else "stop")


@pytest.mark.parametrize("style", list(FEEDBACK))
def test_an_unreadable_reply_that_persists_is_the_calls_recorded_failure(style):
    result = _plan(MessyChatModel(script={"Actor": [style]}), max_actions=1, monitor_retries=0, parse_retries=1)
    assert result.actions == [] and not result.solved  # recorded, never raised
    actor = [c for c in result.record()["calls"] if c["module"] == "Actor"]
    assert actor and all(c["failed"] and c["output"] is None for c in actor)
    for call in actor:
        assert len(call["replies"]) == 2  # the first reply and the one re-ask
        assert all(r["finish_reason"] == ("length" if style == "cut" else "stop") for r in call["replies"])
        assert all(r["error"] for r in call["replies"]) and call["error"].startswith("unparseable reply after 2")
        if style == "cut":
            assert all(r["text"].startswith('```json\n{"actions"') for r in call["replies"])
            assert "cut off at the token limit" in call["error"]
        else:
            assert all(r["text"] == ("" if style == "empty" else REFUSAL) for r in call["replies"])
    failures = result.record()["failures"]
    assert {f["module"] for f in failures} == {"Actor"} and all(f["replies"] for f in failures)


def test_a_rerun_from_the_cache_sends_no_model_call_and_counts_every_hit(tmp_path):
    cache = DiskPromptCache(tmp_path / "cache")
    runs = [MAPAgent(hanoi.problem(7), llm=MessyChatModel(mix=list(READABLE)), cache=cache).plan() for _ in "12"]
    first, second = (r.usage.total for r in runs)
    assert first.model_calls > 0 and first.cache_hits == 0
    assert second.model_calls == 0 and second.cache_hits == first.model_calls and second.input_tokens == 0


def test_an_evaluation_whose_actor_and_decomposer_always_fail_is_summarised_honestly(tmp_path):
    """Every Actor reply a refusal, every TaskDecomposer reply empty: no move is made, so % invalid is undefined
    (not 0), and the diagnostics name both modules, ranked first, with their failed calls in table and figure."""
    ids = [p.id for p in get_task("hanoi").problems("test3")[:2]]
    config = MAPConfig(parse_retries=1, monitor_retries=0, max_actions=2)
    spec = RunSpec(task="hanoi", split="test3", runs=1, backend="scripted", model=None, config=config,
                   problem_ids=ids)
    llm = MessyChatModel(script={"Actor": ["refusal"], "TaskDecomposer": ["empty"]}, mix=list(READABLE))
    summary = Evaluation(spec, tmp_path, "messy", llm=llm, cache=False).run()

    records = [json.loads(line) for line in (tmp_path / "messy" / "records.jsonl").read_text().splitlines()]
    assert len(records) == 2 and all(r["plan"] == [] for r in records)
    for record in records:
        calls = record["calls"]
        assert {c["module"] for c in calls} >= {"Actor", "TaskDecomposer", "Orchestrator"}
        assert all(c["replies"] and all("finish_reason" in r for r in c["replies"]) for c in calls)
        assert all(r["text"] == REFUSAL for c in calls if c["module"] == "Actor" for r in c["replies"])
        assert all(c["replies"][-1]["error"] is None for c in calls if not c["failed"])

    assert summary["pct_invalid"] == {"mean": None, "sem": None, "n": 0}  # no move: undefined, not 0%
    assert summary["pct_solved"]["mean"] == 0
    diagnostics = summary["diagnostics"]
    assert set(diagnostics["ranking"][:2]) == {"Actor", "TaskDecomposer"}
    assert diagnostics["weakest"] in ("Actor", "TaskDecomposer")
    for module in ("Actor", "TaskDecomposer"):
        m = diagnostics["modules"][module]
        assert m["calls"] == m["failed"] > 0 and m["failure_rate"] == 1
    sent = sum(len(c["replies"]) for r in records for c in r["calls"] if c["impl"] == "llm")
    assert summary["usage"]["model_calls"] == sent and summary["usage"]["cache_hits"] == 0

    written = build_report([tmp_path / "messy"], tmp_path / "report")
    results = next(csv.DictReader(io.StringIO(written["results.csv"].read_text())))
    assert results["% invalid"] == "n/a"
    rows = {r["module"]: r for r in csv.DictReader(io.StringIO(written["diagnostics.csv"].read_text()))}
    assert {"Actor", "TaskDecomposer"} <= set(rows)
    assert rows["Actor"]["failed"] == rows["Actor"]["calls"] and float(rows["Actor"]["failure rate"]) == 1
    svg = written["diagnostics.svg"].read_text()
    assert "Actor" in svg and "TaskDecomposer" in svg and svg.count("failed") >= 2


@pytest.mark.real_model
def test_a_real_servers_replies_are_all_in_the_records(llama_server):
    """SmolLM2-135M behind llama-cpp-python's OpenAI server writes messy replies: whatever it writes, every module
    call's record carries the raw text and why the model stopped. No JSON-schema grammar (``json_schema=False``):
    free text is what a server without one returns, the messiest case."""
    result = MAPAgent(hanoi.problem(7), backend="openai", model="x", base_url=llama_server.url, cache=False,
                      json_schema=False,
                      config=MAPConfig(max_actions=1, monitor_retries=0, parse_retries=1)).plan()
    calls = result.record()["calls"]
    assert calls and {c["impl"] for c in calls} == {"llm"}
    for call in calls:
        assert call["replies"] and all(r["text"].strip() and r["chars"] > 0 for r in call["replies"])
        assert all(r["finish_reason"] in ("stop", "length") for r in call["replies"])
        if call["failed"]:  # each reply with why it was not used: the Actor's first and its one re-ask (the
            # original re-asks no other module: ``MAPConfig.parse_reask``)
            assert len(call["replies"]) == (2 if call["module"] == "Actor" else 1)
            assert all(r["error"] for r in call["replies"])
        else:
            assert call["replies"][-1]["error"] is None
    assert result.usage.total.model_calls == sum(len(c["replies"]) for c in calls)


def test_a_module_whose_every_call_failed_ranks_weakest_and_a_run_without_moves_has_no_pct_invalid():
    task, problem = get_task("hanoi"), hanoi.problem(7)
    state, goal = problem.start, problem.goal
    wrong_monitor = {"module": "Monitor", "input": {"state": state, "action": {"disk": 2, "source": "A",
                                                                                "target": "C"}},
                     "output": {"valid": False}, "failed": False}  # a legal move called illegal: accuracy 0
    failed_actor = {"module": "Actor", "input": {"state": state, "goal": goal, "n_actions": 2}, "output": None,
                    "failed": True}
    right_orch = {"module": "Orchestrator", "input": {"state": state, "goal": goal}, "output": {"achieved": False},
                  "failed": False}
    flaky_orch = {**right_orch, "output": None, "failed": True}

    def summary(*calls):
        return aggregate([{"diagnostics": diagnose_record(task, problem, {"calls": list(calls)})}])

    ranked = summary(wrong_monitor, failed_actor, failed_actor, right_orch)
    assert ranked["ranking"] == ["Actor", "Monitor", "Orchestrator"] and ranked["weakest"] == "Actor"
    assert ranked["scores"] == {"Monitor": 0.0, "Orchestrator": 1.0}  # every failed call ranks below a 0
    assert ranked["modules"]["Actor"]["failure_rate"] == 1
    # right whenever it answered, but half its calls failed: still where to look
    assert summary(right_orch, flaky_orch)["weakest"] == "Orchestrator"
    assert summary(right_orch)["weakest"] is None

    def record(run, moves, invalid):
        return {"problem_id": str(run), "run": run, "execution": {"n_actions": moves, "n_invalid": invalid}}

    assert summarise([record(0, 0, 0)], 1)["pct_invalid"]["mean"] is None
    assert summarise([record(0, 0, 0), record(1, 4, 1)], 2)["pct_invalid"] == {"mean": 25.0, "sem": None, "n": 1}
