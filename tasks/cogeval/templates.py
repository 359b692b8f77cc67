"""CogEval's own task templates (cogeval/cogmaps ``task_templates/``): six graphs, several framings.

A template JSON holds prompt strings (``{"content": ...}`` per prompt id) and ``CONVERSATIONS``: per
condition, the sequence of prompt ids sent and the expected answers (``"Answer: 1, 11, 2, 8"``).
``load_template`` reads and checks that structure for any graph and framing.

The graph itself is parsed from text so that other graphs can be run with the same environment:

* numbered adjacency sentences (n15star, n16cluster, n21star ``ordRooms``): "Room 1 is connected to rooms 2,
  3, and 4." and CogEval's "Room 1, room 7, and room 11 are all connected to each other." -- the latter names
  a door from the first room to each of the others, as the reference edge list in ``n15star/ordRooms.md``
  shows (it is not a clique); rewards from "a reward of 10 for visiting room 8" (a "penalty of 15" is a reward
  of -15);
* the Markdown graph cards (``n15star/ordRooms.md``'s ``<graph>`` tuples; ``n7tree/objectRelations.md``'s
  ``<states>``/``<rewards>``/``<transitions>``), which is where the n7tree graph is stated explicitly (its
  ``ordRooms`` story never names one zone).

Anything that does not parse raises ``InvalidProblem`` naming the file, the field and the problem.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

from pydantic import BaseModel, ConfigDict, ValidationError

from map_agent.task import InvalidProblem, load_json

from .graph import RoomGraph

#: Where each graph is stated explicitly enough to parse: (template file, prompt id or None for a .md card).
GRAPH_SOURCES: dict[str, tuple[str, str | None]] = {
    "n7tree": ("n7tree/objectRelations.md", None),
    "n15star": ("n15star/ordRooms.json", "valuePath"),
    "n16cluster": ("n16cluster/ordRooms.json", "valuePath"),
    "n21star": ("n21star/ordRooms.json", "valuePath"),
}
#: Graphs whose templates are stories without an explicit door list (n7line, n13line): loadable, not parsed.
STORY_ONLY = ("n7line", "n13line")

_WORDS = {"six": 6, "seven": 7, "twelve": 12, "thirteen": 13, "fifteen": 15, "sixteen": 16, "twenty-one": 21}


class Conversation(BaseModel):
    """One CogEval condition: the prompt ids sent in order and the accepted answers to the last one."""

    model_config = ConfigDict(frozen=True)

    condition: str
    prompt_ids: tuple[str, ...]
    expected: tuple[str, ...]

    def expected_paths(self) -> list[list[int]]:
        """The expected answers that are room-number paths ("Answer: 1, 11, 2, 8"), deduplicated."""
        paths: list[list[int]] = []
        for answer in self.expected:
            body = answer.split(":", 1)[-1]
            if re.fullmatch(r"\s*\d+(\s*,\s*\d+)*\s*", body):
                path = [int(x) for x in re.findall(r"\d+", body)]
                if path not in paths:
                    paths.append(path)
        return paths


class Template(BaseModel):
    """A parsed template file: its prompts by id and its conversations."""

    model_config = ConfigDict(frozen=True)

    source: str
    prompts: dict[str, str]
    conversations: tuple[Conversation, ...]

    def conversation(self, condition: str) -> Conversation:
        for c in self.conversations:
            if c.condition == condition:
                return c
        raise KeyError(
            f"{self.source}: no conversation {condition!r}; "
            f"known: {', '.join(c.condition for c in self.conversations)}"
        )


def parse_template(text: str, source: str) -> Template:
    """Check and read a template JSON's text (``source`` names it in errors)."""
    raw = load_json(text, source, dict, "prompts and 'CONVERSATIONS'")
    prompts: dict[str, str] = {}
    for key, value in raw.items():
        if key == "CONVERSATIONS":
            continue
        if not isinstance(value, dict) or not isinstance(value.get("content"), str):
            raise InvalidProblem(f"{source}: field {key!r}: expected an object with a string 'content'")
        prompts[key] = value["content"]
    convs = raw.get("CONVERSATIONS")
    if not isinstance(convs, list):
        raise InvalidProblem(f"{source}: field 'CONVERSATIONS': missing or not a list")
    conversations = []
    for i, conv in enumerate(convs):
        where = f"CONVERSATIONS[{i}]"
        if not isinstance(conv, dict) or len(conv) != 1:
            raise InvalidProblem(f"{source}: field {where!r}: expected an object with exactly one condition")
        ((condition, turns),) = conv.items()
        if not isinstance(turns, list) or not turns:
            raise InvalidProblem(f"{source}: field '{where}.{condition}': expected a non-empty list of turns")
        ids: list[str] = []
        for j, turn in enumerate(turns):
            pid = turn.get("prompt_id") if isinstance(turn, dict) else None
            if pid not in prompts:
                raise InvalidProblem(
                    f"{source}: field '{where}.{condition}[{j}].prompt_id': "
                    f"{pid!r} is not a prompt of this file"
                )
            ids.append(pid)
        expected = turns[-1].get("expected_answer") or []
        if isinstance(expected, str):  # some files give a single answer as a bare string
            expected = [expected]
        if not isinstance(expected, list) or not all(isinstance(a, str) for a in expected):
            raise InvalidProblem(
                f"{source}: field '{where}.{condition}[-1].expected_answer': expected a list of strings"
            )
        conversations.append(
            Conversation(condition=condition, prompt_ids=tuple(ids), expected=tuple(expected))
        )
    return Template(source=source, prompts=prompts, conversations=tuple(conversations))


