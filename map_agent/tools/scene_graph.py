"""Scene graphs and problem graphs (Planetarium, Section 3.3).

A scene graph has one node per object (``kind="object"``) and one per listed proposition (``kind="proposition"``,
with its ``predicate``); each argument of a proposition is an edge from the proposition to the object carrying
the ``predicate``, the argument ``position`` (0-based) and the ``scene`` (``"init"`` or ``"goal"``). A problem
graph is the union of an initial and a goal scene over the same object nodes.

Isomorphism (an edge- and type-preserving bijection) is decided by colour refinement with individualisation
(see :func:`is_isomorphic`).

Example:
    >>> g = scene_graph({"a": None, "b": None}, [("on", "a", "b")], "init")
    >>> sorted(d["predicate"] for _, d in g.nodes(data=True) if d["kind"] == "proposition")
    ['on']
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

import networkx as nx

from map_agent.tools.strips import Atom, format_atom

__all__ = ["is_isomorphic", "problem_graph", "scene_graph", "signature"]


def scene_graph(objects: Mapping[str, str | None], atoms: Iterable[Atom], scene: str) -> nx.DiGraph:
    """The scene graph of ``atoms`` over ``objects`` (name -> type, None when untyped)."""
    graph = nx.DiGraph()
    for name, type_name in objects.items():
        graph.add_node(("object", name), kind="object", type=type_name or "object", name=name)
    for atom in atoms:
        node = ("proposition", scene, atom)
        graph.add_node(node, kind="proposition", predicate=atom[0], scene=scene, text=format_atom(atom))
        for position, arg in enumerate(atom[1:]):
            graph.add_edge(node, ("object", arg), predicate=atom[0], position=position, scene=scene)
    return graph


def problem_graph(init_scene: nx.DiGraph, goal_scene: nx.DiGraph) -> nx.DiGraph:
    """The initial and goal scenes joined on their (shared) object nodes."""
    return nx.compose(init_scene, goal_scene)


def _label(data: dict) -> str:
    if data["kind"] == "object":
        return f"object:{data['type']}"
    return f"{data['scene']}:{data['predicate']}"


def signature(graph: nx.DiGraph) -> tuple:
    """A cheap isomorphism invariant: label counts and the multiset of (label, in/out-degree) pairs."""
    labels = Counter(_label(d) for _, d in graph.nodes(data=True))
    degrees = Counter((_label(graph.nodes[n]), graph.in_degree(n), graph.out_degree(n)) for n in graph)
    edges = Counter((d["predicate"], d["position"], d["scene"]) for _, _, d in graph.edges(data=True))
    return tuple(sorted(labels.items())), tuple(sorted(degrees.items())), tuple(sorted(edges.items()))


def is_isomorphic(first: nx.DiGraph, second: nx.DiGraph) -> bool:
    """Whether a type-, label- and position-preserving bijection maps ``first`` onto ``second``.

    Rejects early on :func:`signature`; then runs colour refinement (1-WL) on both graphs jointly, so colours
    are comparable, and individualises one node per step with backtracking (the individualisation-refinement
    scheme of nauty). Scene graphs are highly symmetric (fifty interchangeable balls in a room), which makes
    plain VF2/VF2++ backtrack exponentially, while refinement settles a symmetric class in one choice.
    """
    if first.number_of_nodes() != second.number_of_nodes() or signature(first) != signature(second):
        return False
    index: dict = {}
    labels: list[str] = []
    for side, graph in enumerate((first, second)):
        for node, data in graph.nodes(data=True):
            index[(side, node)] = len(labels)
            labels.append(_label(data))
    neighbours: list[list[tuple[tuple[str, int], int]]] = [[] for _ in labels]
    for side, graph in enumerate((first, second)):
        for u, v, data in graph.edges(data=True):
            a, b = index[(side, u)], index[(side, v)]
            neighbours[a].append((("out", data["position"]), b))
            neighbours[b].append((("in", data["position"]), a))
    n_first = first.number_of_nodes()
    names = {label: i for i, label in enumerate(sorted(set(labels)))}
    colours = _refine([names[label] for label in labels], neighbours)
    return _search(colours, neighbours, n_first)


def _refine(colours: list[int], neighbours) -> list[int] | None:
    """The coarsest equitable refinement of ``colours`` (canonical numbering, both graphs at once)."""
    count = len(set(colours))
    while True:
        signatures = [(colours[v], tuple(sorted((label, colours[u]) for label, u in neighbours[v])))
                      for v in range(len(colours))]
        numbering = {sig: i for i, sig in enumerate(sorted(set(signatures)))}
        colours = [numbering[sig] for sig in signatures]
        if len(numbering) == count:
            return colours
        count = len(numbering)


def _search(colours: list[int], neighbours, n_first: int) -> bool:
    cells: dict[int, tuple[list[int], list[int]]] = {}
    for v, c in enumerate(colours):
        cells.setdefault(c, ([], []))[v >= n_first].append(v)
    if any(len(a) != len(b) for a, b in cells.values()):
        return False
    open_cells = [cell for cell in cells.values() if len(cell[0]) > 1]
    if not open_cells:
        mapping = {a[0]: b[0] for a, b in cells.values()}
        return all(sorted((lab, mapping[u]) for lab, u in neighbours[v])
                   == sorted(neighbours[mapping[v]]) for v in range(n_first))
    left, right = min(open_cells, key=lambda cell: len(cell[0]))
    fresh = max(colours) + 1
    for candidate in right:
        trial = list(colours)
        trial[left[0]] = trial[candidate] = fresh
        if _search(_refine(trial, neighbours), neighbours, n_first):
            return True
    return False
