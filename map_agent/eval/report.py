"""``map-agent report <run dirs...>``: the paper's tables and figures from evaluation runs, plus why they came out so.

From each run directory (``config.json``, ``records.jsonl``; ``cell.json`` when ``map-agent reproduce`` made it)
the report writes, into one folder:

* ``results.md/.csv`` and ``solved_<task>.png/.svg`` -- % solved and % invalid per method and split, mean ± SEM over
  runs, each run as a dot, the best run as a light bar (the paper's Fig. 2B/3B style), the share solved in any
  run in the table, and the paper's own number beside ours *by the same definition* where the paper states one
  (``published.yaml`` names the source and the definition of each);
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
import math
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from map_agent.config import MAPConfig
from map_agent.eval.diagnostics import SCORES, all_failed
from map_agent.eval.records import RecordCheck, read_records
from map_agent.eval.runner import RunSpec, latest, mean_sem, pct_invalid, summarise
from map_agent.files import load_file
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
    #: the original repository's per-run results, where its README publishes them, and the line that does
    runs: list[float] = Field(default_factory=list)
    runs_source: str | None = None


def published() -> list[Published]:
    """The paper's numbers (``map_agent/eval/published.yaml``)."""
    raw = yaml.safe_load(files("map_agent.eval").joinpath("published.yaml").read_text(encoding="utf-8"))
    return [Published.model_validate(e) for e in raw["entries"]]


class CellNote(BaseModel):
    """``cell.json``, which ``map-agent reproduce`` leaves in a run directory: the experiment cell the run is, by
    the fields that name it in tables (the cell's other fields are kept, unread)."""

    model_config = ConfigDict(extra="allow")

    experiment: str | None = None
    label: str | None = None
    method: str | None = None
    variant: str | None = None


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
        """Read a run directory; a file in it that is not what the runner writes raises FileError naming it."""
        path = Path(path)
        config_file = path / "config.json"
        if not config_file.exists():
            raise FileNotFoundError(f"{path}: not a run directory (no config.json)")
        spec = load_file(config_file, RunSpec)
        cell = load_file(path / "cell.json", CellNote) if (path / "cell.json").exists() else CellNote()
        method = cell.method or spec.method
        variant = cell.variant or _config_variant(spec.config)
        records = read_records(path / "records.jsonl", RecordCheck,
                               {"problem_ids": set(spec.problem_ids), "runs": spec.runs})
        return cls(dir=path, task=spec.task, split=spec.split, method=method, variant=variant,
                   label=cell.label or (f"{method} ({variant})" if variant else method),
                   backend=spec.backend, model=spec.model, runs=spec.runs, records=records,
                   summary=summarise(records, spec.runs))

    def per_run(self) -> dict[str, list[float]]:
        """% solved and % invalid of each run index (the dots of the figures); a run that made no move has no
        % invalid, so no dot."""
        by_run: dict[int, list[dict[str, Any]]] = {}
        for r in latest(self.records).values():
            by_run.setdefault(r["run"], []).append(r)
        solved, invalid = [], []
        for recs in by_run.values():
            solved.append(100 * sum(bool(r.get("solved")) for r in recs) / len(recs))
            if (pct := pct_invalid(recs)) is not None:
                invalid.append(pct)
        return {"pct_solved": solved, "pct_invalid": invalid}

    def published(self, entries: list[Published]) -> list[Published]:
        """The paper's numbers for this run's cell, in any definition."""
        return [e for e in entries if (e.task, e.split, e.method, e.variant)
                == (self.task, self.split, self.method, self.variant)]

    def ours(self, metric: str) -> float | None:
        """This run's number under a published entry's definition: a summary field, or ``metrics.<name>`` (the
        task's scores as the original computed them, e.g. Hanoi's from the Predictor's states)."""
        if metric.startswith("metrics."):
            value = (self.summary["metrics"].get(metric.removeprefix("metrics.")) or {}).get("mean")
        else:
            value = self.summary.get(metric)
        return value.get("mean") if isinstance(value, dict) else value


