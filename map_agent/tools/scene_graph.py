"""Scene graphs and problem graphs (Planetarium, Section 3.3).

A scene graph has one node per object (``kind="object"``) and one per listed proposition (``kind="proposition"``,
with its ``predicate``); each argument of a proposition is an edge from the proposition to the object carrying
the ``predicate``, the argument ``position`` (0-based) and the ``scene`` (``"init"`` or ``"goal"``). A problem
graph is the union of an initial and a goal scene over the same object nodes.

Isomorphism (an edge- and type-preserving bijection) is decided by colour refinement with individualisation
(see :func:`is_isomorphic`), iteratively and within a work budget: past :data:`MAX_NODES` nodes or
:data:`MAX_WORK` steps it raises :class:`ProblemTooLarge` instead of running for minutes or overflowing the stack.

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

__all__ = ["MAX_NODES", "MAX_WORK", "ProblemTooLarge", "is_isomorphic", "problem_graph", "scene_graph",
           "signature"]


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


#: largest graph (nodes, per side) whose isomorphism is decided: a Blocks World problem graph has about three
#: nodes per block, so this is about 1600 blocks
MAX_NODES = 5_000
#: work budget of one decision, in node and edge visits of colour refinement (10-20 s of CPU at most); a chain
#: needs one refinement round per link, so a tower of about 1000 blocks is the longest this settles
MAX_WORK = 30_000_000


class ProblemTooLarge(RuntimeError):
    """The graphs are beyond :data:`MAX_NODES` or the search beyond :data:`MAX_WORK`; no verdict is guessed."""


def is_isomorphic(first: nx.DiGraph, second: nx.DiGraph, max_work: int = MAX_WORK) -> bool:
    """Whether a type-, label- and position-preserving bijection maps ``first`` onto ``second``.

    Rejects early on :func:`signature`; then runs colour refinement (1-WL) on both graphs jointly, so colours
    are comparable, and individualises one node per step with backtracking (the individualisation-refinement
    scheme of nauty). Scene graphs are highly symmetric (fifty interchangeable balls in a room), which makes
    plain VF2/VF2++ backtrack exponentially, while refinement settles a symmetric class in one choice; before
    branching, the search also tries pairing every open class in order at once, which settles a thousand
    interchangeable blocks in one step. The search is iterative (no recursion limit) and its work is bounded:
    raises :class:`ProblemTooLarge` past :data:`MAX_NODES` nodes or ``max_work`` refinement steps.
    """
    size = first.number_of_nodes()
    if size != second.number_of_nodes() or signature(first) != signature(second):
        return False
    if size > MAX_NODES:
        raise ProblemTooLarge(f"scene graphs of {size} nodes: isomorphism is decided up to {MAX_NODES} nodes "
                              "(about 1600 Blocks World blocks)")
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
    names = {label: i for i, label in enumerate(sorted(set(labels)))}
    budget = _Budget(max_work, len(labels) + sum(len(n) for n in neighbours))
    return _search(_refine([names[label] for label in labels], neighbours, budget), neighbours, size, budget)


class _Budget:
    """Counts refinement rounds against the work limit (one round visits every node and edge once)."""

    def __init__(self, limit: int, round_cost: int) -> None:
        self.left, self.round_cost = limit, round_cost

    def spend(self) -> None:
        self.left -= self.round_cost
        if self.left < 0:
            raise ProblemTooLarge(f"isomorphism search exceeded its work limit ({MAX_WORK:,} node and edge "
                                  f"visits): graphs of {self.round_cost:,} nodes and edges are too large or too "
                                  "symmetric to settle")


def _refine(colours: list[int], neighbours, budget: _Budget) -> list[int]:
    """The coarsest equitable refinement of ``colours`` (one numbering for both graphs at once)."""
    count = len(set(colours))
    while True:
        budget.spend()
        numbering: dict = {}
        colours = [numbering.setdefault((colours[v], tuple(sorted((label, colours[u]) for label, u in nbrs))),
                                        len(numbering)) for v, nbrs in enumerate(neighbours)]
        if len(numbering) == count:
            return colours
        count = len(numbering)


def _cells(colours: list[int], n_first: int) -> list[tuple[list[int], list[int]]] | None:
    """The colour classes as (first-graph nodes, second-graph nodes); None when a class is unbalanced."""
    cells: dict[int, tuple[list[int], list[int]]] = {}
    for v, c in enumerate(colours):
        cells.setdefault(c, ([], []))[v >= n_first].append(v)
    if any(len(a) != len(b) for a, b in cells.values()):
        return None
    return list(cells.values())


def _is_mapping(cells: list[tuple[list[int], list[int]]], neighbours, n_first: int) -> bool:
    """Whether discrete ``cells`` map the first graph onto the second, edge labels included."""
    mapping = {a[0]: b[0] for a, b in cells}
    return all(sorted((lab, mapping[u]) for lab, u in neighbours[v]) == sorted(neighbours[mapping[v]])
               for v in range(n_first))


def _individualised(colours: list[int], pairs, neighbours, budget: _Budget) -> list[int]:
    trial = list(colours)
    fresh = max(colours) + 1
    for i, (a, b) in enumerate(pairs):
        trial[a] = trial[b] = fresh + i
    return _refine(trial, neighbours, budget)


def _search(colours: list[int], neighbours, n_first: int, budget: _Budget) -> bool:
    """Depth-first individualisation-refinement with an explicit stack of untried branches."""
    stack = [iter([colours])]
    while stack:
        colours = next(stack[-1], None)
        if colours is None:
            stack.pop()
            continue
        cells = _cells(colours, n_first)
        if cells is None:
            continue
        open_cells = [cell for cell in cells if len(cell[0]) > 1]
        if not open_cells:
            if _is_mapping(cells, neighbours, n_first):
                return True
            continue
        # pairing every open class in order is a guess, but a verified mapping is a proof
        together = _cells(_individualised(colours, [p for a, b in open_cells for p in zip(a, b, strict=True)],
                                          neighbours, budget), n_first)
        if together is not None and all(len(a) == 1 for a, _ in together) and \
                _is_mapping(together, neighbours, n_first):
            return True
        left, right = min(open_cells, key=lambda cell: len(cell[0]))
        stack.append(_branches(colours, left[0], right, neighbours, budget))
    return False


def _branches(colours: list[int], node: int, candidates: list[int], neighbours, budget: _Budget):
    """The refinements of mapping ``node`` to each candidate in turn, computed when the search reaches them."""
    for candidate in candidates:
        yield _individualised(colours, [(node, candidate)], neighbours, budget)
