"""``map-agent report <run dirs...>``: the paper's tables and figures from evaluation runs, plus why they came out so.

From each run directory (``config.json``, ``records.jsonl``; ``cell.json`` when ``map-agent reproduce`` made it)
the report writes, into one folder:

* ``results.md/.csv`` and ``solved_<task>.png/.svg`` -- % solved and % invalid per method and split, mean ± SEM over
  runs, each run as a dot, the best-of-runs as a light bar (the paper's Fig. 2B/3B style), and the paper's own
  number beside it where the paper states one (``published.yaml`` names the source of each);
* ``cost.md/.csv``, ``cost_modules.md/.csv`` and ``cost.png/.svg`` -- per problem: module calls, model calls, cache
  hits, tokens and wall time, per method and per module, with and without the prompt cache;
* ``diagnostics.md/.csv`` and ``diagnostics.png/.svg`` -- each module judged against ground truth
  (``map_agent.eval.diagnostics``), so a user sees *which* module fails on their model;
* ``report.html`` -- one self-contained page with every table and figure (figures inlined as SVG).

Records are read, never recomputed: the report runs offline in seconds on any finished or partial run.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict

from map_agent.eval.diagnostics import SCORES
from map_agent.eval.records import read_records
from map_agent.eval.runner import latest, summarise
from map_agent.task import MODULES

#: bar colours per method, fixed so the same method looks the same in every figure; also the paper's order
COLOURS = {"zero-shot": "#9e9e9e", "icl": "#8c6d31", "cot": "#bd9e39", "mad": "#7b4173", "tot": "#3182bd",
           "map": "#d62728"}
EXTRA_COLOURS = ["#e6550d", "#31a354", "#756bb1", "#636363", "#17becf", "#843c39"]


class Published(BaseModel):
    """One number the paper states, with where it states it."""

    model_config = ConfigDict(extra="forbid")

    task: str
    split: str
    method: str
    variant: str | None = None
    model: str
    metric: str
    value: float
    source: str


def published() -> list[Published]:
    """The paper's numbers (``map_agent/eval/published.yaml``)."""
    raw = yaml.safe_load(files("map_agent.eval").joinpath("published.yaml").read_text(encoding="utf-8"))
    return [Published.model_validate(e) for e in raw["entries"]]