#: what each published definition is, in the tables' words; which panel of the figure it belongs to
DEFINITIONS: dict[str, tuple[str, str]] = {
    "pct_solved": ("% solved", "pct_solved"),
    "pct_solved_any_run": ("% solved in any run", "pct_solved"),
    "metrics.paper_solved": ("% solved, scored on the Predictor's states", "pct_solved"),
    "pct_invalid": ("% invalid", "pct_invalid"),
    "metrics.paper_pct_invalid": ("% invalid, on the Predictor's states", "pct_invalid"),
    "metrics.pct_invalid_per_problem": ("% invalid, mean per problem", "pct_invalid"),
}


def _config_variant(config: MAPConfig) -> str | None:
    """A run made without ``reproduce`` is named by what its configuration changes from the defaults."""
    defaults = MAPConfig().model_dump()
    changed = []
    for k, v in config.model_dump().items():
        if k == "seed" or v == defaults[k]:
            continue
        if k == "corrupt":  # injected errors as the command line writes them
            changed += [f"{c['module']}:{c['kind']}:{c['rate']:g}" for c in v]
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


#: how a table shows a rate with nothing to measure (% invalid of runs that made no move)
UNDEFINED = "n/a"


def _pm(stat: dict[str, Any], undefined: str | None = None) -> str | None:
    if stat.get("mean") is None:
        return undefined
    return f"{stat['mean']:.1f}" + (f" ± {stat['sem']:.1f}" if stat.get("sem") is not None else "")


def results_table(runs: list[Run], entries: list[Published], unavailable: list[dict[str, str]] = ()) -> Table:
    rows = []
    for r in runs:
        s = r.summary
        paper = "; ".join(f"{DEFINITIONS[e.metric][0]}: {_num(r.ours(e.metric))} (paper {e.value:g})"
                          for e in r.published(entries) if e.metric in DEFINITIONS)
        rows.append([r.task, r.split, r.label, r.model or r.backend, s["runs_complete"], s["problems"],
                     _pm(s["pct_solved"]), s["pct_solved_best_run"], s["pct_solved_any_run"],
                     _pm(s["pct_invalid"], UNDEFINED), s["no_plan"], s["truncated_replies"], paper or None])
    for u in unavailable:
        rows.append([u["task"], u["split"], u["label"], "not available: " + u["reason"], *[None] * 9])
    return Table(title="% solved and % invalid (mean ± SEM over runs)",
                 columns=["task", "split", "method", "model", "runs", "problems", "% solved", "% solved (best run)",
                          "% solved in any run", "% invalid", "no plan", "replies cut at the token limit",
                          "ours beside the paper's, same definition"], rows=rows)


def _num(value: float | None) -> str:
    return UNDEFINED if value is None else f"{value:.1f}"


def _per_problem(r: Run) -> int:
    return max(1, len(latest(r.records)))


