"""The room graph every CogEval condition navigates: undirected doors between numbered rooms, reward chests.

A ``RoomGraph`` is plain data (it travels in ``Problem.info``), and the ground truth is computed on it with
networkx. The wording of ``describe`` follows the MAP paper's CogEval prompts ("Room 1 is connected to room 7,
room 10, ..."), which list each door once, under the room that comes first in the edge list.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:  # networkx is imported where the ground truth is computed: `map-agent tasks` only lists splits
    import networkx as nx


class RoomGraph(BaseModel):
    """Rooms, the doors between them (both ways) and the reward chests in some rooms."""

    model_config = ConfigDict(frozen=True)

    rooms: tuple[int, ...] = Field(description="every room number, ascending")
    edges: tuple[tuple[int, int], ...] = Field(description="doors, in the order the source lists them")
    rewards: dict[int, float] = Field(default_factory=dict, description="room -> reward of its chest")

    @model_validator(mode="after")
    def _consistent(self) -> RoomGraph:
        known = set(self.rooms)
        for a, b in self.edges:
            if a == b:
                raise ValueError(f"edge ({a}, {b}) connects a room to itself")
            if a not in known or b not in known:
                raise ValueError(f"edge ({a}, {b}) names a room outside {sorted(known)}")
        unknown = set(self.rewards) - known
        if unknown:
            raise ValueError(f"rewards name unknown room(s) {sorted(unknown)}")
        return self

    @classmethod
    def from_edges(
        cls,
        edges: list[tuple[int, int]] | list[list[int]],
        rewards: dict | None = None,
        rooms: list[int] | None = None,
    ) -> RoomGraph:
        """Build from an edge list (rooms default to those the edges and chests name)."""
        pairs = tuple((int(a), int(b)) for a, b in edges)
        chests = {int(k): float(v) for k, v in (rewards or {}).items()}
        named = {r for e in pairs for r in e} | set(chests) | set(rooms or [])
        return cls(rooms=tuple(sorted(named)), edges=pairs, rewards=chests)

    def edited(self, remove: list[tuple[int, int]] = (), add: list[tuple[int, int]] = ()) -> RoomGraph:
        """The graph after doors are locked (``remove``) or opened (``add``): the Detour condition."""
        gone = {frozenset(e) for e in remove}
        missing = [e for e in remove if frozenset(e) not in {frozenset(x) for x in self.edges}]
        if missing:
            raise ValueError(f"cannot remove door(s) {missing}: not in the graph")
        kept = tuple(e for e in self.edges if frozenset(e) not in gone)
        return RoomGraph(rooms=self.rooms, edges=kept + tuple(tuple(e) for e in add), rewards=self.rewards)

    def with_rewards(self, rewards: dict[int, float]) -> RoomGraph:
        return RoomGraph(rooms=self.rooms, edges=self.edges, rewards=dict(rewards))

    # -- ground truth ----------------------------------------------------------------------------------
    def nx(self) -> nx.Graph:
        return _nx(self.edges, self.rooms)

    def connected(self, a: int, b: int) -> bool:
        return self.nx().has_edge(a, b)

    def neighbours(self, room: int) -> list[int]:
        """Rooms one door away, ascending (the deterministic order of legal actions)."""
        return sorted(self.nx().neighbors(room))

    def best_chest(self) -> int:
        """The room whose chest holds the largest reward (a tie is a data error: an ambiguous goal)."""
        if not self.rewards:
            raise ValueError("the graph has no reward chests")
        best = max(self.rewards.values())
        rooms = [r for r, v in self.rewards.items() if v == best]
        if len(rooms) > 1:
            raise ValueError(f"rooms {rooms} share the largest reward {best}")
        return rooms[0]

    def shortest_paths(self, start: int, target: int, avoid: frozenset[int] = frozenset()) -> list[list[int]]:
        """Every shortest path from ``start`` to ``target`` whose rooms after the start avoid ``avoid``."""
        import networkx as nx

        g = self.nx().subgraph([r for r in self.rooms if r not in avoid or r in (start, target)])
        try:
            return sorted(nx.all_shortest_paths(g, start, target))
        except nx.NetworkXNoPath:
            return []

    # -- how it reads ------------------------------------------------------------------------------------
    def listed(self) -> dict[int, list[int]]:
        """Room -> the rooms its sentence names: each door once, under the room the edge list names first."""
        out: dict[int, list[int]] = {}
        for a, b in self.edges:
            out.setdefault(a, []).append(b)
        return dict(sorted(out.items()))

    def describe(self) -> str:
        """The MAP paper's wording of the rooms and doors, one line per room."""
        lines = [f"- Imagine a castle with {len(self.rooms)} rooms."]
        for room, others in self.listed().items():
            names = [f"room {o}" for o in others]
            joined = names[0] if len(names) == 1 else ", ".join(names[:-1]) + ", and " + names[-1]
            lines.append(f"- Room {room} is connected to {joined}.")
        return "\n".join(lines)

    def describe_rewards(self) -> str:
        chests = [
            f"a chest with a reward of {_num(v)} for visiting room {r}" for r, v in self.rewards.items()
        ]
        return "- There is " + " and there is ".join(chests) + "."


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


@lru_cache(maxsize=256)
def _nx(edges: tuple[tuple[int, int], ...], rooms: tuple[int, ...]) -> nx.Graph:
    import networkx as nx

    g = nx.Graph()
    g.add_nodes_from(rooms)
    g.add_edges_from(edges)
    return g
