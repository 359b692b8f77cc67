"""Scene graphs and problem graphs (Planetarium, Section 3.3).

A scene graph has one node per object (``kind="object"``) and one per listed proposition (``kind="proposition"``,
with its ``predicate``); each argument of a proposition is an edge from the proposition to the object carrying
the ``predicate``, the argument ``position`` (0-based) and the ``scene`` (``"init"`` or ``"goal"``). A problem
graph is the union of an initial and a goal scene over the same object nodes.

Isomorphism (an edge- and type-preserving bijection) is decided with networkx's VF2++ on a *labelled* copy
in which every edge is subdivided by a node labelled with its position: VF2++ matches node labels only, and its
label-driven ordering is what keeps 60-block towers fast.

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


def _labelled(graph: nx.DiGraph) -> nx.DiGraph:
    """``graph`` with each edge subdivided by a node labelled by the argument position."""
    out = nx.DiGraph()
    for node, data in graph.nodes(data=True):
        out.add_node(node, label=_label(data))
    for u, v, data in graph.edges(data=True):
        mid = ("argument", u, data["position"])
        out.add_node(mid, label=f"argument:{data['position']}")
        out.add_edge(u, mid)
        out.add_edge(mid, v)
    return out


def signature(graph: nx.DiGraph) -> tuple:
    """A cheap isomorphism invariant: label counts and the multiset of (label, in/out-degree) pairs."""
    labels = Counter(_label(d) for _, d in graph.nodes(data=True))
    degrees = Counter((_label(graph.nodes[n]), graph.in_degree(n), graph.out_degree(n)) for n in graph)
    edges = Counter((d["predicate"], d["position"], d["scene"]) for _, _, d in graph.edges(data=True))
    return tuple(sorted(labels.items())), tuple(sorted(degrees.items())), tuple(sorted(edges.items()))


def is_isomorphic(first: nx.DiGraph, second: nx.DiGraph) -> bool:
    """Whether a type-, label- and position-preserving bijection maps ``first`` onto ``second``.

    Rejects early on :func:`signature`, then on Weisfeiler-Lehman hashes, and only then runs VF2++.
    """
    if first.number_of_nodes() != second.number_of_nodes() or signature(first) != signature(second):
        return False
    a, b = _labelled(first), _labelled(second)
    # Labels already encode direction (proposition -> argument -> object), so the undirected hash suffices.
    if _wl_hash(a) != _wl_hash(b):
        return False
    return nx.vf2pp_is_isomorphic(a, b, node_label="label")


def _wl_hash(graph: nx.DiGraph) -> str:
    return nx.weisfeiler_lehman_graph_hash(graph.to_undirected(as_view=True), node_attr="label", iterations=4)