def cost_table(runs: list[Run]) -> Table:
    """Per problem (one problem in one run): what each method costs, with and without the prompt cache.

    With the cache a hit costs no tokens; "without cache" counts every reply as sent (model calls plus cache
    hits), its tokens estimated at the mean of the calls actually sent in this run.
    """
    rows = []
    for r in runs:
        u, n = r.summary["usage"], _per_problem(r)
        calls = sum(m.get("calls", 0) for m in u["modules"].values())
        sent, replies = u["model_calls"], u["model_calls"] + u["cache_hits"]
        tokens = u["input_tokens"] + u["output_tokens"]
        uncached = tokens / sent * replies if sent else None
        rows.append([r.task, r.split, r.label, n, calls / n, replies / n, u["cache_hits"] / n, sent / n,
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
            rows.append([r.task, r.split, r.label, module, m["calls"], m["failed"], m.get("failure_rate"),
                         m["unscorable"], *[m.get(k) for k in DIAGNOSTIC_COLUMNS],
                         "weakest" if d.get("weakest") == module else ""])
    return Table(title="Module diagnostics against ground truth (LLM module calls)",
                 columns=["task", "split", "method", "module", "calls", "failed", "failure rate", "unscorable",
                          *DIAGNOSTIC_COLUMNS, ""], rows=rows)


# -- figures --------------------------------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # constrained layout: titles, labels and the outside legends get their room instead of overlapping
    plt.rcParams.update({"font.size": 9, "axes.spines.top": False, "axes.spines.right": False,
                         "svg.fonttype": "none", "figure.constrained_layout.use": True})
    return plt


def _name(r: Run) -> str:
    """A run's name in the figures: method and variant (the label), the model (or the backend), task and split,
    so two models or two variants never share a bar's name."""
    return "\n".join([*_method_model(r), f"{r.task}/{r.split}"])


def _method_model(r: Run) -> tuple[str, str]:
    """The method with its variant, and the model (the backend when no model was named)."""
    model = r.model or r.backend
    return r.label.removesuffix(f" [{model}]"), model


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
    hollow diamond = the paper's published number, beside ours by the same definition: the bar's own where the
    definitions agree, else a short black tick at our number (e.g. Hanoi's % solved scored on the Predictor's
    states, solved in any run, CogEval's per-problem % invalid)."""
    plt = _plt()
    splits = list(dict.fromkeys(r.split for r in runs))
    labels = list(dict.fromkeys(r.label for r in runs))
    colours = _colours(labels, runs)
    legend_names = {r.label: " · ".join(_method_model(r)) for r in runs}
    fig, axes = plt.subplots(1, 2, figsize=(max(7.0, 0.5 * len(splits) * len(labels) + 5), 3.4))
    width = min(0.8 / len(labels), 0.35)
    for ax, metric, title in ((axes[0], "pct_solved", "% solved"), (axes[1], "pct_invalid", "% invalid")):
        for i, label in enumerate(labels):
            for j, split in enumerate(splits):
                run = next((r for r in runs if r.label == label and r.split == split), None)
                if run is None:
                    continue
                x = j + (i - (len(labels) - 1) / 2) * width
                stat = run.summary[metric]
                if metric == "pct_solved" and run.summary["pct_solved_best_run"] is not None:
                    ax.bar(x, run.summary["pct_solved_best_run"], width * 0.9, color=colours[label], alpha=0.3)
                name = legend_names[label] if j == 0 else None
                if stat["mean"] is None:  # no run made a move: % invalid is undefined, not 0
                    ax.bar(x, 0, width * 0.9, color=colours[label], label=name)
                    ax.text(x, 2, UNDEFINED, ha="center", va="bottom", fontsize=7)
                else:
                    ax.bar(x, stat["mean"], width * 0.9, color=colours[label], label=name,
                           yerr=stat["sem"] if stat["sem"] is not None else None, capsize=2, ecolor="black")
                dots = run.per_run()[metric]
                if len(dots) > 1:
                    ax.scatter([x] * len(dots), dots, s=6, color="black", zorder=3)
                for paper in run.published(entries):
                    if DEFINITIONS.get(paper.metric, ("", ""))[1] != metric:
                        continue
                    ours = run.ours(paper.metric)
                    # on the bar it belongs to: its centre where the bar is the paper's definition, else inside
                    # the bar's right half, beside the tick at our number by the paper's definition
                    at = x if paper.metric == metric else x + width * 0.2
                    if paper.metric != metric and ours is not None:
                        ax.scatter([at], [ours], marker="_", s=60, color="black", zorder=4,
                                   label="ours, by the paper's definition")
                    ax.scatter([at], [paper.value], marker="D", s=28, facecolors="none",
                               edgecolors="black", zorder=4, label="paper (GPT-4)")
                    if paper.runs:  # the original's own runs: dots, and their mean ± SEM
                        spread = mean_sem(paper.runs)
                        ax.scatter([x + width * 0.36] * len(paper.runs), paper.runs, s=6, color="grey",
                                   zorder=3, label="original code, per run")  # inside this bar, not the next
                        ax.errorbar([x + width * 0.36], [spread["mean"]], yerr=spread["sem"], fmt="o", ms=3,
                                    color="grey", capsize=2, zorder=4)
        ax.set_xticks(range(len(splits)), splits)
        ax.set_xlabel(f"{task} split")
        ax.set_ylim(-3, 105)  # a 0% bar and the paper's 0% marker stay visible above the axis
        ax.set_ylabel("% of problems solved" if metric == "pct_solved" else "% of moves invalid")
        ax.set_title(title)
    handles, names = axes[0].get_legend_handles_labels()
    for h, n in zip(*axes[1].get_legend_handles_labels(), strict=True):
        if n not in names:
            handles.append(h)
            names.append(n)
    unique = dict(zip(names, handles, strict=True))
    fig.legend(unique.values(), unique.keys(), loc="outside right center", frameon=False, fontsize=7)
    fig.suptitle(f"{task}: dark bar mean ± SEM over runs, light bar best run, dots single runs", fontsize=9)
    return _save(fig, out, f"solved_{task}")


#: why the cost figure is not drawn, when it is not (the report says so in its place)
NO_COST = ("No cost figure: these runs sent no request to a model and used no tokens (the oracle backend's "
           "modules are symbolic); the cost tables below count their module calls and time.")


def cost_figure(runs: list[Run], out: Path) -> list[Path] | None:
    """Model calls per problem by module, stacked with the cache hits (hatched: replies the prompt cache served),
    and tokens per problem with and without the cache; None (not written) when no run sent a model any request,
    as with the oracle backend: an empty plot says nothing."""
    table = cost_table(runs)
    with_cache = [row[10] or 0 for row in table.rows]
    without = [row[11] if row[11] is not None else row[10] or 0 for row in table.rows]
    used = any(u.get("model_calls", 0) or u.get("cache_hits", 0)
               for r in runs for u in r.summary["usage"]["modules"].values())
    if not used and not any(with_cache) and not any(without):
        return None
    plt = _plt()
    names = [_name(r) for r in runs]
    # one above the other: each run's three-line name needs ~1.4 in of width, twice side by side is too wide
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(max(6.0, 1.5 * len(runs) + 2.5), 6.5))
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
            sent.append(u.get("model_calls", 0) / n)
        if not any(sent) and not any(hits):
            continue
        a1.bar(names, sent, bottom=bottoms, color=colour[k], label=module)
        bottoms = [b + s for b, s in zip(bottoms, sent, strict=True)]
        a1.bar(names, hits, bottom=bottoms, color=colour[k], alpha=0.35, hatch="//", edgecolor="white")
        bottoms = [b + h for b, h in zip(bottoms, hits, strict=True)]
    a1.set_title("model calls (hatched: cache hits)")
    a1.set_ylabel("calls per problem")
    xs = range(len(runs))
    a2.bar([x - 0.2 for x in xs], without, 0.4, color="#bbbbbb", label="tokens without cache (est.)")
    a2.bar([x + 0.2 for x in xs], with_cache, 0.4, color="#333333", label="tokens with cache")
    a2.set_xticks(list(xs), names)
    a2.set_title("tokens")
    a2.set_ylabel("tokens per problem (input + output)")
    for ax in (a1, a2):
        ax.set_xlabel("method, model, task/split")
        ax.tick_params(axis="x", labelsize=7)  # one short line each, unrotated: names never cross
    handles, labels = a1.get_legend_handles_labels()
    more, extra = a2.get_legend_handles_labels()
    fig.legend(handles + more, labels + extra, loc="outside right center", frameon=False, fontsize=7)
    return _save(fig, out, "cost")


def diagnostics_figure(runs: list[Run], out: Path) -> list[Path] | None:
    """A heat map of each module's headline rate (``diagnostics.SCORES``) per run: the failing module stands out.
    A cell also counts the module's failed calls; a module whose every call failed has no rate and is shown at 0,
    the worst cell, labelled so."""
    rows = [(_name(r).replace("\n", " · "), (r.summary.get("diagnostics") or {}).get("modules") or {})
            for r in runs]
    modules = [m for m in MODULES if any(m in d for _, d in rows)]
    if not modules:
        return None
    plt = _plt()
    import numpy as np

    def cell(rates: dict[str, Any] | None, module: str) -> tuple[float, str]:
        if not rates:
            return math.nan, "–"
        if all_failed(rates):
            return 0.0, f"all {rates['calls']}\nfailed"
        score = rates.get(SCORES[module])
        text = "–" if score is None else f"{score:.2f}"
        failed = f"\n{rates['failed']}/{rates['calls']} failed" if rates.get("failed") else ""
        return (math.nan if score is None else score), text + failed

    cells = [[cell(d.get(m), m) for m in modules] for _, d in rows]
    grid = np.array([[v for v, _ in line] for line in cells], dtype=float)
    fig, ax = plt.subplots(figsize=(1.3 * len(modules) + 3.5, 0.55 * len(rows) + 1.8))
    cmap = plt.get_cmap("RdYlGn").with_extremes(bad="#eeeeee")
    ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(modules)), [f"{m}\n{SCORES[m].replace('_', ' ')}" for m in modules], fontsize=7)
    ax.set_yticks(range(len(rows)), [name for name, _ in rows], fontsize=7)
    for i, line in enumerate(cells):
        for j, (_, text) in enumerate(line):
            ax.text(j, i, text, ha="center", va="center", fontsize=7)
    ax.set_xlabel("module and its headline rate (0 to 1)")
    ax.set_ylabel("run: method · model, task/split")
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
        cost = cost_figure(runs, out)
        if cost:
            figures["cost"] = cost
        diag = diagnostics_figure(runs, out)
        if diag:
            figures["diagnostics"] = diag
    for paths in figures.values():
        for p in paths:
            written[p.name] = p
    from map_agent.view import write_view

    # each run's page, linked from the report; not in runs/, where reproduce keeps the run directories
    pages = {r.dir: write_view(r.dir, out / "pages") for r in runs}
    for page in pages.values():
        written[f"pages/{page.name}"] = page
    written["report.html"] = out / "report.html"
    written["report.html"].write_text(_html(title, tables, figures, runs, pages), encoding="utf-8")
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


