"""``map-agent sensitivity <task>``: how MAP's % solved falls as one module's answers go wrong.

Every module runs as its oracle; a sweep (``--sweep MODULE:KIND:R1,R2,...``) injects one kind of error
(``config.ERROR_KINDS``, made by ``map_agent.modules.corrupted``) into one module at each rate, and ``--corrupt
MODULE:KIND:RATE`` adds a fixed error profile to every point (a Monitor wrong 2% of the time under a sweep of the
Actor). Each point is an ordinary evaluation cell: the sweep is written as an experiment file and run by ``map-agent
reproduce``'s machinery, so records, resume and the report work as for any run, and rate 0 is the plain oracle run
that every sweep shares.

Beside the report, the sweep's own table and figure: per point the module's *measured* accuracy (the share of its
calls whose answer equals the oracle's, judged from the records: a requested rate is not what a module did, e.g.
the Actor's repeated wrong move comes back in every Monitor round) and the paper's % solved (goal reached within N,
no invalid move; mean ± SEM over runs): ``sensitivity.json``/``.md`` and ``sensitivity.png``/``.svg``, % solved
against measured accuracy, one curve per module and error kind.

>>> Sweep.parse("Orchestrator:flipped:0.02,0.05").rates
(0.02, 0.05)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from map_agent.config import ERROR_KINDS, Corruption, MAPConfig
from map_agent.eval.reproduce import Cell, Experiment, Reproduction, _slug, run_with_progress
from map_agent.eval.runner import latest
from map_agent.options import EXECUTOR_OPTIONS, add_options
from map_agent.task import MODULES, TASKS, Problem, Task, get_task

#: the variant name of the point without injected errors (the profile's only, if there is one)
NO_ERRORS = "no injected errors"
#: answer fields that explain rather than decide: left out when an answer is compared with the oracle's
EXPLANATIONS = ("reasoning", "feedback")


class Sweep(BaseModel):
    """One curve: an error kind injected into one module at each rate."""

    model_config = ConfigDict(frozen=True)

    module: str
    kind: str
    rates: tuple[float, ...] = Field(min_length=1)

    @classmethod
    def parse(cls, text: str) -> Sweep:
        """``MODULE:KIND:R1,R2,...`` as the command line writes it; a malformed one is one ``ValueError`` line."""
        module, _, rest = text.partition(":")
        kind, _, rates = rest.partition(":")
        usage = f"--sweep {text!r}: expected MODULE:KIND:R1,R2,..., e.g. Actor:repeated_wrong_move:0.1,0.2"
        try:
            values = tuple(float(r) for r in rates.split(","))
            for rate in values:
                Corruption(module=module, kind=kind, rate=rate)
        except ValidationError as e:
            raise ValueError(f"{usage} ({e.errors()[0]['msg'].removeprefix('Value error, ')})") from None
        except ValueError:
            raise ValueError(usage) from None
        return cls(module=module, kind=kind, rates=values)

    @property
    def label(self) -> str:
        return f"{self.module} {self.kind}"

    def variant(self, rate: float) -> str:
        return f"{self.label} {rate:g}" if rate else NO_ERRORS


class Sensitivity:
    """The sweeps of one task split as experiment cells, run with the oracle backend, and their analysis."""

    def __init__(self, task: Task, split: str, sweeps: list[Sweep], profile: tuple[Corruption, ...] = (), *,
                 runs: int, limit: int | None = None, overrides: dict[str, Any] | None = None,
                 seed: int = 0) -> None:
        self.task, self.split, self.sweeps, self.profile = task, split, sweeps, profile
        self.runs, self.limit, self.seed = runs, limit, seed
        self.overrides = overrides or {}  # the command line's MAP options, in every cell
        for sweep in sweeps:
            if sweep.module in {c.module for c in profile}:
                raise ValueError(f"--sweep {sweep.label}: the {sweep.module} already has an error in --corrupt")

    def config(self, sweep: Sweep | None = None, rate: float = 0.0) -> dict[str, Any]:
        """The MAP configuration of one point, as an experiment cell writes it."""
        corrupt = [*self.profile, *([Corruption(module=sweep.module, kind=sweep.kind, rate=rate, seed=self.seed)]
                                    if sweep and rate else [])]
        return {**self.overrides, **({"corrupt": [c.model_dump() for c in corrupt]} if corrupt else {})}

    def experiment(self) -> Experiment:
        """Every point as a cell; rate 0 is one cell, whatever the sweeps."""
        cell = {"task": self.task.name, "split": self.split, "runs": self.runs, "limit": self.limit}
        cells = [Cell(**cell, variant=NO_ERRORS, config=self.config())]
        cells += [Cell(**cell, variant=sweep.variant(rate), config=self.config(sweep, rate))
                  for sweep in self.sweeps for rate in sweep.rates if rate]
        profile = ", ".join(f"{c.module}:{c.kind}:{c.rate:g}" for c in self.profile)
        return Experiment(title=f"Sensitivity of MAP to module errors: {self.task.name} {self.split}"
                                + (f", under {profile}" if profile else ""),
                          source="map-agent sensitivity (oracle modules with injected errors; not in the paper)",
                          cells=list({c.id: c for c in cells}.values()))

    def name(self) -> str:
        """The output folder's default name: task, split, runs, limit and a digest of anything else that changes
        what the cells are (their ids do not carry it), so another setting never resumes these runs."""
        rest = {"overrides": self.overrides, "profile": [c.model_dump() for c in self.profile], "seed": self.seed}
        digest = hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()[:8]
        parts = [self.task.name, self.split, f"runs{self.runs}", f"first{self.limit}" if self.limit else None,
                 f"cfg{digest}" if self.overrides or self.profile or self.seed else None]
        return _slug("-".join(p for p in parts if p))

    def check(self) -> None:
        """Build every cell's modules on the first problem: a kind the task cannot express, or a module that is off
        or not an oracle, fails here in one line, before any problem runs."""
        from map_agent.modules import build_modules

        first = self.task.problems(self.split)[0]
        for cell in self.experiment().cells:
            config = MAPConfig.model_validate(cell.config).for_backend("oracle", self.task)
            build_modules(self.task, first, config.resolve(self.task, first), None)

    def reproduction(self, out: Path, name: str | None = None, **options: Any) -> Reproduction:
        """The cells as an experiment file in ``out/<name>/<name>.yaml`` (rerun it with ``map-agent reproduce``),
        ready to run into ``out/<name>/``."""
        name = _slug(name or self.name())
        folder = Path(out) / name
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.yaml"
        path.write_text(yaml.safe_dump(self.experiment().model_dump(mode="json", exclude_defaults=True),
                                       sort_keys=False), encoding="utf-8")
        return Reproduction(path, folder.parent, backend="oracle", **options)

    # -- analysis -------------------------------------------------------------------------------------------------
    def analyse(self, reproduction: Reproduction, cells: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """Per point: the swept module's and the profile's measured accuracy, % solved and % invalid."""
        from map_agent.eval.report import Run

        problems = {p.id: p for p in self.task.problems(self.split)}
        status = {c.variant: cells.get(c.id, {}) for c in self.experiment().cells}
        measured = {variant: Run.load(reproduction.dir / "runs" / s["run_id"])
                    for variant, s in status.items() if s.get("status") == "done"}
        modules = [*(c.module for c in self.profile), *(s.module for s in self.sweeps)]
        accuracy = {(variant, m): measured_accuracy(self.task, problems, run.records, m)
                    for variant, run in measured.items() for m in dict.fromkeys(modules)}

        def point(sweep: Sweep | None, rate: float) -> dict[str, Any]:
            variant = sweep.variant(rate) if sweep else NO_ERRORS
            run = measured.get(variant)
            if run is None:
                return {"rate": rate, "variant": variant, **status[variant]}  # not run, and why
            own = accuracy[(variant, sweep.module)] if sweep else None
            return {"rate": rate, "variant": variant, "run_id": run.dir.name, "problems": run.summary["problems"],
                    "runs": run.summary["runs_complete"], "pct_solved": run.summary["pct_solved"],
                    "pct_invalid": run.summary["pct_invalid"], **(own or {}),
                    "profile": {c.module: accuracy[(variant, c.module)] for c in self.profile}}

        return {"task": self.task.name, "split": self.split, "runs": self.runs, "limit": self.limit,
                "seed": self.seed, "profile": [c.model_dump() for c in self.profile], "overrides": self.overrides,
                "baseline": point(None, 0.0),
                "sweeps": [{"module": s.module, "kind": s.kind, "label": s.label,
                            "points": [point(s, rate) for rate in (0.0, *(r for r in s.rates if r))]}
                           for s in self.sweeps]}

    def write(self, reproduction: Reproduction, cells: dict[str, dict[str, Any]]) -> dict[str, Path]:
        """``sensitivity.json``, ``sensitivity.md`` and the figure, into the reproduction's folder."""
        data = self.analyse(reproduction, cells)
        out = reproduction.dir
        written = {"sensitivity.json": out / "sensitivity.json", "sensitivity.md": out / "sensitivity.md"}
        written["sensitivity.json"].write_text(json.dumps(data, indent=2), encoding="utf-8")
        table = sensitivity_table(data)
        written["sensitivity.md"].write_text(f"## {table.title}\n\n{table.markdown()}", encoding="utf-8")
        if data["sweeps"]:
            for path in sensitivity_figure(data, out):
                written[path.name] = path
        return written


