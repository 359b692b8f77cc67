"""CogEval's own templates: structure checks, graph parsing for n7tree and n15star (and the other numbered
graphs), the template answers checked against the parsed graphs, and clear errors on malformed files.
"""

from __future__ import annotations

import json

import networkx as nx
import pytest

from map_agent.task import InvalidProblem
from map_agent.tasks.cogeval import CogEvalTask, graph_of
from map_agent.tasks.cogeval.templates import (
    GRAPH_SOURCES,
    load_template,
    parse_graph_card,
    parse_rooms_text,
    parse_template,
    template_graph,
)

TASK = CogEvalTask()


@pytest.mark.parametrize(
    "graph,rooms,doors", [("n7tree", 7, 6), ("n15star", 15, 30), ("n16cluster", 16, 32), ("n21star", 21, 63)]
)
def test_template_graphs_parse_with_the_right_size(graph, rooms, doors):
    g = template_graph(graph)
    assert len(g.rooms) == rooms and len(g.edges) == doors
    assert nx.is_connected(g.nx())


def test_n15star_text_matches_its_reference_edge_list_and_the_map_castle():
    """CogEval's "Room 1, room 7, ... are all connected to each other" names doors from the first room only:
    the parse equals the <graph> card and MAP's explicit castle."""
    card = parse_graph_card(_card_text("n15star/ordRooms.md"), "ordRooms.md")
    text = template_graph("n15star")
    castle = TASK.problem("valuepath-4").info["graph"]["edges"]
    as_set = lambda edges: {frozenset(e) for e in edges}  # noqa: E731
    assert as_set(card.edges) == as_set(text.edges) == as_set(castle)
    assert text.rewards == {8: 10.0}


def _card_text(relpath: str) -> str:
    from importlib import resources

    return (resources.files("map_agent.tasks") / "cogeval" / "data" / "templates" / relpath).read_text()


def test_n7tree_card_gives_the_tree_and_its_chests():
    g = template_graph("n7tree")
    assert {frozenset(e) for e in g.edges} == {
        frozenset(e) for e in [(0, 1), (0, 4), (1, 2), (1, 3), (4, 5), (4, 6)]
    }
    assert g.rewards == {2: 10.0, 3: 50.0, 5: 56.0, 6: 22.0}
    assert g.best_chest() == 5


@pytest.mark.parametrize("graph", [g for g in GRAPH_SOURCES if g != "n7tree"])
def test_template_step_answers_are_shortest_paths_of_the_parsed_graph(graph):
    g = template_graph(graph)
    checked = 0
    for conv in load_template(graph).conversations:
        if "stepPath" not in conv.condition:
            continue
        for path in conv.expected_paths():
            assert all(g.connected(a, b) for a, b in zip(path, path[1:], strict=False)), (
                conv.condition,
                path,
            )
            assert len(path) - 1 == nx.shortest_path_length(g.nx(), path[0], path[-1])
            checked += 1
    assert checked >= 3


def test_n15star_template_valuepath_answer_agrees_with_the_environment():
    conv = load_template("n15star").conversation("valuePath")
    problem = TASK.problem("n15star:valuepath-1")
    assert sorted(conv.expected_paths()) == TASK.optimal_paths(problem)


@pytest.mark.parametrize("graph", ["n7line", "n7tree", "n13line", "n15star", "n16cluster", "n21star"])
def test_every_graph_has_loadable_templates(graph):
    template = load_template(graph, "ordRooms")
    assert template.conversations
    for conv in template.conversations:
        assert all(pid in template.prompts for pid in conv.prompt_ids)


def test_template_splits_and_transfer():
    assert [p.id for p in TASK.problems("n7tree:valuepath")] == [
        "n7tree:valuepath-0",
        "n7tree:valuepath-1",
        "n7tree:valuepath-4",
    ]
    assert {p.optimal_length for p in TASK.problems("n15star:steppath4")} == {4}
    transfer = TASK.problems("transfer_n7tree:valuepath")
    # the transfer script: 50 and 10 in six placements, from every other start room
    placements = {(p.hidden["target"], min(set(graph_of(p).rewards) - {p.hidden["target"]})) for p in transfer}
    assert placements == {(11, 8), (8, 11), (8, 15), (15, 8), (1, 8), (8, 1)}
    assert len(transfer) == 6 * 13 and all(p.goal == {"room": None} for p in transfer)
    assert all(sorted(graph_of(p).rewards.values()) == [10.0, 50.0] for p in transfer)
    assert all(p.info["icl"] == "n7tree" for p in transfer)
    assert "different environment (n7tree)" in TASK.describe(transfer[0])
    assert "Room 0 is connected to room 1, and room 4." in TASK.describe(transfer[0])
    # the transfer script words the task as Reward Revaluation does: both chest rules, the highest-reward chest
    assert "to the room with a chest with the highest reward" in TASK.describe(transfer[0])
    assert "must collect the reward" in TASK.describe(transfer[0])


