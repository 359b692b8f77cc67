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
#: work budget of one decision, in node and edge visits of refinement and of the search's partition copies (at
#: most about 20-30 s of CPU); settling a 1000-block tower's problem graph takes about 50,000, so the budget only
#: stops searches that backtrack through highly symmetric graphs
MAX_WORK = 30_000_000


class ProblemTooLarge(RuntimeError):
    """The graphs are beyond :data:`MAX_NODES` or the search beyond :data:`MAX_WORK`; no verdict is guessed."""


def is_isomorphic(first: nx.DiGraph, second: nx.DiGraph, max_work: int = MAX_WORK) -> bool:
    """Whether a type-, label- and position-preserving bijection maps ``first`` onto ``second``.

    Rejects early on :func:`signature`; then runs colour refinement (1-WL) on both graphs jointly, so colours
    are comparable, and individualises one node per step with backtracking (the individualisation-refinement
    scheme of nauty). Scene graphs are highly symmetric (fifty interchangeable balls in a room), which makes
    plain VF2/VF2++ backtrack exponentially, while refinement settles a symmetric class in one choice.
    Refinement processes each split-off class once (:meth:`_Partition.refine`), so a tower costs about one
    visit per node and edge rather than one pass per link. One guessed branch is followed in place first
    (:func:`_descend`: on forests of chains, such as Blocks World scenes, it cannot go wrong); only if it fails
    does the backtracking search run, which also tries pairing every open class in order at once before
    branching. The search is iterative (no recursion limit) and its work is bounded: raises
    :class:`ProblemTooLarge` past :data:`MAX_NODES` nodes or ``max_work`` node and edge visits.
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
    # edge labels as small ints (2 * position for the proposition's side, + 1 for the object's): cheap to sort
    neighbours: list[list[tuple[int, int]]] = [[] for _ in labels]
    for side, graph in enumerate((first, second)):
        for u, v, data in graph.edges(data=True):
            a, b = index[(side, u)], index[(side, v)]
            neighbours[a].append((2 * data["position"], b))
            neighbours[b].append((2 * data["position"] + 1, a))
    names = {label: i for i, label in enumerate(sorted(set(labels)))}
    budget = _Budget(max_work, len(labels) + sum(len(n) for n in neighbours))
    colours = _refine([names[label] for label in labels], neighbours, size, budget)
    return _descend(colours, neighbours, size, budget) or _search(colours, neighbours, size, budget)


class _Budget:
    """Counts the node and edge visits of refinement against the work limit."""

    def __init__(self, limit: int, graph_size: int) -> None:
        self.limit, self.spent, self.graph_size = limit, 0, graph_size

    def spend(self, visits: int) -> None:
        self.spent += visits
        if self.spent > self.limit:
            raise ProblemTooLarge(f"isomorphism search exceeded its work limit ({self.limit:,} node and edge "
                                  f"visits): graphs of {self.graph_size:,} nodes and edges are too large or too "
                                  "symmetric to settle")


class _Partition:
    """Colour classes of both graphs' nodes, each kept as (first-graph nodes, second-graph nodes), refined in place.

    Keeping the two graphs' nodes apart makes "balanced" (every class has as many nodes of each graph, which an
    isomorphism needs) a check per split, and lets the search take a node of each graph without a scan.
    """

    def __init__(self, colours: list[int], neighbours, n_first: int, budget: _Budget) -> None:
        budget.spend(len(colours))  # each search step copies a partition: counted, so the budget bounds time
        self.colours = list(colours)
        self.neighbours, self.n_first, self.budget = neighbours, n_first, budget
        self.classes: dict[int, tuple[set[int], set[int]]] = {}
        for v, c in enumerate(self.colours):
            self.classes.setdefault(c, (set(), set()))[v >= n_first].add(v)
        self.fresh = max(self.classes) + 1
        self.balanced = all(len(a) == len(b) for a, b in self.classes.values())
        # classes with more than one node per graph, as a stack: a class never grows, so entries that stopped
        # being open are dropped when they reach the top
        self.open = [c for c, (a, _) in self.classes.items() if len(a) > 1]

    def refine(self, splitters: Iterable[int] | None = None) -> None:
        """Refine to the coarsest equitable partition, or stop at the first unbalanced class.

        Recomputing every node's colour each round costs a pass over the graph per round, and a chain needs a
        round per link, so towers cost n^2. Instead each *splitter* class is processed once: its nodes' edges
        are counted and every class they reach splits by those counts. A class that splits enqueues its pieces
        except the largest (counts into it are the old class's minus the others'), so a node is in a processed
        splitter O(log n) times and the whole refinement visits O((n + m) log n) nodes and edges (Hopcroft's
        "process the smaller half", as in nauty). The coarsest equitable partition does not depend on the
        order, so this equals a round-by-round recomputation's; only the class numbers differ.

        ``splitters`` are the classes whose counts may be unbalanced: all (None) from scratch, or only the
        newly individualised classes when the partition was equitable before they were split off. An
        unbalanced class stays unbalanced in every refinement, so stopping there loses no answer.
        """
        queue = list(self.classes) if splitters is None else list(splitters)
        queued = set(queue)
        while queue and self.balanced:
            splitter = queue.pop()
            queued.discard(splitter)
            reached: dict[int, list[int]] = {}
            visits = 0
            for nodes in self.classes[splitter]:
                for u in nodes:
                    visits += 1 + len(self.neighbours[u])
                    for label, v in self.neighbours[u]:
                        reached.setdefault(v, []).append(label)
            self.budget.spend(visits)
            by_class: dict[int, dict[tuple[int, ...], list[int]]] = {}
            for v, edge_labels in reached.items():
                edge_labels.sort()
                by_class.setdefault(self.colours[v], {}).setdefault(tuple(edge_labels), []).append(v)
            for cls, groups in by_class.items():
                self._split(cls, sorted(groups.values(), key=len), queue, queued)

    def _split(self, cls: int, pieces: list[list[int]], queue: list[int], queued: set[int]) -> None:
        """Split ``pieces`` (nodes of ``cls`` by their counts, smallest first) off ``cls``; enqueue as needed."""
        first, second = self.classes[cls]
        untouched = len(first) + len(second) - sum(map(len, pieces))
        if untouched == 0:  # the largest piece keeps the class's number
            if len(pieces) == 1:
                return
            kept = len(pieces.pop())
        else:
            kept = untouched
        split_off = []
        for piece in pieces:
            new: tuple[set[int], set[int]] = (set(), set())
            for v in piece:
                self.colours[v] = self.fresh
                new[v >= self.n_first].add(v)
            first -= new[0]
            second -= new[1]
            self.classes[self.fresh] = new
            self.balanced &= len(new[0]) == len(new[1])
            if len(new[0]) > 1:
                self.open.append(self.fresh)
            split_off.append(self.fresh)
            self.fresh += 1
        self.balanced &= len(first) == len(second)
        if cls not in queued and kept < len(pieces[-1]):  # the largest piece can wait, the kept one not
            split_off[-1] = cls
        queue.extend(split_off)
        queued.update(split_off)

    def individualise_any(self) -> int | None:
        """Pair one node of each graph from an open class in a class of their own; None when none is open."""
        while self.open and len(self.classes[self.open[-1]][0]) <= 1:
            self.open.pop()
        if not self.open:
            return None
        first, second = self.classes[self.open[-1]]
        a, b = first.pop(), second.pop()
        self.classes[self.fresh] = ({a}, {b})
        self.colours[a] = self.colours[b] = self.fresh
        self.fresh += 1
        return self.fresh - 1


def _refine(colours: list[int], neighbours, n_first: int, budget: _Budget,
            splitters: Iterable[int] | None = None) -> list[int]:
    """:meth:`_Partition.refine` on a copy of ``colours`` (left with an unbalanced class if it stopped on one)."""
    partition = _Partition(colours, neighbours, n_first, budget)
    partition.refine(splitters)
    return partition.colours


def _descend(colours: list[int], neighbours, n_first: int, budget: _Budget) -> bool:
    """Follow one branch of the search to its end, refining in place: True for a verified isomorphism.

    The search below copies the partition at each step, which costs n per step and n^2 for the hundreds of
    steps that many interchangeable towers need; here each guess costs only the refinement it triggers. Valid
    Blocks World and Gripper scenes are forests (towers are chains), where colour classes are orbits, so any
    guess extends to an isomorphism; a problem graph joins two scenes and need not be a forest, so a failed
    descent proves nothing and leaves the decision to the search.
    """
    partition = _Partition(colours, neighbours, n_first, budget)
    while partition.balanced and (pair := partition.individualise_any()) is not None:
        partition.refine([pair])
    return partition.balanced and _is_mapping(
        {next(iter(a)): next(iter(b)) for a, b in partition.classes.values()}, neighbours, n_first)


def _cells(colours: list[int], n_first: int) -> list[tuple[list[int], list[int]]] | None:
    """The colour classes as (first-graph nodes, second-graph nodes); None when a class is unbalanced."""
    cells: dict[int, tuple[list[int], list[int]]] = {}
    for v, c in enumerate(colours):
        cells.setdefault(c, ([], []))[v >= n_first].append(v)
    if any(len(a) != len(b) for a, b in cells.values()):
        return None
    return list(cells.values())


def _is_mapping(mapping: dict[int, int], neighbours, n_first: int) -> bool:
    """Whether ``mapping`` (first-graph node -> second-graph node) maps the first graph onto the second."""
    return all(sorted((lab, mapping[u]) for lab, u in neighbours[v]) == sorted(neighbours[mapping[v]])
               for v in range(n_first))


def _individualised(colours: list[int], pairs, neighbours, n_first: int, budget: _Budget) -> list[int]:
    """Give each (first-graph node, second-graph node) pair a class of its own in the equitable ``colours``."""
    trial = list(colours)
    fresh = max(colours) + 1
    for i, (a, b) in enumerate(pairs):
        trial[a] = trial[b] = fresh + i
    return _refine(trial, neighbours, n_first, budget, range(fresh, fresh + len(pairs)))


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
            if _is_mapping({a[0]: b[0] for a, b in cells}, neighbours, n_first):
                return True
            continue
        # pairing every open class in order is a guess, but a verified mapping is a proof
        together = _cells(_individualised(colours, [p for a, b in open_cells for p in zip(a, b, strict=True)],
                                          neighbours, n_first, budget), n_first)
        if together is not None and all(len(a) == 1 for a, _ in together) and \
                _is_mapping({a[0]: b[0] for a, b in together}, neighbours, n_first):
            return True
        left, right = min(open_cells, key=lambda cell: len(cell[0]))
        stack.append(_branches(colours, left[0], right, neighbours, n_first, budget))
    return False


def _branches(colours: list[int], node: int, candidates: list[int], neighbours, n_first: int, budget: _Budget):
    """The refinements of mapping ``node`` to each candidate in turn, computed when the search reaches them."""
    for candidate in candidates:
        yield _individualised(colours, [(node, candidate)], neighbours, n_first, budget)