class Run(BaseModel):
    """One run directory, read: what it ran and its records."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    dir: Path
    task: str
    split: str
    method: str
    variant: str | None
    label: str
    backend: str
    model: str | None
    runs: int
    records: list[dict[str, Any]]
    summary: dict[str, Any]

    @classmethod
    def load(cls, path: Path) -> Run:
        path = Path(path)
        config_file = path / "config.json"
        if not config_file.exists():
            raise FileNotFoundError(f"{path}: not a run directory (no config.json)")
        config = json.loads(config_file.read_text())
        cell = json.loads((path / "cell.json").read_text()) if (path / "cell.json").exists() else {}
        method = cell.get("method") or config.get("method") or "map"
        variant = cell.get("variant") or _config_variant(config.get("config") or {})
        records = read_records(path / "records.jsonl")
        return cls(dir=path, task=config["task"], split=config["split"], method=method, variant=variant,
                   label=cell.get("label") or (f"{method} ({variant})" if variant else method),
                   backend=config["backend"], model=config.get("model"), runs=config["runs"], records=records,
                   summary=summarise(records, config["runs"]))

    def per_run(self) -> dict[str, list[float]]:
        """% solved and % invalid of each run index (the dots of the figures)."""
        by_run: dict[int, list[dict[str, Any]]] = {}
        for r in latest(self.records).values():
            by_run.setdefault(r["run"], []).append(r)
        solved, invalid = [], []
        for recs in by_run.values():
            solved.append(100 * sum(bool(r.get("solved")) for r in recs) / len(recs))
            moves = sum(r.get("execution", {}).get("n_actions", 0) for r in recs)
            bad = sum(r.get("execution", {}).get("n_invalid", 0) for r in recs)
            invalid.append(100 * bad / moves if moves else 0.0)
        return {"pct_solved": solved, "pct_invalid": invalid}

    def paper(self, metric: str, entries: list[Published]) -> Published | None:
        return next((e for e in entries if (e.task, e.split, e.method, e.variant, e.metric)
                     == (self.task, self.split, self.method, self.variant, metric)), None)


def _config_variant(config: dict[str, Any]) -> str | None:
    """A run made without ``reproduce`` is named by what its configuration changes from the defaults."""
    from map_agent.config import MAPConfig

    defaults = MAPConfig().model_dump()
    changed = []
    for k, v in MAPConfig.model_validate(config).model_dump().items():
        if k == "seed" or v == defaults[k]:
            continue
        changed += [f"{m}={impl}" for m, impl in v.items()] if k == "modules" else [f"{k}={v}"]
    return ", ".join(changed) or None


# -- tables -----------------------------------------------------------------------------------------------------
class Table(BaseModel):
    """A table rendered three ways: markdown (README, terminal), CSV (spreadsheets), HTML (the page)."""

    title: str
    columns: list[str]
    rows: list[list[Any]]

    def markdown(self) -> str:
        lines = ["| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in self.rows]
        return "\n".join(lines) + "\n"

    def csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(self.columns)
        writer.writerows([["" if v is None else v for v in row] for row in self.rows])
        return out.getvalue()

    def html(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>"
                       for row in self.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return "0" if value == 0 else f"{value:.1f}" if abs(value) >= 1 else f"{value:.3g}"
    return str(value)


def _pm(stat: dict[str, Any]) -> str | None:
    if stat.get("mean") is None:
        return None
    return f"{stat['mean']:.1f}" + (f" ± {stat['sem']:.1f}" if stat.get("sem") is not None else "")


def results_table(runs: list[Run], entries: list[Published], unavailable: list[dict[str, str]] = ()) -> Table:
    rows = []
    for r in runs:
        s = r.summary
        paper = [r.paper(m, entries) for m in ("pct_solved", "pct_solved_best", "pct_invalid")]
        rows.append([r.task, r.split, r.label, r.model or r.backend, s["runs_complete"], s["problems"],
                     _pm(s["pct_solved"]), s["pct_solved_best"], _pm(s["pct_invalid"]),
                     *[p.value if p else None for p in paper]])
    for u in unavailable:
        rows.append([u["task"], u["split"], u["label"], "not available: " + u["reason"], *[None] * 8])
    return Table(title="% solved and % invalid (mean ± SEM over runs)",
                 columns=["task", "split", "method", "model", "runs", "problems", "% solved", "% solved (best run)",
                          "% invalid", "paper % solved", "paper % solved (best)", "paper % invalid"], rows=rows)


def _per_problem(r: Run) -> int:
    return max(1, len(latest(r.records)))


def cost_table(runs: list[Run]) -> Table:
    """Per problem (one problem in one run): what each method costs, with and without the prompt cache.

    With the cache a hit costs no tokens; "without cache" counts every model call as sent, its tokens estimated at
    the mean of the calls actually sent in this run.
    """
    rows = []
    for r in runs:
        u, n = r.summary["usage"], _per_problem(r)
        calls = sum(m.get("calls", 0) for m in u["modules"].values())
        sent = u["model_calls"] - u["cache_hits"]
        tokens = u["input_tokens"] + u["output_tokens"]
        uncached = tokens / sent * u["model_calls"] if sent else None
        rows.append([r.task, r.split, r.label, n, calls / n, u["model_calls"] / n, u["cache_hits"] / n, sent / n,
                     u["input_tokens"] / n, u["output_tokens"] / n, tokens / n,
                     uncached / n if uncached is not None else None, r.summary["plan_seconds"] / n])
    return Table(title="Cost per problem (with the prompt cache, and without it)",
                 columns=["task", "split", "method", "problems x runs", "module calls", "model calls (no cache)",
                          "cache hits", "model calls (cache)", "input tokens", "output tokens", "tokens (cache)",
                          "tokens (no cache, est.)", "wall s"], rows=rows)


def module_cost_table(runs: list[Run]) -> Table:
    rows = []
    for r in runs:
        n = _per_problem(r)
        for module, u in r.summary["usage"]["modules"].items():
            rows.append([r.task, r.split, r.label, module, u.get("calls", 0) / n, u.get("model_calls", 0) / n,
                         u.get("cache_hits", 0) / n, (u.get("input_tokens", 0) + u.get("output_tokens", 0)) / n,
                         u.get("failures", 0) / n, u.get("seconds", 0.0) / n])
    return Table(title="Cost per problem and module",
                 columns=["task", "split", "method", "module", "calls", "model calls", "cache hits", "tokens",
                          "failures", "seconds"], rows=rows)


#: the rates shown per module in the diagnostics table, in order
DIAGNOSTIC_COLUMNS = ["precision", "recall", "accuracy", "valid", "optimal", "any_optimal", "exact",
                      "mean_abs_error", "spearman", "on_optimal_path"]


def diagnostics_table(runs: list[Run]) -> Table:
    rows = []
    for r in runs:
        d = r.summary.get("diagnostics") or {}
        for module, m in (d.get("modules") or {}).items():
            rows.append([r.task, r.split, r.label, module, m["calls"], m["failed"], m["unscorable"],
                         *[m.get(k) for k in DIAGNOSTIC_COLUMNS], "weakest" if d.get("weakest") == module else ""])
    return Table(title="Module diagnostics against ground truth (LLM module calls)",
                 columns=["task", "split", "method", "module", "calls", "failed", "unscorable", *DIAGNOSTIC_COLUMNS,
                          ""], rows=rows)


# -- figures --------------------------------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.spines.top": False, "axes.spines.right": False,
                         "svg.fonttype": "none"})
    return plt


def _colours(labels: list[str], runs: list[Run]) -> dict[str, str]:
    out, spare = {}, iter(EXTRA_COLOURS * 4)
    for r in runs:
        if r.label not in out:
            own = COLOURS.get(r.method) if r.variant is None else None
            out[r.label] = own if own and own not in out.values() else next(spare)
    return out


def _save(fig, out: Path, stem: str) -> list[Path]:
    paths = [out / f"{stem}.png", out / f"{stem}.svg"]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    _plt().close(fig)
    return paths


def solved_figure(task: str, runs: list[Run], entries: list[Published], out: Path) -> list[Path]:
    """The paper's bar style: dark bar = mean over runs (± SEM), light bar = best run, dots = single runs, and a
    hollow diamond = the paper's published number."""
    plt = _plt()
    splits = list(dict.fromkeys(r.split for r in runs))
    labels = list(dict.fromkeys(r.label for r in runs))
    colours = _colours(labels, runs)
    fig, axes = plt.subplots(1, 2, figsize=(max(6.0, 0.5 * len(splits) * len(labels) + 3), 3.4))
    width = min(0.8 / len(labels), 0.35)
    for ax, metric, title in ((axes[0], "pct_solved", "% solved"), (axes[1], "pct_invalid", "% invalid")):
        for i, label in enumerate(labels):
            for j, split in enumerate(splits):
                run = next((r for r in runs if r.label == label and r.split == split), None)
                if run is None:
                    continue
                x = j + (i - (len(labels) - 1) / 2) * width
                stat = run.summary[metric]
                if metric == "pct_solved" and run.summary["pct_solved_best"] is not None:
                    ax.bar(x, run.summary["pct_solved_best"], width * 0.9, color=colours[label], alpha=0.3)
                mean = stat["mean"] or 0.0
                ax.bar(x, mean, width * 0.9, color=colours[label], label=label if j == 0 else None,
                       yerr=stat["sem"] if stat["sem"] is not None else None, capsize=2, ecolor="black")
                dots = run.per_run()[metric]
                if len(dots) > 1:
                    ax.scatter([x] * len(dots), dots, s=6, color="black", zorder=3)
                for m in ((metric, "pct_solved_best") if metric == "pct_solved" else (metric,)):
                    paper = run.paper(m, entries)
                    if paper is not None:
                        ax.scatter([x + width / 2], [paper.value], marker="D", s=28, facecolors="none",
                                   edgecolors="black" if m == metric else "grey", zorder=4,
                                   label="paper (GPT-4)" if m == metric else "paper, best run")
        ax.set_xticks(range(len(splits)), splits)
        ax.set_ylim(-3, 105)  # a 0% bar and the paper's 0% marker stay visible above the axis
        ax.set_title(title)
    handles, names = axes[0].get_legend_handles_labels()
    for h, n in zip(*axes[1].get_legend_handles_labels(), strict=True):
        if n not in names:
            handles.append(h)
            names.append(n)
    unique = dict(zip(names, handles, strict=True))
    fig.legend(unique.values(), unique.keys(), loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.suptitle(task, x=0.01, ha="left", fontweight="bold")
    return _save(fig, out, f"solved_{task}")


def cost_figure(runs: list[Run], out: Path) -> list[Path]:
    """Model calls per problem by module (stacked; the hatched part was answered by the prompt cache), and tokens
    per problem with and without the cache."""
    plt = _plt()
    names = [f"{r.label}\n{r.task}/{r.split}" for r in runs]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(max(6.0, 1.1 * len(runs) + 4), 3.4))
    palette = plt.get_cmap("tab20")
    bottoms = [0.0] * len(runs)
    seen = {m for r in runs for m in r.summary["usage"]["modules"]}
    modules = [m for m in MODULES if m in seen] + sorted(seen - set(MODULES))  # baselines name their own calls
    colour = [palette(2 * k % 20 + 2 * k // 20) for k in range(len(modules))]  # dark shades first, then light
    for k, module in enumerate(modules):
        sent, hits = [], []
        for r in runs:
            u, n = r.summary["usage"]["modules"].get(module, {}), _per_problem(r)
            hits.append(u.get("cache_hits", 0) / n)
            sent.append(u.get("model_calls", 0) / n - hits[-1])
        if not any(sent) and not any(hits):
            continue
        a1.bar(names, sent, bottom=bottoms, color=colour[k], label=module)
        bottoms = [b + s for b, s in zip(bottoms, sent, strict=True)]
        a1.bar(names, hits, bottom=bottoms, color=colour[k], alpha=0.35, hatch="//", edgecolor="white")
        bottoms = [b + h for b, h in zip(bottoms, hits, strict=True)]
    a1.set_title("model calls per problem (hatched: cache hits)")
    if a1.get_legend_handles_labels()[0]:
        a1.legend(frameon=False, fontsize=7)
    table = cost_table(runs)
    with_cache = [row[10] for row in table.rows]
    without = [row[11] if row[11] is not None else row[10] for row in table.rows]
    xs = range(len(runs))
    a2.bar([x - 0.2 for x in xs], without, 0.4, color="#bbbbbb", label="without cache (est.)")
    a2.bar([x + 0.2 for x in xs], with_cache, 0.4, color="#333333", label="with cache")
    a2.set_xticks(list(xs), names)
    a2.set_title("tokens per problem")
    a2.legend(frameon=False, fontsize=7)
    for ax in (a1, a2):
        ax.tick_params(axis="x", labelsize=7, labelrotation=30)
        for tick in ax.get_xticklabels():
            tick.set_horizontalalignment("right")
    return _save(fig, out, "cost")


def diagnostics_figure(runs: list[Run], out: Path) -> list[Path] | None:
    """A heat map of each module's headline rate (``diagnostics.SCORES``) per run: the failing module stands out."""
    rows = [(f"{r.label} ({r.task}/{r.split})", (r.summary.get("diagnostics") or {}).get("scores") or {})
            for r in runs]
    modules = [m for m in MODULES if any(m in s for _, s in rows)]
    if not modules:
        return None
    plt = _plt()
    import numpy as np

    grid = np.array([[s.get(m, math.nan) for m in modules] for _, s in rows], dtype=float)
    fig, ax = plt.subplots(figsize=(1.3 * len(modules) + 3, 0.45 * len(rows) + 1.4))
    cmap = plt.get_cmap("RdYlGn").with_extremes(bad="#eeeeee")
    ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(modules)), [f"{m}\n{SCORES[m].replace('_', ' ')}" for m in modules], fontsize=7)
    ax.set_yticks(range(len(rows)), [name for name, _ in rows], fontsize=7)
    for i in range(len(rows)):
        for j in range(len(modules)):
            ax.text(j, i, "–" if math.isnan(grid[i, j]) else f"{grid[i, j]:.2f}", ha="center", va="center",
                    fontsize=7)
    ax.set_title("module diagnostics against ground truth (1 = always right)")
    return _save(fig, out, "diagnostics")