def measured_accuracy(task: Task, problems: dict[str, Problem], records: list[dict[str, Any]],
                      module: str) -> dict[str, Any]:
    """How often ``module`` answered as its oracle would, over the records' calls (every phase): ``calls``,
    ``correct`` and ``accuracy`` (None without calls). The oracle is asked again for each distinct input; its
    answers are deterministic, so this is the accuracy the module with injected errors actually had."""
    from map_agent.modules import ORACLES
    from map_agent.modules.base import make_input

    truth: dict[tuple[str, int, str], dict[str, Any]] = {}
    calls = correct = 0
    for record in latest(records).values():
        phases = task.phases(problems[record["problem_id"]])
        logged = [*(p.get("calls") or [] for p in record.get("phases") or []), record.get("calls") or []]
        for k, phase_calls in enumerate(logged):
            phase = phases[min(k, len(phases) - 1)]
            for call in phase_calls:
                if call.get("module") != module or call.get("output") is None:
                    continue
                key = (phase.id, k, json.dumps(call["input"], sort_keys=True))
                if key not in truth:
                    answer = ORACLES[module](task, phase).compute(make_input(module, task, call["input"]))
                    truth[key] = _decision(answer.model_dump(mode="json"))
                calls += 1
                correct += _decision(call["output"]) == truth[key]
    return {"calls": calls, "correct": correct, "accuracy": correct / calls if calls else None}


