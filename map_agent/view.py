"""``map-agent view``: one self-contained HTML page per run, to see what the model did and where it went wrong.

The page is built from a run directory alone (``config.json``, ``records.jsonl``, ``summary.json``) and needs no
network: its CSS and JavaScript are inline, so it opens from a ``file://`` URL, is attached to a report, or is
mailed to a colleague. The HTML is written on the Python side (the page reads the same with JavaScript off);
JavaScript only filters and sorts the problems table and opens the problem, step and module call an address
names (``#problem=ID&step=2&call=7``).

Records keep each module call's input, output and raw replies but not its prompt (a Hanoi Actor prompt is ~6,000
characters, sent tens of times per problem): the page renders the prompt from the call's input with the module's
own ``messages()``, so it shows what the code sends, and the records stay small. The system prompt and examples,
the same for every call of a module on one problem, are shown once per problem; each call shows its own message.
"""

from __future__ import annotations

import argparse
import html
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from map_agent.eval.records import RecordCheck, read_records
from map_agent.files import load_file

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"DejaVu Sans",sans-serif;margin:0 auto;max-width:1200px;padding:1em;
color:#1d1d1f}
h1{font-size:1.4em;margin:.2em 0} h2{font-size:1.15em;margin:1.2em 0 .4em} code,pre{font:12.5px/1.4 "DejaVu Sans Mono",
monospace} pre{white-space:pre-wrap;word-break:break-word;background:#f6f6f8;padding:.5em;margin:.3em 0;
border-radius:4px;max-height:30em;overflow:auto}
table{border-collapse:collapse;width:100%} th,td{border-bottom:1px solid #ddd;padding:3px 6px;text-align:left;
vertical-align:top} th{background:#f0f0f3;cursor:pointer;user-select:none} th.num,td.num{text-align:right}
th[aria-sort=ascending]::after{content:" \\25B2"} th[aria-sort=descending]::after{content:" \\25BC"}
.ok{color:#13722b;font-weight:600} .bad{color:#b3261e;font-weight:600} .muted{color:#666}
.meta span{margin-right:1.2em} details{margin:.25em 0} summary{cursor:pointer}
details.problem{border:1px solid #ccc;border-radius:6px;padding:.3em .7em;margin:.6em 0}
details.problem>summary{font-weight:600} details.step{border-left:3px solid #8aa4d6;padding-left:.6em;margin:.5em 0}
details.call{border-left:2px solid #ddd;padding-left:.5em} .failed{border-left-color:#b3261e}
.belief{background:#fff4d6} tr.chosen td{background:#e8f3e8} .controls{margin:.5em 0}
.controls input,.controls select{font:inherit;margin-right:.8em;padding:2px 4px}
"""

_JS = """
(function(){
  var table=document.getElementById('problems'), body=table.tBodies[0];
  var rows=[].slice.call(body.rows), text=document.getElementById('filter'), which=document.getElementById('which');
  function apply(){
    var q=text.value.toLowerCase(), w=which.value, shown=0;
    rows.forEach(function(r){
      var ok=r.textContent.toLowerCase().indexOf(q)>=0 &&
        (w==='all'||(w==='solved'&&r.dataset.solved==='1')||(w==='unsolved'&&r.dataset.solved==='0')||
         (w==='failures'&&+r.dataset.failures>0));
      r.style.display=ok?'':'none'; var p=document.getElementById(r.dataset.target);
      if(p) p.style.display=ok?'':'none'; shown+=ok;
    });
    document.getElementById('shown').textContent=shown+' of '+rows.length+' shown';
  }
  text.addEventListener('input',apply); which.addEventListener('change',apply);
  [].forEach.call(table.tHead.rows[0].cells,function(th,i){
    th.addEventListener('click',function(){
      var asc=th.getAttribute('aria-sort')!=='ascending';
      [].forEach.call(table.tHead.rows[0].cells,function(c){c.removeAttribute('aria-sort');});
      th.setAttribute('aria-sort',asc?'ascending':'descending');
      rows.sort(function(a,b){
        var x=a.cells[i].dataset.v, y=b.cells[i].dataset.v, nx=parseFloat(x), ny=parseFloat(y);
        var c=(!isNaN(nx)&&!isNaN(ny))?nx-ny:String(x).localeCompare(String(y),undefined,{numeric:true});
        return asc?c:-c;
      });
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
  function open(){
    var where=location.hash.slice(1)||location.search.slice(1);
    var m=/problem=([^&]+)(?:&step=(\\d+))?/.exec(where), c=/call=(\\d+)/.exec(where);
    if(!m) return;
    var id=decodeURIComponent(m[1]), p=document.querySelector('details.problem[data-problem="'+id+'"]');
    if(!p) return;
    p.open=true; var target=p;
    var s=p.querySelector('details.step[data-step="'+(m[2]||1)+'"]')||p.querySelector('details.step');
    if(s){s.open=true; target=s;}
    var call=c&&p.querySelector('details.call[data-call="'+c[1]+'"]');
    if(call){for(var d=call;d&&d!==p;d=d.parentElement){if(d.tagName==='DETAILS')d.open=true;}}
    target.scrollIntoView();
  }
  window.addEventListener('hashchange',open); open(); apply();
})();
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word[:-1]}ies" if word.endswith("y") else f"{n} {word}s"


class _Text:
    """The task's own renderers for states, actions and goals, falling back to compact JSON for anything they do
    not take (a baseline's free-form output, a field from another version)."""

    def __init__(self, task: Any) -> None:
        self.task = task

    def _render(self, kind: str, value: Any) -> str:
        if self.task is None or value is None:
            return json.dumps(value)
        try:
            model = getattr(self.task, kind)
            return getattr(self.task, f"render_{kind.lower()}")(model.model_validate(value))
        except Exception:  # a value the task's models do not take is still shown, as JSON
            return json.dumps(value)

    def state(self, value: Any) -> str:
        return self._render("State", value)

    def action(self, value: Any) -> str:
        return self._render("Action", value)

    def goal(self, value: Any) -> str:
        return self._render("Goal", value)


class _Prompts:
    """Renders an LLM module call's prompt from its input with the module's own ``messages()``: the system prompt
    and examples (``prefix``, once per module) and the call's own message (``message``)."""

    def __init__(self, task: Any, record: dict[str, Any], split: str | None) -> None:
        self.modules: dict[str, Any] = {}
        try:
            from map_agent.config import Resolved
            from map_agent.modules import build_modules

            problem = task.problem(record["problem_id"], split=split)
            resolved = Resolved.model_validate(
                {k: v for k, v in (record.get("config") or {}).items() if k != "deviations"})
            # the modules only render here: no model is called, so any object stands in for the chat model
            self.modules = build_modules(task, problem, resolved, llm=_NoModel())
        except Exception as e:  # a baseline's record, or a task or prompt that changed since the run
            self.error = f"prompts not rendered: {type(e).__name__}: {e}"
        else:
            self.error = ""
        self.task = task

    def prefix(self, module: str) -> list[tuple[str, str]]:
        found = self.modules.get(module)
        if found is None or not hasattr(found, "_prefix"):
            return []
        return [(m.type, str(m.content)) for m in found._prefix]

    def message(self, call: dict[str, Any]) -> str | None:
        module = self.modules.get(call.get("module"))
        if module is None or call.get("impl") != "llm" or not hasattr(module, "render"):
            return None
        from map_agent.modules.base import make_input

        try:
            return module.render(make_input(call["module"], self.task, call.get("input") or {}))
        except Exception as e:  # an input this version of the module cannot take
            return f"(not rendered: {type(e).__name__}: {e})"


class _NoModel:
    """Stands in for the chat model when prompts are only rendered; calling it is a bug."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"the run viewer renders prompts only; it never calls a model ({name})")


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def assign_calls(record: dict[str, Any]) -> tuple[list[int], list[list[int]]]:
    """Split a record's module calls (logged in the order they ran) into those before the first step and those
    of each step. Step i begins with its first Actor call on the step's state, together with the Orchestrator
    checks of that state just before it; calls a step's search made (Predictor, Evaluator, Orchestrator on the
    branches) belong to it. Memoised calls run once, so each call belongs to exactly one part."""
    calls, steps = record.get("calls") or [], record.get("steps") or []
    starts: list[int | None] = []
    pos = 0
    for step in steps:
        state = _key(step.get("state"))
        found = next((j for j in range(pos, len(calls)) if calls[j].get("module") == "Actor"
                      and _key((calls[j].get("input") or {}).get("state")) == state), None)
        if found is not None:
            while (found > pos and calls[found - 1].get("module") == "Orchestrator"
                   and _key((calls[found - 1].get("input") or {}).get("state")) == state):
                found -= 1
            pos = found + 1
        starts.append(found)
    known = [s for s in starts if s is not None]
    before = list(range(known[0] if known else len(calls)))
    per_step: list[list[int]] = []
    for i, start in enumerate(starts):
        if start is None:
            per_step.append([])
            continue
        end = next((s for s in starts[i + 1:] if s is not None), len(calls))
        per_step.append(list(range(start, end)))
    return before, per_step


def real_states(task: Any, problem: Any, record: dict[str, Any]) -> list[Any] | None:
    """The environment's state before each executed action and after the last, replaying the record's plan
    (invalid actions leave the state as the task's scoring does); None when the plan cannot be replayed."""
    try:
        state = task.start(problem)
        states = [state.model_dump(mode="json")]
        for raw in record.get("plan") or []:
            action = task.Action.model_validate(raw)
            state = (task.apply(state, action, problem) if task.check(state, action, problem).valid
                     else task.after_invalid(state, action, problem))
            states.append(state.model_dump(mode="json"))
        return states
    except Exception:  # a baseline's free-form plan, or a task whose data changed
        return None


def problem_row(record: dict[str, Any]) -> dict[str, Any]:
    """The figures the problems table shows for one record."""
    execution = record.get("execution") or {}
    total = (record.get("usage") or {}).get("total") or {}
    n, bad = execution.get("n_actions", 0), execution.get("n_invalid", 0)
    return {"problem": str(record.get("problem_id")), "run": record.get("run", 0),
            "solved": bool(record.get("solved")), "pct_invalid": 100.0 * bad / n if n else 0.0,
            "actions": n, "calls": total.get("calls", len(record.get("calls") or [])),
            "tokens": total.get("input_tokens", 0) + total.get("output_tokens", 0),
            "seconds": record.get("wall_seconds") or 0.0, "failures": total.get("failures", 0),
            "status": record.get("status") or ("error" if record.get("error") else "")}


def _anchor(record: dict[str, Any]) -> str:
    return f"p-{record.get('problem_id')}-r{record.get('run', 0)}"


class _RunConfig(BaseModel):
    """What the page reads of ``config.json`` (a ``RunSpec``, not imported here: the runner pulls in LangChain).
    Loose on purpose, every field optional and the others kept, so that a run an older version wrote still shows;
    a file of the wrong shape is named (``FileError``) rather than breaking the page half-way."""

    model_config = ConfigDict(extra="allow")

    task: str | None = None
    split: str | None = None
    method: str = "map"
    backend: str | None = None
    model: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)


class RunPage:
    """Builds one run's page."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = Path(run_dir)
        config_path = self.dir / "config.json"
        if not config_path.exists():
            raise FileNotFoundError(f"{self.dir}: not a run directory (no config.json)")
        self.config = load_file(config_path, _RunConfig).model_dump()
        summary = self.dir / "summary.json"
        self.summary = load_file(summary, dict[str, Any]) if summary.exists() else {}
        path = self.dir / "records.jsonl"
        self.records = read_records(path, RecordCheck) if path.exists() else []
        self.records.sort(key=lambda r: (r.get("run", 0), _natural(str(r.get("problem_id")))))
        try:
            from map_agent.task import get_task

            self.task = get_task(self.config["task"])
        except Exception:  # an unknown or unavailable task: shown with JSON instead of its renderers
            self.task = None
        self.text = _Text(self.task)

    @property
    def run_id(self) -> str:
        return self.summary.get("run_id") or self.dir.name

    def html(self) -> str:
        c = self.config
        model = c.get("model") or ("symbolic oracles" if c.get("backend") == "oracle" else "embedded")
        deviations = (c.get("config") or {}).get("deviations") or self.summary.get("deviations") or {}
        solved = sum(r.get("solved", False) for r in self.records)
        head = (f"<h1>{_e(self.run_id)}</h1><div class=meta><span>task <b>{_e(c.get('task'))}</b></span>"
                f"<span>split <b>{_e(c.get('split'))}</b></span><span>method <b>{_e(c.get('method', 'map'))}</b>"
                f"</span><span>backend <b>{_e(c.get('backend'))}</b></span><span>model <b>{_e(model)}</b></span>"
                f"<span>solved <b>{solved} of {len(self.records)}</b></span></div>")
        if deviations:
            head += f"<p class=muted>options differing from the paper's protocol: {_e(_compact(deviations))}</p>"
        parts = [head, self._table(), "<h2>Problems</h2>",
                 *(self._problem(r) for r in self.records)]
        if not self.records:
            parts.append("<p>This run has no records yet.</p>")
        return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{_e(self.run_id)} · map-agent"
                f"</title><meta name=viewport content='width=device-width'><style>{_CSS}</style></head><body>"
                + "".join(parts) + f"<script>{_JS}</script></body></html>")

    def _problem_of(self, record: dict[str, Any]) -> Any:
        if self.task is None:
            return None
        try:
            return self.task.problem(record["problem_id"], split=self.config.get("split"))
        except Exception:  # a problem id this version of the task no longer has
            return None

    def diagnosis(self, record: dict[str, Any]) -> tuple[str, str]:
        """What went wrong first on a problem, short (the table) and in a sentence (the problem's section): a
        module call that failed, else the first step whose action the environment rejected (with what the
        Monitor had said of it), else the first step where the Predictor's state was not the real one."""
        calls = record.get("calls") or []
        failed = next((i for i, c in enumerate(calls) if c.get("failed")), None)
        if record.get("error"):
            return "run error", f"the problem failed: {record['error']}"
        if failed is not None:
            call = calls[failed]
            return call.get("module", "?"), f"call #{failed + 1}, {call.get('module')}, failed: {call.get('error')}"
        problem = self._problem_of(record)
        reality = real_states(self.task, problem, record) if problem is not None else None
        _, per_step = assign_calls(record)
        execution = (record.get("execution") or {}).get("steps") or []
        for i, step in enumerate(record.get("steps") or []):
            chosen = (step.get("choice") or {}).get("chosen") or {}
            env = execution[i] if i < len(execution) else {}
            if env and not env.get("valid"):
                said = [c for c in (calls[k] for k in per_step[i]) if c.get("module") == "Monitor" and
                        _key((c.get("input") or {}).get("action")) == _key(chosen.get("action"))]
                passed = any((c.get("output") or {}).get("valid") for c in said)
                monitor = ("the Monitor had judged it valid" if passed else
                           "the Monitor had rejected it (executed anyway: every proposal was rejected)" if said else
                           "no Monitor judged it")
                return (f"{'Monitor' if passed else 'Actor'}, step {i + 1}",
                        f"step {i + 1}: the environment rejected {self.text.action(chosen.get('action'))} "
                        f"({env.get('reason')}); {monitor}")
            real = reality[i + 1] if reality is not None and i + 1 < len(reality) else None
            if real is not None and chosen.get("predicted") is not None and _key(real) != _key(chosen["predicted"]):
                return (f"Predictor, step {i + 1}", f"step {i + 1}: the Predictor's state "
                        f"{self.text.state(chosen['predicted'])} is not the real one, {self.text.state(real)}")
        return "", ""

    def _table(self) -> str:
        cols = [("problem", "problem", ""), ("run", "run", "num"), ("solved", "solved", ""),
                ("pct_invalid", "% invalid", "num"), ("actions", "actions", "num"), ("calls", "module calls", "num"),
                ("tokens", "tokens", "num"), ("seconds", "time (s)", "num"), ("failures", "failed calls", "num"),
                ("first_failure", "first went wrong", ""), ("status", "status", "")]
        head = "".join(f"<th class={cls or 'text'}>{_e(label)}</th>" for _, label, cls in cols)
        rows = []
        for record in self.records:
            row = problem_row(record) | {"first_failure": self.diagnosis(record)[0]}
            cells = []
            for key, _, cls in cols:
                v = row[key]
                shown = (f"<span class={'ok' if v else 'bad'}>{'yes' if v else 'no'}</span>" if key == "solved" else
                         f"<a href='#problem={_e(row['problem'])}'>{_e(v)}</a>" if key == "problem" else
                         _e(_num(v, 0 if key == "pct_invalid" and v in (0, 100) else 1)) if isinstance(v, float)
                         else _e(v))
                cells.append(f"<td class={cls or 'text'} data-v='{_e(int(v) if isinstance(v, bool) else v)}'>"
                             f"{shown}</td>")
            rows.append(f"<tr data-solved={int(row['solved'])} data-failures={row['failures']} "
                        f"data-target='{_anchor(record)}'>{''.join(cells)}</tr>")
        controls = ("<div class=controls><input id=filter type=search placeholder='filter problems…' "
                    "aria-label='filter problems'><select id=which aria-label='which problems'>"
                    "<option value=all>all problems</option><option value=solved>solved</option>"
                    "<option value=unsolved>not solved</option><option value=failures>with failed calls</option>"
                    "</select><span id=shown class=muted></span></div>")
        return (f"<h2>Problems table</h2>{controls}<table id=problems><thead><tr>{head}</tr></thead>"
                f"<tbody>{''.join(rows)}</tbody></table>")

    def _problem(self, record: dict[str, Any]) -> str:
        t = self.text
        row = problem_row(record)
        calls = record.get("calls") or []
        prompts = _Prompts(self.task, record, self.config.get("split")) if self.task is not None else None
        mark = "<span class=ok>solved</span>" if row["solved"] else "<span class=bad>not solved</span>"
        out = [f"<details class=problem id='{_anchor(record)}' data-problem='{_e(row['problem'])}'>"
               f"<summary>problem {_e(row['problem'])} · run {_e(row['run'])} · {mark} · "
               f"{_plural(row['actions'], 'action')}, {row['failures']} failed calls</summary>"]
        out.append(f"<p>outcome: {_e(record.get('outcome') or record.get('error') or '')}</p>")
        if record.get("error"):
            out.append(f"<p class=bad>the problem failed: {_e(record['error'])}</p>")
        first = next((i for i, c in enumerate(calls) if c.get("failed")), None)
        if first is not None:
            call = calls[first]
            wrote = (call.get("replies") or [{}])[-1].get("text", "")
            out.append(f"<p class=bad>first failed module call: #{first + 1}, {_e(call.get('module'))}: "
                       f"{_e(call.get('error'))}</p><p>it wrote:</p><pre>{_e(wrote or '(no reply)')}</pre>")
        elif (said := self.diagnosis(record)[1]):
            out.append(f"<p class=bad>what went wrong first: {_e(said)}</p>")
        if record.get("subgoals"):
            goals = "; ".join(t.goal(g) for g in record["subgoals"])
            out.append(f"<p>subgoals (TaskDecomposer): {_e(goals)}</p>")
        problem = self._problem_of(record)
        reality = real_states(self.task, problem, record) if problem is not None else None
        before, per_step = assign_calls(record)
        execution = (record.get("execution") or {}).get("steps") or []
        if before:
            out.append(f"<details class=step data-step=0><summary>before the first step: "
                       f"{_plural(len(before), 'module call')}</summary>"
                       + "".join(self._call(i, calls[i], prompts) for i in before) + "</details>")
        for i, step in enumerate(record.get("steps") or []):
            out.append(self._step(i, step, [calls[k] for k in per_step[i]], per_step[i], execution, reality,
                                  prompts))
        if not record.get("steps") and calls and not before:
            out += [self._call(i, c, prompts) for i, c in enumerate(calls)]
        if prompts is not None and prompts.modules:
            used = sorted({c.get("module") for c in calls if c.get("impl") == "llm"})
            for module in used:
                prefix = prompts.prefix(module)
                body = "".join(f"<p class=muted>{_e(role)}</p><pre>{_e(text)}</pre>" for role, text in prefix)
                out.append(f"<details><summary>{_e(module)}'s system prompt and examples (the start of every "
                           f"{_e(module)} prompt on this problem)</summary>{body}</details>")
        elif prompts is not None and prompts.error and any(c.get("impl") == "llm" for c in calls):
            out.append(f"<p class=muted>{_e(prompts.error)}</p>")
        out.append("</details>")
        return "".join(out)

    def _step(self, i: int, step: dict[str, Any], calls: list[dict[str, Any]], numbers: list[int],
              execution: list[dict[str, Any]], reality: list[Any] | None, prompts: _Prompts | None) -> str:
        t = self.text
        choice = step.get("choice") or {}
        chosen = choice.get("chosen") or {}
        env = execution[i] if i < len(execution) else None
        verdict = ("" if env is None else "<span class=ok>valid</span>" if env.get("valid") else
                   f"<span class=bad>invalid: {_e(env.get('reason'))}</span>")
        action = t.action(chosen.get("action")) if chosen.get("action") is not None else "no action"
        failed = sum(bool(c.get("failed")) for c in calls)
        flags = f" · environment: {verdict}" if verdict else ""
        if failed:
            flags += f" · <span class=bad>{_plural(failed, 'failed call')}</span>"
        out = [f"<details class=step data-step={i + 1}><summary>step {i + 1}: {_e(action)}{flags}</summary>"]
        out.append(f"<p>state: {_e(t.state(step.get('state')))}<br>goal pursued"
                   f"{' (subgoal ' + str(step['goal_index'] + 1) + ')' if step.get('goal_index') is not None else ''}"
                   f": {_e(t.goal(step.get('goal')))}</p>")
        out.append(self._proposals(calls))
        out.append(self._search(choice))
        if env is not None:
            belief = chosen.get("predicted")
            real = reality[i + 1] if reality is not None and i + 1 < len(reality) else None
            differs = belief is not None and real is not None and _key(belief) != _key(real)
            out.append("<h3>The environment's verdict and the modules' belief</h3>"
                       "<table><tr><th>the environment</th><th>the modules' belief</th></tr><tr>"
                       f"<td>{verdict}; state after: {_e(t.state(real)) if real is not None else '–'}</td>"
                       f"<td class='{'belief' if differs else ''}'>predicted: "
                       f"{_e(t.state(belief)) if belief is not None else '–'}"
                       f"{' <b>(differs from the real state)</b>' if differs else ''}</td></tr></table>")
        if calls:
            out.append(f"<details><summary>{_plural(len(calls), 'module call')} of this step</summary>"
                       + "".join(self._call(n, c, prompts) for n, c in zip(numbers, calls, strict=True))
                       + "</details>")
        out.append("</details>")
        return "".join(out)

    def _proposals(self, calls: list[dict[str, Any]]) -> str:
        """Every Actor proposal with the Monitor's verdict on each of its actions (the Monitor calls that follow
        the proposal, matched by action)."""
        t = self.text
        rows = []
        for k, call in enumerate(calls):
            if call.get("module") != "Actor":
                continue
            if call.get("failed"):
                rows.append(f"<tr><td>Actor call failed: {_e(call.get('error'))}</td><td></td></tr>")
                continue
            verdicts = {}
            for later in calls[k + 1:]:
                if later.get("module") == "Actor":
                    break
                if later.get("module") == "Monitor":
                    verdicts.setdefault(_key((later.get("input") or {}).get("action")), later)
            for action in (call.get("output") or {}).get("actions") or []:
                m = verdicts.get(_key(action))
                if m is None:
                    shown = "<span class=muted>not judged (Monitor off or not reached)</span>"
                elif m.get("failed"):
                    shown = f"<span class=bad>Monitor failed: {_e(m.get('error'))}</span>"
                else:
                    out = m.get("output") or {}
                    shown = ("<span class=ok>valid</span>" if out.get("valid") else
                             f"<span class=bad>invalid</span>: {_e(out.get('feedback') or out.get('reasoning') or '')}")
                rows.append(f"<tr><td>{_e(t.action(action))}</td><td>{shown}</td></tr>")
        if not rows:
            return "<p class=muted>no Actor proposal recorded for this step</p>"
        return ("<h3>Actor proposals and the Monitor's verdicts</h3><table><tr><th>proposed action</th>"
                f"<th>Monitor</th></tr>{''.join(rows)}</table>")

    def _search(self, choice: dict[str, Any]) -> str:
        t = self.text
        branches = choice.get("branches") or []
        chosen = _key((choice.get("chosen") or {}).get("action"))
        if not branches:
            return ""
        rows = "".join(
            f"<tr class='{'chosen' if _key(b.get('action')) == chosen else ''}'><td>{_e(t.action(b.get('action')))}"
            f"</td><td>{_e(t.state(b.get('predicted')))}</td><td class=num>{_e(_num(b.get('value')))}</td>"
            f"<td>{'yes' if b.get('reached_goal') else ''}</td>"
            f"<td>{'chosen' if _key(b.get('action')) == chosen else ''}</td></tr>" for b in branches)
        return ("<h3>Search</h3><table><tr><th>branch</th><th>predicted state (Predictor)</th>"
                "<th class=num>value (Evaluator: steps to go)</th><th>goal (Orchestrator)</th><th>choice</th></tr>"
                f"{rows}</table>")

    def _call(self, number: int, call: dict[str, Any], prompts: _Prompts | None) -> str:
        failed = call.get("failed")
        replies = call.get("replies") or []
        flags = " · <span class=bad>failed</span>" if failed else ""
        if replies:
            flags += f" · {_plural(len(replies), 'reply')}"
        out = [f"<details class='call{' failed' if failed else ''}' data-call={number + 1}>"
               f"<summary>#{number + 1} {_e(call.get('module'))}"
               f" ({_e(call.get('impl'))}){flags}</summary>"]
        if failed:
            out.append(f"<p class=bad>{_e(call.get('error'))}</p>")
        out.append(f"<p class=muted>input</p><pre>{_e(_compact(call.get('input')))}</pre>")
        message = prompts.message(call) if prompts is not None else None
        if message is not None:
            out.append(f"<p class=muted>prompt (the user message; the system prompt and examples are below the "
                       f"steps)</p><pre>{_e(message)}</pre>")
        for k, reply in enumerate(replies):
            note = ", ".join(x for x in (f"finish_reason {reply.get('finish_reason')}" if reply.get("finish_reason")
                                         else "", "from the cache" if reply.get("cache_hit") else "",
                                         f"cut to {len(reply.get('text', ''))} of {reply.get('chars')} characters"
                                         if reply.get("chars", 0) > len(reply.get("text", "")) else "") if x)
            out.append(f"<p class=muted>raw reply {k + 1}{' (' + note + ')' if note else ''}</p>"
                       f"<pre>{_e(reply.get('text', ''))}</pre>")
        if call.get("output") is not None:
            out.append(f"<p class=muted>output</p><pre>{_e(_compact(call.get('output')))}</pre>")
        out.append("</details>")
        return "".join(out)


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _natural(text: str) -> tuple:
    return (0, int(text), "") if text.isdigit() else (1, 0, text)


def write_view(run_dir: Path | str, out: Path | str | None = None) -> Path:
    """Write ``run_dir``'s page: ``out/<run id>.html`` when ``out`` is given, else ``run_dir/view.html``."""
    page = RunPage(Path(run_dir))
    target = Path(out) / f"{page.run_id}.html" if out is not None else page.dir / "view.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page.html(), encoding="utf-8")
    return target


def add_arguments(p: argparse.ArgumentParser) -> None:
    from map_agent.options import add_options

    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories (runs/<id>); without --out each "
                                                             "page is written as RUN_DIR/view.html")
    p.add_argument("--serve", action="store_true", help="then serve the pages on 127.0.0.1 until Ctrl-C")
    p.add_argument("--port", type=int, default=8765, help="the port --serve listens on (loopback only)")
    add_options(p, "out", defaults={"out": None})


def cli_run(args: argparse.Namespace, announce: Callable[[str], None] | None = None) -> int:
    from map_agent.cli import console

    say = announce or (lambda text: console.print(text, highlight=False, markup=False))
    pages = [write_view(run, args.out) for run in args.runs]
    for page in pages:
        say(f"wrote {page} (open file://{page.resolve()})")
    if args.serve:
        serve(pages, args.port, say)
    return 0


def serve(pages: list[Path], port: int, say: Callable[[str], None]) -> None:
    """Serve the pages' folders on the loopback interface only: the records may hold prompts and replies that
    are nobody else's business."""
    import functools
    import http.server
    import os

    roots = {p.parent.resolve() for p in pages}
    root = Path(os.path.commonpath([str(r) for r in roots]))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    with http.server.ThreadingHTTPServer(("127.0.0.1", port), handler) as server:
        for page in pages:
            say(f"serving http://127.0.0.1:{server.server_address[1]}/{page.resolve().relative_to(root)}")
        server.serve_forever()