def _html(title: str, tables: dict[str, Table], figures: dict[str, list[Path]], runs: list[Run],
          pages: dict[Path, Path]) -> str:
    links = (f"<a href='pages/{html.escape(pages[r.dir].name)}'>{html.escape(r.dir.name)}</a> "
             f"({html.escape(f'{r.label}, {r.task}/{r.split}')})" for r in runs)
    sections = [f"<h1>{html.escape(title)}</h1>",
                "<p>Runs (each links to its page of problems, steps, module calls and replies): "
                + ", ".join(links) + "</p>"]
    placement = {"results": [k for k in figures if k.startswith("solved_")], "cost": ["cost"], "cost_modules": [],
                 "diagnostics": ["diagnostics"]}
    for name, table in tables.items():
        sections.append(f"<h2>{html.escape(table.title)}</h2>")
        sections += [f"<figure>{_svg(figures[f][1])}</figure>" for f in placement[name] if f in figures]
        if name == "cost" and runs and "cost" not in figures:
            sections.append(f"<p>{html.escape(NO_COST)}</p>")
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


def add_arguments(p: Any) -> None:
    """``map-agent report``'s arguments."""
    from map_agent.options import add_options

    p.add_argument("runs", nargs="+", type=Path, help="run directories (runs/<id>)")
    p.add_argument("--title", default="MAP evaluation report")
    add_options(p, "out", defaults={"out": "report"})


def cli_run(args: Any) -> int:
    """Run ``map-agent report`` (the CLI parsed ``args``); exit status."""
    out = Path(args.out)
    written = build_report(args.runs, out, title=args.title)
    print((out / "results.md").read_text())
    print(f"report: {written['report.html']}")
    return 0