def _decision(answer: dict[str, Any]) -> str:
    """What an answer decides, without the text that explains it."""
    return json.dumps({k: v for k, v in answer.items() if k not in EXPLANATIONS}, sort_keys=True)


def _pct(stat: dict[str, Any] | None) -> str | None:
    if not stat or stat.get("mean") is None:
        return None
    return f"{stat['mean']:.1f}" + (f" ± {stat['sem']:.1f}" if stat.get("sem") is not None else "")


def sensitivity_table(data: dict[str, Any]):
    """One row per point of each sweep (rate 0 included); the profile's modules' accuracy in the last column."""
    from map_agent.eval.report import Table

    def accuracy(value: float | None) -> str | None:
        return None if value is None else f"{100 * value:.1f}"

    rows = []
    sweeps = data["sweeps"] or [{"label": "(profile only)", "points": [data["baseline"]]}]
    for sweep in sweeps:
        for p in sweep["points"]:
            profile = ", ".join(f"{m} {accuracy(a['accuracy'])}" for m, a in (p.get("profile") or {}).items())
            rows.append([sweep["label"], f"{p['rate']:g}", p.get("calls"), accuracy(p.get("accuracy")),
                         _pct(p.get("pct_solved")), _pct(p.get("pct_invalid")), p.get("runs"), p.get("problems"),
                         *([profile or None] if data["profile"] else [])])
    profile_column = ["profile modules' measured accuracy (%)"] if data["profile"] else []
    return Table(title=f"{data['task']} {data['split']}: % solved with errors injected into one oracle module "
                       "(rate; noisy_value: sigma in moves)",
                 columns=["errors injected", "rate", "module calls", "measured accuracy (%)",
                          "% solved (mean ± SEM)", "% invalid", "runs", "problems", *profile_column], rows=rows)