def test_template_valuepath_goals_name_no_room():
    for graph in ("n7tree", "n15star", "n16cluster", "n21star"):
        for p in TASK.problems(f"{graph}:valuepath"):
            best = template_graph(graph).best_chest()
            assert p.goal == {"room": None} and p.hidden["target"] == best
            assert TASK.satisfies(TASK.start(p).model_copy(update={"room": best}), TASK.goal(p), p)
    for p in TASK.problems("n7tree:steppath2"):
        assert p.goal["room"] is not None and "target" not in p.hidden  # Steppath names its target
    with pytest.raises(KeyError, match="stories without a door list"):
        template_graph("n7line")


# -- malformed files ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "raw,message",
    [
        ("[1]", "t.json: expected a JSON object"),
        (
            '{"a": {"content": 3}, "CONVERSATIONS": []}',
            "t.json: field 'a': expected an object with a string 'content'",
        ),
        ('{"a": {"content": "x"}}', "t.json: field 'CONVERSATIONS': missing or not a list"),
        (
            '{"a": {"content": "x"}, "CONVERSATIONS": [{"c": [{"prompt_id": "b"}]}]}',
            r"t.json: field 'CONVERSATIONS\[0\].c\[0\].prompt_id': 'b' is not a prompt",
        ),
        (
            '{"a": {"content": "x"}, "CONVERSATIONS": [{"c": [{"prompt_id": "a", "expected_answer": 5}]}]}',
            r"expected_answer': expected a list of strings",
        ),
        ("{oops", "t.json: not JSON"),
    ],
)
def test_malformed_template_errors_name_file_and_field(raw, message):
    with pytest.raises(InvalidProblem, match=message):
        parse_template(raw, "t.json")


@pytest.mark.parametrize(
    "text,message",
    [
        ("Imagine a castle. There is a reward of 5 for visiting room 2.", "no 'Room N is connected to"),
        (
            "Imagine a castle with 4 rooms. Room 1 is connected to room 2. Room 2 is connected to room 3.",
            "the text says 4 rooms but its sentences connect 3",
        ),
        ("Room 1 is connected to rooms 2 and 1.", "room 1 is said to connect to itself"),
        (
            "Room 1 is connected to room 2. There is a reward of 5 for visiting room 9.",
            r"reward for room\(s\) \[9\], which no sentence connects",
        ),
    ],
)
def test_malformed_room_text_errors(text, message):
    with pytest.raises(InvalidProblem, match=f"t.json: field 'valuePath': .*{message}"):
        parse_rooms_text(text, "t.json", "valuePath")


def test_room_text_reads_both_wordings_and_penalties():
    g = parse_rooms_text(
        "Imagine a world with 4 rooms. Room 1, room 2 and room 3 are all connected to each other. "
        "Room 4 is also connected to rooms 2, and 3. There is a reward of 5 for visiting room 4. "
        "Also, there is a penalty of 15 for visiting room 2.",
        "t.json",
        "valuePath",
    )
    assert g.edges == ((1, 2), (1, 3), (4, 2), (4, 3))
    assert g.rewards == {4: 5.0, 2: -15.0}


@pytest.mark.parametrize(
    "text,message",
    [
        ("<states>\n 0: a\n", "no <graph> or <transitions> block"),
        ("<transitions>\n nothing\n", "field '<transitions>': no edges found"),
        ("<rewards>\n 2 = 10\n<transitions>\n 0 -> 2\n", "field '<rewards>': cannot read '2 = 10'"),
    ],
)
def test_malformed_graph_card_errors(text, message):
    with pytest.raises(InvalidProblem, match=f"card.md: {message}"):
        parse_graph_card(text, "card.md")


def test_bundled_template_missing_file_is_clear():
    with pytest.raises(InvalidProblem, match="templates/n7tree/nope.json: no such template file"):
        load_template("n7tree", "nope")


def test_expected_paths_skip_non_path_answers():
    t = parse_template(
        json.dumps(
            {
                "a": {"content": "x"},
                "CONVERSATIONS": [
                    {
                        "c": [
                            {
                                "prompt_id": "a",
                                "expected_answer": ["Answer: Room 2", "Answer: 1, 3", "Answer: 1,3"],
                            }
                        ]
                    }
                ],
            }
        ),
        "t",
    )
    assert t.conversation("c").expected_paths() == [[1, 3]]