# -- graphs from text ----------------------------------------------------------------------------------------
_ROOM_LIST = r"(?:rooms?\s+)?\d+(?:\s*,?\s*(?:and\s+)?(?:rooms?\s+)?\d+)*"
_IS_CONNECTED = re.compile(rf"^Room (\d+) is (?:also )?connected to ({_ROOM_LIST})\.?$", re.I)
_EACH_OTHER = re.compile(
    rf"^Room (\d+)\s*,?\s*((?:and\s+)?{_ROOM_LIST}) are (?:all )?connected to each other\.?$", re.I
)
_REWARD = re.compile(r"(reward|penalty) of (\d+(?:\.\d+)?) for visiting room (\d+)", re.I)
_SIZE = re.compile(r"with (\d+|[a-z-]+) rooms", re.I)


def parse_rooms_text(text: str, source: str, field: str) -> RoomGraph:
    """Doors and chests from numbered adjacency sentences (see the module docstring)."""
    edges: list[tuple[int, int]] = []
    for sentence in re.split(r"(?<=\.)\s+", text.strip()):
        sentence = sentence.strip()
        m = _IS_CONNECTED.match(sentence) or _EACH_OTHER.match(sentence)
        if not m:
            continue
        first = int(m.group(1))
        for other in (int(x) for x in re.findall(r"\d+", m.group(2))):
            if other == first:
                raise InvalidProblem(
                    f"{source}: field {field!r}: room {first} is said to connect to itself in {sentence!r}"
                )
            if frozenset((first, other)) not in {frozenset(e) for e in edges}:
                edges.append((first, other))
    if not edges:
        raise InvalidProblem(f"{source}: field {field!r}: no 'Room N is connected to ...' sentences found")
    rewards = {
        int(room): (-1 if kind.lower() == "penalty" else 1) * float(v)
        for kind, v, room in _REWARD.findall(text)
    }
    connected = {r for e in edges for r in e}
    stray = sorted(set(rewards) - connected)
    if stray:
        raise InvalidProblem(
            f"{source}: field {field!r}: reward for room(s) {stray}, which no sentence connects"
        )
    graph = _graph(edges, rewards, source, field)
    size = _SIZE.search(text)
    if size:
        word = size.group(1).lower()
        n = int(word) if word.isdigit() else _WORDS.get(word)
        if n is not None and n != len(graph.rooms):
            raise InvalidProblem(
                f"{source}: field {field!r}: the text says {n} rooms but its sentences connect "
                f"{len(graph.rooms)}"
            )
    return graph


_BLOCK = re.compile(
    r"\\?<(graph|states|rewards|transitions)>(.*?)(?=\\?<(?:/?graph|states|rewards|transitions)>|$)", re.S
)


def parse_graph_card(text: str, source: str) -> RoomGraph:
    """Doors and chests from a Markdown graph card: ``<graph>`` tuples or ``<transitions>`` lines."""
    blocks = {name: body for name, body in _BLOCK.findall(text)}
    if "graph" in blocks:
        edges = [(int(a), int(b)) for a, b in re.findall(r"\(\s*(\d+)\s*,\s*(\d+)\s*\)", blocks["graph"])]
        field = "<graph>"
    elif "transitions" in blocks:
        edges = [(int(a), int(b)) for a, b in re.findall(r"(\d+)\s*->\s*(\d+)", blocks["transitions"])]
        field = "<transitions>"
    else:
        raise InvalidProblem(f"{source}: no <graph> or <transitions> block")
    if not edges:
        raise InvalidProblem(f"{source}: field {field!r}: no edges found")
    rewards: dict[int, float] = {}
    for line in blocks.get("rewards", "").splitlines():
        if not line.strip():
            continue
        m = re.fullmatch(r"\s*(\d+)\s*:\s*(-?\d+(?:\.\d+)?)\s*", line)
        if not m:
            raise InvalidProblem(
                f"{source}: field '<rewards>': cannot read {line.strip()!r} (want 'room: value')"
            )
        rewards[int(m.group(1))] = float(m.group(2))
    states = [int(s) for s in re.findall(r"^\s*(\d+)\s*:", blocks.get("states", ""), re.M)]
    return _graph(edges, rewards, source, field, rooms=states)


def _graph(edges, rewards, source: str, field: str, rooms: list[int] | None = None) -> RoomGraph:
    try:
        return RoomGraph.from_edges(edges, rewards, rooms)
    except ValidationError as e:
        raise InvalidProblem(f"{source}: field {field!r}: {e.errors()[0]['msg']}") from None


# -- the bundled copies -------------------------------------------------------------------------------------
def _read(relpath: str) -> str:
    path = resources.files("map_agent.tasks") / "cogeval" / "data" / "templates" / relpath
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidProblem(f"templates/{relpath}: no such template file") from None


@cache
def load_template(graph: str, framing: str = "ordRooms") -> Template:
    """A bundled CogEval template, e.g. ``load_template("n15star", "ordRooms")``."""
    relpath = f"{graph}/{framing}.json"
    return parse_template(_read(relpath), f"templates/{relpath}")


@cache
def template_graph(graph: str) -> RoomGraph:
    """The parsed graph of a CogEval graph name (``GRAPH_SOURCES`` says which file states it)."""
    if graph not in GRAPH_SOURCES:
        hint = " (its templates are stories without a door list)" if graph in STORY_ONLY else ""
        raise KeyError(f"cogeval: no parsable graph {graph!r}{hint}; known: {', '.join(GRAPH_SOURCES)}")
    relpath, field = GRAPH_SOURCES[graph]
    source = f"templates/{relpath}"
    if field is None:
        return parse_graph_card(_read(relpath), source)
    template = parse_template(_read(relpath), source)
    if field not in template.prompts:
        raise InvalidProblem(f"{source}: field {field!r}: missing")
    return parse_rooms_text(template.prompts[field], source, field)
