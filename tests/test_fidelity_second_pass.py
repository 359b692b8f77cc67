"""Issue 15, items 8-10: the original's problem sets, run counts, ToT scoring, prompts and reply budgets are the
defaults, and this project's alternatives are named options. Each test fails when the original's behaviour is
removed."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
from pydantic import PrivateAttr

from map_agent.config import MAPConfig
from map_agent.eval.reproduce import Grid, load_experiment
from map_agent.modules import build_modules
from map_agent.modules.base import REPLY_BUDGETS
from map_agent.modules.oracle import OracleChatModel
from map_agent.task import get_task


class Recording(OracleChatModel):
    """The oracle's replies, with every request's sampling parameters kept."""

    _sent: list[tuple[str, dict[str, Any]]] = PrivateAttr(default_factory=list)

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        self._sent.append((str(messages[0].content), kwargs))
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)


def modules_for(task_name: str, split: str, **config: Any):
    task = get_task(task_name)
    problem = task.problems(split)[0]
    llm = Recording()
    return task, problem, llm, build_modules(task, problem, MAPConfig(**config).resolve(task, problem), llm)


def system(module) -> str:
    return str(module._prefix[0].content)


# -- item 10: reply budgets ---------------------------------------------------------------------------------------
def test_each_module_sends_the_original_scripts_reply_budget():
    task, problem, llm, modules = modules_for("hanoi", "test3")
    assert {n: m.invoke_kwargs(None).get("max_tokens") for n, m in modules.items()
            if n != "Actor"} == {n: b for n, b in REPLY_BUDGETS["hanoi"].items() if n != "Actor"}
    assert REPLY_BUDGETS["hanoi"]["Evaluator"] == 2000 and REPLY_BUDGETS["hanoi"]["Orchestrator"] == 200
    # the option: every module on the chat model's own budget (--max-tokens), none sent per call
    *_, model_budget = modules_for("hanoi", "test3", reply_budget="model")
    assert all("max_tokens" not in m.invoke_kwargs(None) for n, m in model_budget.items() if n != "Actor")
    assert MAPConfig(reply_budget="model").deviations() == {"reply_budget": "model"}


def test_a_per_call_budget_reaches_the_model_and_the_cache_key():
    from map_agent.modules.base import make_input

    llm = Recording()
    assert llm._get_llm_string(max_tokens=200) != llm._get_llm_string(max_tokens=2000)  # no shared cached reply
    task, problem, _, modules = modules_for("cogeval", "valuepath")
    orchestrator = modules["Orchestrator"]
    orchestrator.llm = llm
    result = orchestrator(make_input("Orchestrator", task, {"state": {"room": 1, "collected": None},
                                                            "goal": {"room": None}}))
    assert result.ok and llm._sent[-1][1]["max_tokens"] == REPLY_BUDGETS["cogeval"]["Orchestrator"]


# -- item 10: prompt hints ------------------------------------------------------------------------------------------
HINTS = {
    ("strategyqa", "dev100", "TaskDecomposer"): ["Aristotle", "Do not restate the main question"],
    ("cogeval", "valuepath", "Actor"): ["entering a room with a chest collects that chest"],
    ("cogeval", "valuepath", "Evaluator"): ["enters no\nroom with another chest"],
    ("hanoi", "test3", "Predictor"): ["the third list stays as it is", "any number may be placed on an empty list"],
    ("hanoi", "test3", "Orchestrator"): ["in the same order"],
}


@pytest.mark.parametrize(("task", "split", "module"), list(HINTS))
def test_the_original_prompts_carry_none_of_this_projects_hints(task, split, module):
    *_, original = modules_for(task, split)
    *_, hinted = modules_for(task, split, prompt_hints=True)
    for hint in HINTS[task, split, module]:
        assert hint not in system(original[module]), hint
        assert hint in system(hinted[module]), hint
    assert "[[hint" not in system(original[module]) + system(hinted[module])


def test_no_baseline_prompt_carries_a_hint():
    from map_agent.baselines.base import system_message
    from map_agent.baselines.cot import CoT

    task = get_task("strategyqa")
    text = str(system_message(task, task.problems("dev100")[0].public(), "", CoT.Settings).content)
    assert "Aristotle" not in text and "[[hint" not in text


# -- item 10: CogEval -------------------------------------------------------------------------------------------------
def test_cogeval_orchestrator_reasons_before_its_verdict_as_the_original_examples():
    *_, modules = modules_for("cogeval", "valuepath")
    orchestrator = modules["Orchestrator"]
    assert list(orchestrator.output_model.model_fields) == ["reasoning", "achieved"]
    shots = [json.loads(m.content) for m in orchestrator._prefix[1:] if m.type == "ai"]
    assert shots and all(s["reasoning"] for s in shots)


def test_reward_revaluation_has_its_own_actor_examples():
    *_, rr = modules_for("cogeval", "reward_revaluation")
    *_, vp = modules_for("cogeval", "valuepath")
    rr_text = " ".join(str(m.content) for m in rr["Actor"]._prefix)
    assert rr["Actor"].prompt_file(".examples.json").name == "actor.reward_revaluation.examples.json"
    assert "shortest path from room 1 to the best chest is 1, 11, 5, 8" in rr_text
    assert vp["Actor"].prompt_file(".examples.json").name == "actor.examples.json"


def test_cogeval_transfer_actor_gets_no_move_history_unless_asked():
    task = get_task("cogeval")
    problem = task.problems("transfer_n7tree:valuepath")[0]
    assert MAPConfig().resolve(task, problem).actor_history is False
    assert MAPConfig().resolve(task, problem).deviations == {}
    assert MAPConfig(actor_history=True).resolve(task, problem).deviations == {"actor_history": True}
    assert MAPConfig().resolve(task, task.problems("valuepath")[0]).actor_history is True


# -- item 8: problem sets -----------------------------------------------------------------------------------------
def test_baselines_run_the_original_scripts_problem_sets():
    cells = {(c.method, c.split) for c in load_experiment("hanoi_gpt4").all_cells()}
    assert ("zero-shot", "all3") in cells and ("zero-shot", "test3") not in cells
    assert len(get_task("hanoi").problems("all3")) == 26
    llama = {(c.method, c.split) for c in load_experiment("hanoi_llama3").all_cells()}
    assert {("zero-shot", "all3"), ("icl", "all3"), ("cot", "all3"), ("map", "test3")} <= llama
    cogeval = {(c.method, c.split) for c in load_experiment("cogeval_gpt4").all_cells()}
    assert {("zero-shot", "valuepath_all"), *(("zero-shot", f"steppath{k}_all") for k in (2, 3, 4))} <= cogeval
    task = get_task("cogeval")
    assert len(task.problems("valuepath_all")) == 13
    assert all(len(task.problems(f"steppath{k}_all")) == 20 for k in (2, 3, 4))


# -- item 9: run counts and ToT scoring -------------------------------------------------------------------------
def test_grid_runs_per_method_and_split():
    grid = Grid(task="cogeval", splits=["steppath2", "valuepath"], methods=["tot", "icl"],
                runs={"tot": {"steppath2": 5}, "icl": 1})
    assert {(c.method, c.split): c.runs for c in grid.cells()} == {
        ("tot", "steppath2"): 5, ("tot", "valuepath"): None, ("icl", "steppath2"): 1, ("icl", "valuepath"): 1}
    with pytest.raises(ValueError, match="not the grid's splits"):
        Grid(task="cogeval", splits=["valuepath"], methods=["tot"], runs={"tot": {"steppath2": 5}})
    cells = {(c.method, c.split): c for c in load_experiment("cogeval_gpt4").all_cells()}
    assert all(cells["tot", f"steppath{k}"].runs == 5 for k in (2, 3, 4))
    hanoi = {(c.method, c.split): c for c in load_experiment("hanoi_gpt4").all_cells()}
    assert hanoi["tot", "test3"].runs == 1 and hanoi["tot", "test3"].variant is None
    assert "no original" in hanoi["tot", "test4"].label


def test_hanoi_tot_is_also_scored_over_its_candidates_as_the_original(tmp_path):
    out = subprocess.run(["map-agent", "eval", "hanoi", "--split", "test3", "--method", "tot",
                          "--backend", "oracle", "--runs", "1", "--limit", "2", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(next(tmp_path.glob("*/summary.json")).read_text())
    metrics = summary["metrics"]
    assert metrics["tot_best_solved"]["mean"] == 100.0
    assert 0 < metrics["tot_mean_solved"]["mean"] <= 100.0 and metrics["tot_candidates"]["mean"] >= 1


# -- the real server: the original's StrategyQA prompts and budgets fit SmolLM2's 2,048-token window -------------
@pytest.mark.real_model
@pytest.mark.parametrize("hints", [[], ["--prompt-hints"]])
def test_a_strategyqa_plan_runs_on_the_real_server_with_the_originals_prompts(llama_server, tmp_path, hints):
    problem = get_task("strategyqa").problems("dev100")[0].id
    out = subprocess.run(["map-agent", "plan", "strategyqa", "--problem", problem, "--split", "dev100", "--json",
                          "--backend", "openai", "--base-url", llama_server.url, "--model", "smollm2",
                          "--max-actions", "1", "--parse-retries", "1", "--monitor-retries", "0", *hints],
                         capture_output=True, text=True, timeout=600, env={**__import__("os").environ,
                                                                            "MAP_AGENT_CACHE_DIR": str(tmp_path)})
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert "ContextWindowError" not in json.dumps(result.get("failures", []))
    assert result["config"]["deviations"] == ({"prompt_hints": True} if hints else {})
