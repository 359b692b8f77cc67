"""The report's figures, checked from matplotlib's own objects: every axis labelled, no text on another, nothing
off the canvas, the model and variant in every run's name; a figure with nothing to show is not written.

The runs are the README's: a perfect scripted model and one whose Monitor flips every verdict (two models, as
``notebooks/reproduce.ipynb``; cost and diagnostics figures), and ``reproduce smoke --backend oracle`` (three
variants; the % solved figure, and no cost figure: the oracles send no request to a model).
"""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

import pytest

from map_agent.config import MAPConfig
from map_agent.eval import report
from map_agent.eval.reproduce import Reproduction
from map_agent.eval.runner import Evaluation, RunSpec
from map_agent.modules import OracleChatModel
from map_agent.task import get_task


class FlippedMonitor(OracleChatModel):
    """Answers every module from ground truth except the Monitor, whose verdict it flips."""

    @property
    def _llm_type(self) -> str:
        return "flipped-monitor"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        result = super()._generate(messages, stop, run_manager, **kwargs)
        if run_manager.metadata["map_agent_module"] == "Monitor":
            reply = json.loads(result.generations[0].message.content)
            reply["valid"] = not reply["valid"]
            result.generations[0].message.content = json.dumps(reply)
        return result


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> dict:
    """Every figure the report saves, by file stem, drawn (so its text has its final place) before it closes."""
    figures: dict = {}
    save = report._save

    def keep(fig, out, stem):
        fig.canvas.draw()
        figures[stem] = (fig, fig.canvas.get_renderer())
        return save(fig, out, stem)

    monkeypatch.setattr(report, "_save", keep)
    return figures


def check(stem: str, fig, renderer, names: list[str]) -> None:
    from matplotlib.text import Text

    for ax in fig.axes:
        assert ax.get_ylabel().strip(), f"{stem}: an axis has no y label"
        assert ax.get_xlabel().strip(), f"{stem}: an axis has no x label"
    # tick labels exist for ticks outside the view limits too; only those inside are drawn
    hidden = {id(label) for ax in fig.axes for axis in (ax.xaxis, ax.yaxis) for tick in axis.get_major_ticks()
              if not min(axis.get_view_interval()) <= tick.get_loc() <= max(axis.get_view_interval())
              for label in (tick.label1, tick.label2)}
    texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip() and id(t) not in hidden]
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
    canvas = fig.bbox
    for text, box in boxes:
        assert (box.x0 >= canvas.x0 - 1 and box.y0 >= canvas.y0 - 1 and box.x1 <= canvas.x1 + 1
                and box.y1 <= canvas.y1 + 1), f"{stem}: {text!r} runs off the figure"
    for (a, box_a), (b, box_b) in combinations(boxes, 2):
        overlap = min(box_a.x1, box_b.x1) - max(box_a.x0, box_b.x0), min(box_a.y1, box_b.y1) - max(box_a.y0, box_b.y0)
        assert overlap[0] <= 0.5 or overlap[1] <= 0.5, f"{stem}: {a!r} overlaps {b!r}"
    everything = " ".join(t.get_text() for t in texts)
    for name in names:
        assert name in everything, f"{stem}: {name!r} is in no label"


def test_every_figure_of_a_two_model_report(tmp_path: Path, captured: dict) -> None:
    ids = [p.id for p in get_task("hanoi").problems("test3")[:2]]
    dirs = []
    for model, llm in (("gpt-perfect", OracleChatModel()), ("gpt-flipped-monitor", FlippedMonitor())):
        spec = RunSpec(task="hanoi", split="test3", runs=1, backend="scripted", model=model, config=MAPConfig(),
                       problem_ids=ids)
        Evaluation(spec, tmp_path / "runs", model, llm=llm).run()
        dirs.append(tmp_path / "runs" / model)
    written = report.build_report(dirs, tmp_path / "report")
    assert set(captured) == {"solved_hanoi", "cost", "diagnostics"}
    for stem, (fig, renderer) in captured.items():
        check(stem, fig, renderer, ["gpt-perfect", "gpt-flipped-monitor"])
        assert written[f"{stem}.png"].exists()


def test_the_oracle_smoke_report_has_no_empty_cost_figure(tmp_path: Path, captured: dict) -> None:
    result = Reproduction("smoke", tmp_path, backend="oracle").run()
    assert set(captured) == {"solved_hanoi"}  # the oracles send nothing to a model: no cost figure to draw
    fig, renderer = captured["solved_hanoi"]
    check("solved_hanoi", fig, renderer, ["map · oracle", "map (no-search) · oracle", "map (two-subgoals) · oracle"])
    assert "cost.png" not in result["files"]
    assert "No cost figure: these runs sent no request to a model" in Path(result["files"]["report.html"]).read_text()


@pytest.mark.parametrize("name", ["hanoi_test3", "cogeval_valuepath"])
def test_the_sensitivity_figures_of_the_readme(name: str, tmp_path: Path, captured: dict) -> None:
    """``map-agent sensitivity``'s figure, drawn from the README's measured sweeps (``docs/sensitivity/``)."""
    from map_agent.eval.sensitivity import sensitivity_figure

    data = json.loads((Path(__file__).parents[1] / "docs" / "sensitivity" / f"{name}.json").read_text())
    sensitivity_figure(data, tmp_path)
    fig, renderer = captured["sensitivity"]
    check("sensitivity", fig, renderer, [sweep["label"] for sweep in data["sweeps"]])
