"""PlanBench's natural language: its ``configs/<domain>.yaml`` templates, both ways.

PlanBench writes a fact ``(craves a b)`` as "object a craves object b" and an action ``(feast b c)`` as "feast
object b from object c"; states read "As initial conditions I have that, x, y and z." Rendering with the same
templates keeps MAP's prompts reading like PlanBench's. Parsing the sentences back lets a module answer in either
form (PDDL atom or PlanBench phrase).

Predicates whose template is empty (Logistics' type predicates ``OBJ``, ``TRUCK``...) are static and unspoken in
PlanBench, so they are kept out of the states a model sees (``hidden``) and added back for the ground truth.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import yaml

from map_agent.task import InvalidProblem
from map_agent.tools.strips import Atom, format_atom, parse_atom

_OBJECT = r"([A-Za-z0-9_\-]+(?: [a-z])?)"


@dataclass(frozen=True)
class Language:
    """The templates of one PlanBench domain (``actions``, ``predicates``, ``encoded_objects``)."""

    source: str
    actions: dict[str, str]
    predicates: dict[str, str]
    objects: dict[str, str]

    @classmethod
    def from_yaml(cls, path: Path) -> Language:
        """Read a PlanBench config; ``InvalidProblem`` names the file and the missing or malformed field."""
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise InvalidProblem(f"{path.name}: not YAML: {e}") from None
        if not isinstance(raw, dict):
            raise InvalidProblem(f"{path.name}: expected a mapping of fields")
        fields = {}
        for name in ("actions", "predicates", "encoded_objects"):
            value = raw.get(name)
            if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                      for k, v in value.items()):
                raise InvalidProblem(f"{path.name}: field {name!r} must map names to template strings")
            fields[name] = {k.lower(): v for k, v in value.items()}
        return cls(source=path.name, actions=fields["actions"], predicates=fields["predicates"],
                   objects=fields["encoded_objects"])

    # -- rendering ---------------------------------------------------------------------------------------------
    @cached_property
    def hidden(self) -> frozenset[str]:
        """Predicates PlanBench never speaks (empty template): static type facts."""
        return frozenset(p for p, t in self.predicates.items() if not t.strip())

    def object(self, name: str) -> str:
        """``a`` -> "object a" (Mystery BW); ``l1-0`` -> "location_1_0", ``p3`` -> "package_3" (Logistics)."""
        if name in self.objects:
            return self.objects[name]
        template = self.objects.get(name[:1])
        if template is None or "{}" not in template:
            return name
        parts = name[1:].split("-")
        return template.format(*parts) if template.count("{}") == len(parts) else name

    def fact(self, atom: Atom) -> str:
        template = self.predicates.get(atom[0])
        if not template:
            return format_atom(atom)
        return template.format(*(self.object(a) for a in atom[1:]))

    def action(self, name: str, args: tuple[str, ...] | list[str]) -> str:
        template = self.actions.get(name)
        return template.format(*(self.object(a) for a in args)) if template else format_atom((name, *args))

    def facts(self, atoms: list[Atom]) -> str:
        """PlanBench's list: sorted by predicate (as its prompts are), "a, b and c"."""
        spoken = [self.fact(a) for a in sorted(atoms) if a[0] not in self.hidden]
        if len(spoken) <= 1:
            return "".join(spoken)
        return ", ".join(spoken[:-1]) + " and " + spoken[-1]

    # -- parsing -------------------------------------------------------------------------------------------------
    @cached_property
    def _object_patterns(self) -> list[tuple[re.Pattern[str], str]]:
        patterns = []
        for key, template in self.objects.items():
            regex = "^" + re.escape(template).replace(r"\{\}", "([0-9a-z]+)") + "$"
            patterns.append((re.compile(regex, re.IGNORECASE), key))
        return patterns

    def parse_object(self, phrase: str) -> str:
        phrase = phrase.strip()
        for pattern, key in self._object_patterns:
            m = pattern.match(phrase)
            if m:
                return key + "-".join(m.groups()) if m.groups() else key
        return phrase.lower()

    @staticmethod
    def _template_regex(template: str) -> re.Pattern[str]:
        body = re.escape(" ".join(template.split())).replace(r"\{\}", _OBJECT)
        return re.compile("^" + body + "$", re.IGNORECASE)

    @cached_property
    def _fact_patterns(self) -> list[tuple[re.Pattern[str], str]]:
        spoken = [(p, t) for p, t in self.predicates.items() if t.strip()]
        # the most specific template first: "{} is in the city {}" before "{} is in {}"
        spoken.sort(key=lambda pt: -len(pt[1].replace("{}", "")))
        return [(self._template_regex(t), p) for p, t in spoken]

    def parse_fact(self, text: str) -> Atom:
        """A PDDL atom ``(craves a b)`` or a PlanBench phrase "object a craves object b" -> the atom."""
        text = " ".join(text.strip().rstrip(".").split())
        if text.startswith("("):
            return parse_atom(text)
        for pattern, predicate in self._fact_patterns:
            m = pattern.match(text)
            if m:
                return (predicate, *(self.parse_object(g) for g in m.groups()))
        raise ValueError(f"not a fact of this domain: {text!r} (expected e.g. "
                         f"{next(iter(self.predicates.values()))!r} or a PDDL atom)")

    def parse_action(self, text: str) -> list[Atom]:
        """Every reading of an action text as ``(name, *args)``: a PDDL form has one; a PlanBench phrase can
        have several when two actions share a template (Logistics' load-truck and load-airplane), and the
        task resolves those with the problem's objects."""
        text = " ".join(text.strip().rstrip(".").split())
        if text.startswith("("):
            return [parse_atom(text)]
        readings = []
        for name, template in self.actions.items():
            m = self._template_regex(template).match(text)
            if m:
                readings.append((name, *(self.parse_object(g) for g in m.groups())))
        if not readings:
            raise ValueError(f"not an action of this domain: {text!r} (expected e.g. "
                             f"{next(iter(self.actions.values()))!r} with objects filled in)")
        return readings