# -- the report -------------------------------------------------------------------------------------------------
def build_report(run_dirs: list[Path], out: Path, *, title: str = "MAP evaluation report",
                 unavailable: list[dict[str, str]] = ()) -> dict[str, Path]:
    """Write every table and figure for ``run_dirs`` into ``out`` and return their paths by name.

    ``unavailable`` lists cells an experiment asked for that cannot run yet (task, split, label, reason): they
    appear in the results table as "not available", never silently dropped.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = _in_paper_order(_distinct_labels([Run.load(d) for d in run_dirs]))
    entries = published()
    tables = {"results": results_table(runs, entries, list(unavailable)), "cost": cost_table(runs),
              "cost_modules": module_cost_table(runs), "diagnostics": diagnostics_table(runs)}
    written: dict[str, Path] = {}
    for name, table in tables.items():
        (out / f"{name}.md").write_text(f"## {table.title}\n\n{table.markdown()}", encoding="utf-8")
        (out / f"{name}.csv").write_text(table.csv(), encoding="utf-8")
        written[f"{name}.md"], written[f"{name}.csv"] = out / f"{name}.md", out / f"{name}.csv"
    figures: dict[str, list[Path]] = {}
    if runs:
        for task in dict.fromkeys(r.task for r in runs):
            figures[f"solved_{task}"] = solved_figure(task, [r for r in runs if r.task == task], entries, out)
        figures["cost"] = cost_figure(runs, out)
        diag = diagnostics_figure(runs, out)
        if diag:
            figures["diagnostics"] = diag
    for paths in figures.values():
        for p in paths:
            written[p.name] = p
    written["report.html"] = out / "report.html"
    written["report.html"].write_text(_html(title, tables, figures, runs), encoding="utf-8")
    return written


def _in_paper_order(runs: list[Run]) -> list[Run]:
    """Grouped by task and split (in the order given), methods in the paper's order (baselines, then MAP)."""
    first = {}
    for i, r in enumerate(runs):
        first.setdefault(r.task, i)
        first.setdefault((r.task, r.split), i)
    order = list(COLOURS)
    return sorted(runs, key=lambda r: (first[r.task], first[(r.task, r.split)],
                                       order.index(r.method) if r.method in order else len(order)))


