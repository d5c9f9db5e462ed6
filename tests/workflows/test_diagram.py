"""Workflow diagrams: every state and transition drawn, counts shown, safe under a strict CSP, deterministic."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from enum import StrEnum

import pytest

from workflows import WORKFLOWS
from workflows.diagram import to_mermaid, to_svg
from workflows.engine import T, Workflow

SVG = "{http://www.w3.org/2000/svg}"
ALL = pytest.mark.parametrize("workflow", list(WORKFLOWS.values()), ids=list(WORKFLOWS))


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def real_states(workflow) -> list[str]:
    return [str(s) for s in workflow.states if str(s) != workflow.initial]


def table(workflow) -> list[tuple[str, str, str]]:
    """(source, dest, trigger) for every row and every source of the TRANSITIONS table."""
    return [(source, spec.dest, spec.trigger) for spec in workflow.transitions for source in spec.source]


def drawn_transitions(root: ET.Element) -> dict[tuple[str, str], list[str]]:
    """(source, dest) → triggers, for every drawn transition (a group with a path)."""
    drawn: dict[tuple[str, str], list[str]] = {}
    for group in root.iter(f"{SVG}g"):
        if "transition" in group.get("class", "").split():
            assert group.find(f"{SVG}path") is not None
            drawn.setdefault((group.get("data-source"), group.get("data-dest")), []).extend(
                group.get("data-triggers").split()
            )
    return drawn


def state_group(root: ET.Element, state: str) -> ET.Element:
    [group] = [g for g in root.iter(f"{SVG}g") if g.get("data-state") == state]
    return group


def text_of(element: ET.Element) -> str:
    return " ".join(t.text or "" for t in element.iter(f"{SVG}text"))


def sample_counts(workflow) -> dict[str, int]:
    return {state: 100 + i for i, state in enumerate(real_states(workflow))}


@ALL
def test_the_svg_is_an_inlinable_accessible_image(workflow):
    svg = to_svg(workflow)
    root = parse(svg)

    assert svg.startswith("<svg ")
    assert root.tag == f"{SVG}svg"
    assert root.get("role") == "img"
    assert re.fullmatch(r"-?\d+ -?\d+ \d+ \d+", root.get("viewBox"))
    assert int(root.get("width")) > 0 and int(root.get("height")) > 0
    title, desc = root.find(f"{SVG}title"), root.find(f"{SVG}desc")
    assert workflow.name in title.text
    assert root.get("aria-labelledby") == f"{title.get('id')} {desc.get('id')}"
    assert len(root.findall(f"{SVG}defs/{SVG}marker")) == 1


@ALL
def test_every_state_is_drawn_with_its_live_count(workflow):
    counts = sample_counts(workflow)
    root = parse(to_svg(workflow, counts))

    for state in real_states(workflow):
        group = state_group(root, state)
        assert state.replace("_", " ") in text_of(group)
        assert str(counts[state]) in text_of(group)
        assert group.get("data-count") == str(counts[state])
        assert f"{state.replace('_', ' ')}: {counts[state]}" in root.find(f"{SVG}desc").text
    initial = state_group(root, workflow.initial)
    assert initial.find(f"{SVG}circle") is not None and text_of(initial) == ""


@ALL
def test_without_counts_no_count_is_shown(workflow):
    root = parse(to_svg(workflow))

    for state in real_states(workflow):
        group = state_group(root, state)
        assert group.get("data-count") is None
        assert not any("state-count" in (t.get("class") or "") for t in group.iter(f"{SVG}text"))


def test_a_missing_count_is_drawn_as_zero_and_marked_empty():
    workflow = WORKFLOWS["account"]
    group = state_group(parse(to_svg(workflow, {"active": 7})), "locked")

    assert group.get("data-count") == "0" and "state-empty" in group.get("class").split()


@ALL
def test_every_transition_of_the_table_is_drawn(workflow):
    drawn = drawn_transitions(parse(to_svg(workflow)))

    for source, dest, trigger in table(workflow):
        assert (source, dest) in drawn, f"{workflow.name}: {source} → {dest} ({trigger}) is not drawn"
        assert trigger in drawn[source, dest], f"{workflow.name}: {trigger} missing on {source} → {dest}"
    assert set(drawn) == {(source, dest) for source, dest, _ in table(workflow)}


@ALL
def test_every_transition_has_an_arrowhead(workflow):
    root = parse(to_svg(workflow))
    marker = root.find(f"{SVG}defs/{SVG}marker").get("id")

    paths = [g.find(f"{SVG}path") for g in root.iter(f"{SVG}g") if "transition" in g.get("class", "").split()]
    assert paths and all(p.get("marker-end") == f"url(#{marker})" for p in paths)


def test_reflexive_transitions_are_drawn_as_loops():
    root = parse(to_svg(WORKFLOWS["enrollment"]))

    loops = {g.get("data-triggers") for g in root.iter(f"{SVG}g") if "transition-loop" in g.get("class", "").split()}
    assert loops == {"confirm_email", "send_control_code"}


@pytest.mark.parametrize(
    ("name", "side_exits"),
    [("enrollment", {"rejected", "withdrawn", "expired"}), ("account", {"disabled"}), ("delivery", {"revoked"})],
)
def test_side_exits_sit_in_a_row_below_the_main_path(name, side_exits):
    workflow = WORKFLOWS[name]
    root = parse(to_svg(workflow))

    def top(state):
        return float(state_group(root, state).find(f"{SVG}rect").get("y"))

    marked = {g.get("data-state") for g in root.iter(f"{SVG}g") if "state-side-exit" in g.get("class", "").split()}
    assert marked == side_exits
    main = [s for s in real_states(workflow) if s not in side_exits]
    assert min(top(s) for s in side_exits) > max(top(s) for s in main)
    # A fan-in is labelled once, beside the arrow into the side exit, not on every edge.
    for state in side_exits:
        labels = [t for t in root.iter(f"{SVG}text") if t.get("data-dest") == state]
        assert any(t.text == "from any open state" for t in labels)


@ALL
def test_final_states_have_a_double_border(workflow):
    root = parse(to_svg(workflow))

    for state in real_states(workflow):
        rects = state_group(root, state).findall(f"{SVG}rect")
        assert len(rects) == (2 if state in workflow.final else 1)


@ALL
def test_the_svg_passes_a_strict_content_security_policy(workflow):
    svg = to_svg(workflow, sample_counts(workflow))
    root = parse(svg)

    for element in root.iter():
        tag = element.tag.removeprefix(SVG)
        assert tag not in {"script", "style", "foreignObject", "image", "a", "iframe"}, tag
        for attribute, value in element.attrib.items():
            name = attribute.rsplit("}", 1)[-1]
            assert name != "style" and not name.startswith("on"), (tag, attribute)
            assert not name.endswith("href"), (tag, attribute)
            assert "javascript:" not in value and not re.search(r"url\((?!#)", value), (tag, attribute, value)
    assert "<?xml" not in svg and "<!DOCTYPE" not in svg


@ALL
def test_text_is_readable(workflow):
    root = parse(to_svg(workflow, sample_counts(workflow)))

    sizes = [float(e.get("font-size")) for e in root.iter() if e.get("font-size")]
    assert sizes and min(sizes) >= 11


@ALL
def test_output_is_deterministic(workflow):
    counts = sample_counts(workflow)
    reordered = dict(reversed(list(counts.items())))

    assert to_svg(workflow) == to_svg(workflow)
    assert to_svg(workflow, counts) == to_svg(workflow, reordered)
    assert to_mermaid(workflow) == to_mermaid(workflow)


class Toy(StrEnum):
    NEW = "new"
    DRAFT = "draft"
    REVIEW = "review"
    SIDE = "side"
    DONE = "done"
    GONE = "gone"


def toy_workflow(name="toy") -> Workflow:
    """Shapes the real tables do not have: a back edge from a detour, an edge between side exits, a skip."""
    return Workflow(
        name,
        None,
        Toy,
        [
            T("start", Toy.NEW, Toy.DRAFT, roles={"system"}),
            T("ask", Toy.DRAFT, Toy.REVIEW, roles={"system"}),
            T("detour", Toy.DRAFT, Toy.SIDE, roles={"system"}),
            T("back", Toy.SIDE, Toy.DRAFT, roles={"system"}),
            T("rejoin", Toy.SIDE, Toy.DONE, roles={"system"}),
            T("approve", Toy.REVIEW, Toy.DONE, roles={"system"}),
            T("skip", Toy.DRAFT, Toy.DONE, roles={"system"}),
            T("drop", [Toy.DRAFT, Toy.REVIEW, Toy.SIDE, Toy.DONE], Toy.GONE, roles={"system"}),
            T('<b>&"q"', Toy.GONE, Toy.DRAFT, roles={"system"}),
        ],
        final=[Toy.GONE],
    )


def test_other_shapes_still_draw_every_transition_and_escape_text():
    workflow = toy_workflow('a<b & "c"')
    svg = to_svg(workflow, {"draft": 2})
    root = parse(svg)

    assert root.find(f"{SVG}title").text == 'The a<b & "c" workflow'
    drawn = drawn_transitions(root)
    assert set(drawn) == {(source, dest) for source, dest, _ in table(workflow)}
    assert any(t.text == '<b>&"q"' for t in root.iter(f"{SVG}text"))
    assert svg == to_svg(toy_workflow('a<b & "c"'), {"draft": 2})


@ALL
def test_mermaid_has_one_line_per_transition(workflow):
    text = to_mermaid(workflow)
    lines = text.splitlines()

    assert lines[0] == "stateDiagram-v2"
    edges = [line.strip() for line in lines if " : " in line]
    assert len(edges) == len(table(workflow))
    for source, dest, trigger in table(workflow):
        start = "[*]" if source == workflow.initial else source
        assert f"{start} --> {dest} : {trigger}" in edges
    ends = {line.strip() for line in lines if line.strip().endswith("--> [*]")}
    assert ends == {f"{state} --> [*]" for state in workflow.final}
    assert not re.search(rf"\b{workflow.initial}\b", text.replace("[*]", ""))


def test_mermaid_matches_what_transitions_draws():
    """Cross-check against transitions' own mermaid export (GraphMachine, on a throwaway model)."""
    from transitions.extensions import GraphMachine

    workflow = WORKFLOWS["account"]
    machine = GraphMachine(
        model=None,
        states=[str(s) for s in workflow.states],
        transitions=[{"trigger": s.trigger, "source": list(s.source), "dest": s.dest} for s in workflow.transitions],
        initial=workflow.initial,
        auto_transitions=False,
        graph_engine="mermaid",
    )

    class Throwaway:
        pass

    model = Throwaway()
    machine.add_model(model)
    theirs = model.get_graph().draw(None)
    for source, dest, trigger in table(workflow):
        assert re.search(rf"\b{source}\b\s*-->\s*\b{dest}\b\s*:\s*{trigger}", theirs), (source, dest, trigger)