def sensitivity_figure(data: dict[str, Any], out: Path) -> list[Path]:
    """% solved (mean ± SEM over runs) against the module's measured accuracy, one curve per sweep from the shared
    error-free point; the legend gives each curve's rates (a higher rate, a point further left), so no label sits
    on the data."""
    from map_agent.eval.report import _plt, _save

    plt = _plt()
    fig, ax = plt.subplots(figsize=(8.8, 4.4))  # room for the legend beside a readable plot
    palette = plt.get_cmap("tab10")
    for i, sweep in enumerate(data["sweeps"]):
        points = [p for p in sweep["points"] if p.get("accuracy") is not None and p.get("pct_solved")]
        rates = ", ".join(f"{p['rate']:g}" for p in points if p["rate"])
        name = f"{sweep['label']} ({'σ' if sweep['kind'] == 'noisy_value' else 'rate'} {rates})"
        ax.errorbar([100 * p["accuracy"] for p in points], [p["pct_solved"]["mean"] for p in points],
                    yerr=[p["pct_solved"]["sem"] or 0 for p in points], marker="o", ms=4, capsize=2, lw=1.2,
                    color=palette(i % 10), label=name)
    ax.set_xlim(-3, 103)
    ax.set_ylim(-3, 105)
    ax.set_xlabel("module's measured accuracy (% of its calls answered as the oracle would)")
    ax.set_ylabel("% of problems solved (mean ± SEM over runs)")
    profile = ", ".join(f"{c['module']}:{c['kind']}:{c['rate']:g}" for c in data["profile"])
    ax.set_title(f"{data['task']} {data['split']}: oracle modules, one with injected errors"
                 + (f"\nunder {profile}" if profile else ""), fontsize=9)
    fig.legend(loc="outside right center", frameon=False, fontsize=7)
    return _save(fig, out, "sensitivity")


# -- the command ----------------------------------------------------------------------------------------------------
def add_arguments(p: Any) -> None:
    """``map-agent sensitivity``'s arguments: the task, the sweeps, then the shared options."""
    p.add_argument("task", choices=sorted(TASKS))
    p.add_argument("--split", help="default: the task's first split")
    kinds = "; ".join(f"{m}: {', '.join(k for k, (modules, _) in ERROR_KINDS.items() if m in modules)}"
                      for m in MODULES)
    p.add_argument("--sweep", action="append", default=[], metavar="MODULE:KIND:R1,R2,...", help=(
        "one curve: KIND injected into MODULE at each rate (noisy_value: sigma in moves); rate 0, the plain oracle "
        f"run, is always measured; repeat for more curves. Kinds: {kinds}"))
    add_options(p, "runs", "limit", "concurrency", "out", "run_id", "seed", *EXECUTOR_OPTIONS, "backend", "map",
                defaults={"out": "sensitivity-out"}, backends=("oracle",))


def cli_run(args: Any) -> int:
    """Run ``map-agent sensitivity`` (the CLI parsed ``args``); exit status."""
    from map_agent.options import executor_options, map_config

    task = get_task(args.task)
    split = args.split or next(iter(task.splits()))
    if split not in task.splits():
        raise KeyError(f"{task.name}: unknown split {split!r}; known: {', '.join(task.splits())}")
    sweeps = [Sweep.parse(s) for s in args.sweep]
    config = map_config(args)
    if not sweeps and not config.corrupt:
        raise ValueError("nothing to measure: give --sweep MODULE:KIND:R1,R2,... (or an error profile, --corrupt)")
    sensitivity = Sensitivity(task, split, sweeps, config.corrupt, runs=args.runs or task.default_runs(split),
                              limit=args.limit, seed=args.seed or 0,
                              overrides=config.model_dump(mode="json", include=config.model_fields_set - {"corrupt"}))
    sensitivity.check()
    reproduction = sensitivity.reproduction(Path(args.out), args.run_id, concurrency=args.concurrency,
                                            **executor_options(args))
    result = run_with_progress(reproduction)
    written = sensitivity.write(reproduction, result["cells"])
    print(written["sensitivity.md"].read_text(encoding="utf-8"))
    print("\n".join(f"{name}: {path}" for name, path in written.items() if name != "sensitivity.md"))
    print(f"report: {result['files']['report.html']}")
    failed = [c for c in result["cells"].values() if c.get("status") != "done"]
    return 1 if failed else 0
