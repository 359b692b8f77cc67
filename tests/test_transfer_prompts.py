"""Issue 15, item 10 (transfer prompts): in the Blocksworld -> Mystery Blocksworld transfer split the original's ICL
prompt and MAP Actor prompt showed the Blocksworld examples as bare action lists
(``transfer expts/gpt4_mystery_blocksworld_plan_generation_blocksworld_icl.py``,
``gpt4_map_mystery_blocksworld_plan_generation_blocksworld_icl.py``); only its CoT prompt showed every move with
its preconditions and resulting state. These tests fail if ICL or the Actor go back to the worked form by default,
or if CoT loses it; the worked form for ICL and the Actor is a named option."""

from __future__ import annotations

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from map_agent.baselines import get_method
from map_agent.baselines.base import BaselineConfig
from map_agent.config import DEVIATIONS, MAPConfig
from map_agent.modules import LLM_MODULES, build_modules
from map_agent.options import deviation_options
from map_agent.task import get_task, transfer_form

MBW = get_task("mystery_blocksworld")
#: the first example (PlanBench instance 1 in Blocksworld's names) as the original's bare action list
BARE = ("Plan:\n1. unstack the blue block from on top of the orange block\n2. put down the blue block\n"
        "3. pick up the orange block\n4. stack the orange block on top of the blue block\n")
#: the worked form's marks: each move's preconditions and the state it leads to
WORKED = ("1. unstack the blue block from on top of the orange block (requires: ",
          "The goal holds after the last move.")


def examples_of(system_prompt: str) -> str:
    """The transfer examples: the part of a system prompt before the Mystery Blocksworld task."""
    head, sep, _ = system_prompt.partition("Here is the task:")
    assert sep and "Example 1:" in head
    return head


def is_bare(text: str) -> bool:
    return BARE in text and not any(mark in text for mark in WORKED)


def is_worked(text: str) -> bool:
    return all(mark in text for mark in WORKED) and BARE not in text


def problem(pid: str = "10"):
    return MBW.problem(pid, "transfer_blocksworld").public()


def baseline_system(method: str, **settings) -> str:
    config = BaselineConfig(method=method, settings=settings)
    return str(get_method(method)(MBW, problem(), None, config).first_prompts()[0][0].content)


def map_systems(**config) -> dict[str, str]:
    p = MBW.problem("10", "transfer_blocksworld")
    resolved = MAPConfig(**config).resolve(MBW, p)
    modules = build_modules(MBW, p, resolved, FakeListChatModel(responses=["{}"]))
    return {name: str(module._prefix[0].content) for name, module in modules.items()}


def test_the_task_description_shows_bare_action_lists_unless_the_worked_form_is_asked_for():
    assert is_bare(examples_of(MBW.describe(problem())))
    assert is_worked(examples_of(MBW.describe(transfer_form(problem(), "worked"))))
    assert transfer_form(problem(), "plans") == problem()
    with pytest.raises(ValueError, match="transfer form"):
        transfer_form(problem(), "reasoned")


def test_icl_shows_bare_action_lists_and_cot_the_worked_moves():
    assert is_bare(examples_of(baseline_system("icl")))  # the original's ICL prompt
    assert is_worked(examples_of(baseline_system("cot")))  # the original's CoT prompt
    assert is_bare(examples_of(baseline_system("zero-shot")))
    # this project's worked form for ICL is a named setting; CoT's bare lists one too
    assert is_worked(examples_of(baseline_system("icl", transfer_examples="worked")))
    assert is_bare(examples_of(baseline_system("cot", transfer_examples="plans")))


def test_the_map_actor_shows_bare_action_lists_by_default():
    systems = map_systems()
    assert is_bare(examples_of(systems["Actor"]))  # the original's MAP Actor prompt
    # the original gave Monitor, Predictor and Orchestrator single-step worked examples: the worked form is theirs
    for name in ("Monitor", "Predictor", "Orchestrator"):
        assert is_worked(examples_of(systems[name])), name
    assert MAPConfig().resolve(MBW, MBW.problem("10", "transfer_blocksworld")).deviations == {}
    # built on its own (distillation, tests), the Actor's default is the original's too
    actor = LLM_MODULES["Actor"](MBW, problem(), FakeListChatModel(responses=["{}"]))
    assert is_bare(examples_of(str(actor._prefix[0].content)))


def test_the_worked_form_for_the_actor_is_a_named_deviation():
    assert DEVIATIONS["transfer_examples"][:2] == ("plans", "worked")
    systems = map_systems(transfer_examples="worked")
    assert is_worked(examples_of(systems["Actor"]))
    assert MAPConfig(transfer_examples="worked").deviations() == {"transfer_examples": "worked"}
    flag = deviation_options()["transfer_examples"]
    assert flag.flags == ("--transfer-examples",) and flag.settings["choices"] == ["plans", "worked"]


def test_the_hanoi_source_and_other_splits_are_unchanged():
    hanoi = MBW.problem("10", "transfer_hanoi").public()
    assert MBW.describe(hanoi) == MBW.describe(transfer_form(hanoi, "worked"))  # lists after each move, as the original
    test = MBW.problem("10", "test").public()
    assert MBW.describe(test) == MBW.describe(transfer_form(test, "worked"))
    assert "Here is the task:" not in MBW.describe(test)