def _distinct_labels(runs: list[Run]) -> list[Run]:
    """Runs of the same method on the same split (two models, two backends) get the model in their label."""
    keys = [(r.task, r.split, r.label) for r in runs]
    return [r.model_copy(update={"label": f"{r.label} [{r.model or r.backend}]"}) if keys.count(k) > 1 else r
            for r, k in zip(runs, keys, strict=True)]


def _svg(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    return text[text.find("<svg"):]


def _html(title: str, tables: dict[str, Table], figures: dict[str, list[Path]], runs: list[Run]) -> str:
    sections = [f"<h1>{html.escape(title)}</h1>",
                "<p>Runs: " + ", ".join(html.escape(f"{r.dir.name} ({r.label}, {r.task}/{r.split})") for r in runs)
                + "</p>"]
    placement = {"results": [k for k in figures if k.startswith("solved_")], "cost": ["cost"], "cost_modules": [],
                 "diagnostics": ["diagnostics"]}
    for name, table in tables.items():
        sections.append(f"<h2>{html.escape(table.title)}</h2>")
        sections += [f"<figure>{_svg(figures[f][1])}</figure>" for f in placement[name] if f in figures]
        sections.append(table.html())
    sections.append("<p>Published numbers: " + html.escape(
        "the MAP paper's own figures where its text states them (map_agent/eval/published.yaml names each source); "
        "hollow diamonds in the figures.") + "</p>")
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;font-size:12px;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#f4f4f4}"
             "figure{margin:1em 0}svg{max-width:100%;height:auto}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(sections)}</body></html>")


def cli_main(argv: list[str]) -> int:
    """``map-agent report RUN_DIR... [--out DIR] [--title T]``."""
    import argparse

    p = argparse.ArgumentParser(prog="map-agent report", description="tables, figures and an HTML page from runs")
    p.add_argument("runs", nargs="+", type=Path, help="run directories (runs/<id>)")
    p.add_argument("--out", type=Path, default=Path("report"), help="output folder (default: report)")
    p.add_argument("--title", default="MAP evaluation report")
    args = p.parse_args(argv)
    written = build_report(args.runs, args.out, title=args.title)
    print((args.out / "results.md").read_text())
    print(f"report: {written['report.html']}")
    return 0
