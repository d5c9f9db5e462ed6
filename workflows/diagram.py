"""Draw a workflow for administrators: mermaid text, or an inline SVG of the state machine with live counts per state.

The SVG is built here in pure Python (no graphviz, no JavaScript) so that it can be inlined in a page served under
`default-src 'self'; style-src 'self'`: presentation attributes only, no `style`, no script, no external reference.
Classes (`state`, `state-<name>`, `transition`, …) let the site's stylesheet restyle it.

Layout: columns are the longest forward path from the initial pseudo-state (back edges of cycles ignored); the
"spine" (first forward transition of each state, in table order) is the main row, detours sit in rows above it, and
side exits (states entered from many states by one trigger, e.g. reject/withdraw/expire) sit in a row below it,
fed by one bus line instead of one arrow per source.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from xml.sax.saxutils import escape

from .engine import Workflow

# A state entered from at least this many other states by one trigger is a side exit.
FAN_IN = 3

FONT = "Helvetica, Arial, Liberation Sans, sans-serif"
NAME_SIZE, COUNT_SIZE, LABEL_SIZE, NOTE_SIZE = 13, 15, 12, 11
LINE = 14  # line height of a transition label
LABEL_WRAP = 84  # a transition label wider than this goes on two lines
NAME_LINE = 16
BOX_MIN_W, BOX_PAD_X, BOX_PAD_Y = 100, 12, 10
COUNT_H = 20
GAP_MIN = 56  # horizontal space between columns, widened to fit the labels placed there
ROW_GAP = 44
LOOP_H = 22
TWIN_OFFSET = 8  # two opposite straight edges between the same boxes
PORT_INSET, PORT_STEP = 14, 9
INITIAL_R = 9
MARGIN = 16

INK, MUTED = "#1d2b3a", "#5d6b78"
EDGE = "#56636f"
STATE_FILL, STATE_STROKE = "#eef3f8", "#47698f"
FINAL_FILL, FINAL_STROKE = "#eaf4ea", "#3d7040"
EXIT_FILL, EXIT_STROKE = "#fbefed", "#a4524a"
COUNT_INK = "#0b4f8a"

# Helvetica advance widths (1/1000 em) for what state and trigger names are made of; others count as 556.
_WIDTHS = {" ": 278, ",": 278, ".": 278, ":": 278, "(": 333, ")": 333, "-": 333, "i": 222, "j": 222, "l": 222}
_WIDTHS.update(dict.fromkeys("ftI", 278) | dict.fromkeys("r", 333) | dict.fromkeys("ckszvxy", 500))
_WIDTHS.update(dict.fromkeys("mM", 833) | dict.fromkeys("w", 722) | dict.fromkeys("W", 944))


def to_mermaid(workflow: Workflow) -> str:
    """`stateDiagram-v2` text: one line per (source, dest, trigger); the initial pseudo-state and the ends as [*]."""
    lines = ["stateDiagram-v2", "    direction LR"]
    for spec in workflow.transitions:
        for source in spec.source:
            start = "[*]" if source == workflow.initial else source
            lines.append(f"    {start} --> {spec.dest} : {spec.trigger}")
    lines += [f"    {state} --> [*]" for state in map(str, workflow.states) if state in workflow.final]
    return "\n".join(lines) + "\n"


def to_svg(workflow: Workflow, counts: Mapping[str, int] | None = None) -> str:
    """A standalone SVG (starts with `<svg`, for inlining) of the workflow, with `counts` per state when given."""
    return _Diagram(workflow, counts).render()


# -- text -----------------------------------------------------------------------------------------------------
def _width(text: str, size: float) -> float:
    """Estimated advance width; 6 % of slack for a wider fallback font (DejaVu Sans where Helvetica is missing)."""
    return sum(_WIDTHS.get(ch, 667 if ch.isupper() else 556) for ch in text) * size * 1.06 / 1000


def _wrap(text: str, max_width: float, size: float) -> list[str]:
    """One line if it fits, else the most balanced split in two at a space, else greedy lines."""
    words = text.split(" ")
    if _width(text, size) <= max_width or len(words) == 1:
        return [text]
    splits = [(" ".join(words[:i]), " ".join(words[i:])) for i in range(1, len(words))]
    best = min(splits, key=lambda pair: max(_width(pair[0], size), _width(pair[1], size)))
    if max(_width(best[0], size), _width(best[1], size)) <= max_width:
        return list(best)
    lines = [words[0]]
    for word in words[1:]:
        if _width(f"{lines[-1]} {word}", size) <= max_width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def _display(name: str) -> str:
    return name.replace("_", " ")


def _num(value: float) -> str:
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _attrs(**attrs) -> str:
    parts = []
    for key, value in attrs.items():
        if value is None:
            continue
        if isinstance(value, float | int) and not isinstance(value, bool):
            value = _num(value)
        parts.append(f'{key.rstrip("_").replace("_", "-")}="{escape(str(value), {chr(34): "&quot;"})}"')
    return " ".join(parts)


# -- model of the drawing -------------------------------------------------------------------------------------
@dataclass
class _Node:
    name: str
    kind: str  # "initial", "main" or "side"
    final: bool = False
    lines: list[str] = field(default_factory=list)
    w: float = 0
    h: float = 0
    col: int = 0
    row: int = 0
    x: float = 0  # centre
    y: float = 0
    top_in: list[_Edge] = field(default_factory=list)
    top_out: list[_Edge] = field(default_factory=list)
    bottom_in: list[_Edge] = field(default_factory=list)
    bottom_out: list[_Edge] = field(default_factory=list)

    @property
    def left(self) -> float:
        return self.x - self.w / 2

    @property
    def right(self) -> float:
        return self.x + self.w / 2

    @property
    def top(self) -> float:
        return self.y - self.h / 2

    @property
    def bottom(self) -> float:
        return self.y + self.h / 2

    def port(self, side: list[_Edge], edge: _Edge, *, leftwards: bool) -> float:
        """x of `edge` on a side of the box: ports fill from a corner inwards, the first edge outermost."""
        if self.kind == "initial":
            return self.x
        i = side.index(edge)
        return self.left + PORT_INSET + i * PORT_STEP if leftwards else self.right - PORT_INSET - i * PORT_STEP


@dataclass
class _Edge:
    source: str
    dest: str
    triggers: list[str] = field(default_factory=list)
    titles: list[str] = field(default_factory=list)
    kind: str = ""  # loop, straight, lane-above, lane-below, up, down, fan-in, side-return, direct
    forward: bool = True
    lane: int = 0
    gap: int | None = None  # the gap between columns `gap` and `gap + 1` holds the label
    offset: float = 0
    label: list[str] = field(default_factory=list)
    points: list[tuple[float, float]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return ", ".join(_display(t) for t in self.triggers)


class _Diagram:
    def __init__(self, workflow: Workflow, counts: Mapping[str, int] | None):
        self.workflow = workflow
        self.counts = counts
        self.initial = workflow.initial
        self.order = {str(s): i for i, s in enumerate(workflow.states)}
        self.bounds = [0.0, 0.0, 0.0, 0.0]
        self._analyse()
        self._size_nodes()
        self._place_columns_and_rows()
        self._classify_edges()
        self._place_x()
        self._place_y()
        self._place_side_exits()
        self._route()

    # -- graph --------------------------------------------------------------------------------------------------
    def _analyse(self) -> None:
        wf = self.workflow
        self.edges: dict[tuple[str, str], _Edge] = {}
        for spec in wf.transitions:
            for source in spec.source:
                edge = self.edges.setdefault((source, spec.dest), _Edge(source, spec.dest))
                if spec.trigger not in edge.triggers:
                    edge.triggers.append(spec.trigger)
                    edge.titles.append(f"{spec.trigger}: {spec.label}")
        from_initial = {dest for (source, dest) in self.edges if source == self.initial}
        side = {
            spec.dest
            for spec in wf.transitions
            if len(set(spec.source) - {spec.dest}) >= FAN_IN and spec.dest not in from_initial
        }
        self.nodes: dict[str, _Node] = {}
        for state in map(str, wf.states):
            kind = "initial" if state == self.initial else "side" if state in side else "main"
            self.nodes[state] = _Node(state, kind, final=state in wf.final)
        self.main = [n for n in self.nodes.values() if n.kind != "side"]
        self.side = [n for n in self.nodes.values() if n.kind == "side"]
        self.open_states = {n.name for n in self.main if n.kind == "main" and not n.final}

    def _size_nodes(self) -> None:
        for node in self.nodes.values():
            if node.kind == "initial":
                node.w = node.h = 2 * INITIAL_R
                continue
            node.lines = _wrap(_display(node.name), BOX_MIN_W - 2 * BOX_PAD_X, NAME_SIZE)
            node.w = max(BOX_MIN_W, max(_width(line, NAME_SIZE) for line in node.lines) + 2 * BOX_PAD_X)
        height = max(len(n.lines) for n in self.nodes.values()) * NAME_LINE + 2 * BOX_PAD_Y
        height += COUNT_H if self.counts is not None else 0
        for node in self.nodes.values():
            if node.kind != "initial":
                node.h = height
        self.box_h = height

    def _place_columns_and_rows(self) -> None:
        """Column = longest path from the initial state over forward edges; the spine is row 0, detours above."""
        names = [n.name for n in self.main]
        succ: dict[str, list[str]] = {name: [] for name in names}
        for source, dest in self.edges:
            if source != dest and source in succ and dest in succ:
                succ[source].append(dest)
        visiting: dict[str, bool] = {}
        post: list[str] = []
        self.back: set[tuple[str, str]] = set()

        def visit(name: str) -> None:
            visiting[name] = True
            for nxt in succ[name]:
                if nxt not in visiting:
                    visit(nxt)
                elif visiting[nxt]:
                    self.back.add((name, nxt))
            visiting[name] = False
            post.append(name)

        for name in names:  # the initial state comes first
            if name not in visiting:
                visit(name)
        col = {name: 0 if name == self.initial else 1 for name in names}
        for name in reversed(post):
            for nxt in succ[name]:
                if (name, nxt) not in self.back:
                    col[nxt] = max(col[nxt], col[name] + 1)
        spine, current = [self.initial], self.initial
        while nxt := next((n for n in succ[current] if (current, n) not in self.back and n not in spine), None):
            spine.append(nxt)
            current = nxt
        self.cells: dict[tuple[int, int], _Node] = {}
        for name in spine:
            self.nodes[name].col, self.nodes[name].row = col[name], 0
            self.cells[col[name], 0] = self.nodes[name]
        for name in sorted((n for n in names if n not in spine), key=lambda n: (col[n], self.order[n])):
            row = -1
            while (col[name], row) in self.cells:
                row -= 1
            self.nodes[name].col, self.nodes[name].row = col[name], row
            self.cells[col[name], row] = self.nodes[name]
        self.n_cols = max(col.values()) + 1

    def _classify_edges(self) -> None:
        above, below = [], []
        for edge in self.edges.values():
            src, dst = self.nodes[edge.source], self.nodes[edge.dest]
            edge.forward = dst.col > src.col
            if src is dst:
                edge.kind = "loop"
                edge.label = _wrap(edge.text, max(src.w - 20, 80), LABEL_SIZE)
                continue
            edge.label = _wrap(edge.text, LABEL_WRAP, LABEL_SIZE)
            if dst.kind == "side" and src.kind != "side":
                edge.kind = "fan-in"
            elif src.kind == "side":
                edge.kind = "side-return" if dst.kind != "side" else "direct"
            elif src.row == dst.row:
                lo, hi = sorted((src.col, dst.col))
                blocked = any((c, src.row) in self.cells for c in range(lo + 1, hi))
                if not blocked:
                    edge.kind = "straight"
                    edge.gap = src.col if edge.forward else src.col - 1
                    twin = self.edges.get((edge.dest, edge.source))
                    if twin is not None:
                        edge.offset = -TWIN_OFFSET if edge.forward else TWIN_OFFSET
                elif src.row == 0:
                    edge.kind = "lane-above" if edge.forward else "lane-below"
                    edge.gap = src.col if edge.forward else src.col - 1
                    (above if edge.forward else below).append(edge)
                else:
                    edge.kind = "direct"
            elif edge.forward:
                edge.kind = "up" if dst.row < src.row else "down"
                edge.gap = dst.col - 1 if edge.kind == "up" else src.col
            else:
                edge.kind = "direct"
        for lanes in (above, below):
            taken: list[list[tuple[int, int]]] = []
            for edge in sorted(lanes, key=lambda e: (self._span(e), min(self._cols(e)), self.order[e.source])):
                span = self._cols(edge)
                lane = 0
                while lane < len(taken) and any(max(span[0], a) < min(span[1], b) for a, b in taken[lane]):
                    lane += 1
                if lane == len(taken):
                    taken.append([])
                taken[lane].append(span)
                edge.lane = lane
        self.lanes_above = max((e.lane + 1 for e in above), default=0)
        self.lanes_below = max((e.lane + 1 for e in below), default=0)
        # Fan-in edges share one bus per set of sources: the states a group of side exits is entered from.
        self.buses: dict[frozenset[str], list[_Node]] = {}
        for node in self.side:
            sources = frozenset(e.source for e in self.edges.values() if e.dest == node.name and e.kind == "fan-in")
            if sources:
                self.buses.setdefault(sources, []).append(node)
        self._attach_ports()

    def _cols(self, edge: _Edge) -> tuple[int, int]:
        a, b = self.nodes[edge.source].col, self.nodes[edge.dest].col
        return (a, b) if a < b else (b, a)

    def _span(self, edge: _Edge) -> int:
        a, b = self._cols(edge)
        return b - a

    def _attach_ports(self) -> None:
        for edge in self.edges.values():
            src, dst = self.nodes[edge.source], self.nodes[edge.dest]
            if edge.kind == "lane-above":
                src.top_out.append(edge)
                dst.top_in.append(edge)
            elif edge.kind == "lane-below":
                src.bottom_out.append(edge)
                dst.bottom_in.append(edge)
            elif edge.kind == "up":
                src.top_out.append(edge)
            elif edge.kind == "down":
                dst.top_in.append(edge)
            elif edge.kind == "side-return":
                dst.bottom_in.append(edge)
        # The outermost port goes to the edge whose horizontal run is nearest the box, so that runs never cross.
        depth = {"lane-above": 0, "lane-below": 0, "up": 1000, "down": 1000, "side-return": 2000}
        for node in self.nodes.values():
            for side in (node.top_in, node.top_out, node.bottom_in, node.bottom_out):
                side.sort(key=lambda e: (depth[e.kind] + e.lane, self.order[e.source], self.order[e.dest]))

    # -- geometry -----------------------------------------------------------------------------------------------
    def _place_x(self) -> None:
        col_w = [0.0] * self.n_cols
        for node in self.main:
            col_w[node.col] = max(col_w[node.col], node.w)
        gap_w = [float(GAP_MIN)] * max(self.n_cols - 1, 0)
        for edge in self.edges.values():
            if edge.gap is not None and 0 <= edge.gap < len(gap_w):
                gap_w[edge.gap] = max(gap_w[edge.gap], self._label_w(edge.label) + 24)
        left = 0.0
        self.col_x: list[float] = []
        for c in range(self.n_cols):
            self.col_x.append(left + col_w[c] / 2)
            left += col_w[c] + (gap_w[c] if c < len(gap_w) else 0)
        self.gap_x = [
            (self.col_x[c] + col_w[c] / 2 + self.col_x[c + 1] - col_w[c + 1] / 2) / 2 for c in range(len(gap_w))
        ]
        for node in self.main:
            node.x = self.col_x[node.col]

    @staticmethod
    def _label_w(lines: list[str], size: float = LABEL_SIZE) -> float:
        return max((_width(line, size) for line in lines), default=0)

    def _loop_zone(self, row: int) -> float:
        loops = [e for e in self.edges.values() if e.kind == "loop" and self.nodes[e.source].row == row]
        if not loops:
            return 0
        return LOOP_H + 6 + max(len(e.label) for e in loops) * LINE

    def _place_y(self) -> None:
        half = self.box_h / 2
        straight = [e for e in self.edges.values() if e.kind == "straight" and self.nodes[e.source].row == 0]
        top_clear = min(
            [-half - self._loop_zone(0)] + [e.offset - 5 - len(e.label) * LINE for e in straight if e.forward]
        )
        bottom_clear = max([half] + [e.offset + 5 + len(e.label) * LINE for e in straight if not e.forward])
        # Lanes above row 0 (label above the line) and below it (label below the line).
        y = top_clear - 14
        self.lane_above_y = []
        for lane in range(self.lanes_above):
            self.lane_above_y.append(y)
            height = max(len(e.label) for e in self.edges.values() if e.kind == "lane-above" and e.lane == lane)
            y -= height * LINE + 12
        top = y + 12 if self.lanes_above else top_clear
        rows = sorted({n.row for n in self.main}, reverse=True)
        self.row_y = {0: 0.0}
        for row in rows[1:]:
            self.row_y[row] = top - ROW_GAP - half
            top = self.row_y[row] - half - self._loop_zone(row)
        for node in self.main:
            node.y = self.row_y[node.row]
        y = bottom_clear + 14
        self.lane_below_y = []
        for lane in range(self.lanes_below):
            self.lane_below_y.append(y)
            height = max(len(e.label) for e in self.edges.values() if e.kind == "lane-below" and e.lane == lane)
            y += height * LINE + 14
        self.bus_y = {}
        for i, sources in enumerate(self.buses):
            self.bus_y[sources] = y + 10 + i * 18
        drop = max([44] + [self._drop_label(n) for n in self.side]) if self.side else 0
        self.side_y = (max(self.bus_y.values()) if self.bus_y else y) + drop + half
        for node in self.side:
            node.y = self.side_y

    def _drop_label(self, node: _Node) -> float:
        """Height of the label beside the arrow that drops into a side exit (triggers, then where from)."""
        return (len(self._fan_in_label(node)) + 1) * LINE + 10

    def _fan_in_label(self, node: _Node) -> list[str]:
        edges = [e for e in self.edges.values() if e.dest == node.name and e.kind == "fan-in"]
        triggers = list(dict.fromkeys(t for e in edges for t in e.triggers))
        return _wrap(", ".join(_display(t) for t in triggers), 140, LABEL_SIZE)

    def _where_from(self, sources: frozenset[str]) -> str:
        if sources == self.open_states:
            return "from any open state"
        names = [_display(s) for s in sorted(sources, key=self.order.__getitem__)]
        return f"from {' or '.join(names)}" if len(names) <= 2 else f"from {len(names)} states"

    def _place_side_exits(self) -> None:
        """Spread each bus's side exits under its sources, each drop half-way between two stubs (never on one)."""
        cursor = None
        for sources, targets in self.buses.items():
            stubs = sorted({self._stub_x(self.nodes[s]) for s in sources})
            lo, hi = stubs[0], stubs[-1]
            spacing = max(t.w for t in targets) + 150
            ideal = [lo + (i + 1) * (hi - lo) / (len(targets) + 1) for i in range(len(targets))]
            slots = [(a + b) / 2 for a, b in pairwise(stubs)]
            xs = []
            for x in ideal:
                free = [s for s in slots if all(abs(s - taken) >= spacing for taken in xs)]
                xs.append(min(free, key=lambda s, x=x: (abs(s - x), s)) if free else x)
            if any(b - a < spacing for a, b in pairwise(xs)):
                centre = (lo + hi) / 2
                xs = [centre + (i - (len(targets) - 1) / 2) * spacing for i in range(len(targets))]
            if cursor is not None and xs[0] < cursor + spacing:
                xs = [x + cursor + spacing - xs[0] for x in xs]
            for node, x in zip(targets, xs, strict=True):
                node.x = x
            cursor = xs[-1]
        loose = [n for n in self.side if not any(n in targets for targets in self.buses.values())]
        for node in loose:  # a side exit nobody enters (not in the current tables): keep it visible at the end
            node.x = (cursor if cursor is not None else 0) + BOX_MIN_W + 150
            cursor = node.x

    def _stub_x(self, node: _Node) -> float:
        """Where a fan-in edge leaves its source: the bottom centre, beside any box below it in the main row."""
        blocker = self.cells.get((node.col, 0)) if node.row < 0 else None
        return node.x if blocker is None else blocker.right + 5

    def _route(self) -> None:
        for edge in self.edges.values():
            src, dst = self.nodes[edge.source], self.nodes[edge.dest]
            kind = edge.kind
            if kind == "loop":
                continue
            if kind == "straight":
                y = src.y + edge.offset
                start = src.right if edge.forward else src.left
                end = dst.left if edge.forward else dst.right
                edge.points = [(start, y), (end, y)]
            elif kind == "lane-above":
                y = self.lane_above_y[edge.lane]
                x0 = src.port(src.top_out, edge, leftwards=False)
                x1 = dst.port(dst.top_in, edge, leftwards=True)
                edge.points = [(x0, self._top(src)), (x0, y), (x1, y), (x1, dst.top)]
            elif kind == "lane-below":
                y = self.lane_below_y[edge.lane]
                x0 = src.port(src.bottom_out, edge, leftwards=True)
                x1 = dst.port(dst.bottom_in, edge, leftwards=False)
                edge.points = [(x0, self._bottom(src)), (x0, y), (x1, y), (x1, self._bottom(dst))]
            elif kind == "up":
                x0 = src.port(src.top_out, edge, leftwards=False)
                edge.points = [(x0, self._top(src)), (x0, dst.y), (dst.left, dst.y)]
            elif kind == "down":
                x1 = dst.port(dst.top_in, edge, leftwards=True)
                edge.points = [(src.right, src.y), (x1, src.y), (x1, dst.top)]
            elif kind == "fan-in":
                bus = self.bus_y[next(s for s, targets in self.buses.items() if dst in targets)]
                x0 = self._stub_x(src)
                start = [(x0, self._bottom(src))]
                if x0 != src.x:  # a detour above a box of the main row: go down beside that box
                    bend = self.cells[src.col, 0].top - 10
                    start = [(src.x, self._bottom(src)), (src.x, bend), (x0, bend)]
                edge.points = [*start, (x0, bus), (dst.x, bus), (dst.x, dst.top)]
            elif kind == "side-return":
                x1 = dst.port(dst.bottom_in, edge, leftwards=dst.x < src.x)
                start = src.left if x1 < src.x else src.right
                edge.points = [(start, src.y), (x1, src.y), (x1, self._bottom(dst))]
            else:
                edge.points = self._direct(src, dst)

    @staticmethod
    def _top(node: _Node) -> float:
        return node.y - INITIAL_R if node.kind == "initial" else node.top

    @staticmethod
    def _bottom(node: _Node) -> float:
        return node.y + INITIAL_R if node.kind == "initial" else node.bottom

    @staticmethod
    def _direct(src: _Node, dst: _Node) -> list[tuple[float, float]]:
        """Centre to centre, clipped at both boxes: the fallback for shapes the current tables do not have."""
        dx, dy = dst.x - src.x, dst.y - src.y

        def clip(node: _Node, sign: int) -> tuple[float, float]:
            if dx == 0 and dy == 0:
                return node.x, node.y
            scale = min(
                (node.w / 2) / abs(dx) if dx else float("inf"),
                (node.h / 2) / abs(dy) if dy else float("inf"),
            )
            return node.x + sign * dx * scale, node.y + sign * dy * scale

        return [clip(src, 1), clip(dst, -1)]

    # -- output -------------------------------------------------------------------------------------------------
    def _grow(self, x0: float, y0: float, x1: float, y1: float) -> None:
        b = self.bounds
        b[0], b[1], b[2], b[3] = min(b[0], x0), min(b[1], y0), max(b[2], x1), max(b[3], y1)

    def _text(self, x: float, y: float, lines: list[str], *, anchor: str = "middle", size: float = LABEL_SIZE,
              cls: str = "transition-label", fill: str = INK, halo: bool = True, **extra) -> list[str]:  # fmt: skip
        """Lines of text; `y` is the baseline of the first line."""
        width = self._label_w(lines, size)
        x0 = x - width / 2 if anchor == "middle" else x if anchor == "start" else x - width
        self._grow(x0, y - size, x0 + width, y + (len(lines) - 1) * LINE + 4)
        paint = {"stroke": "#ffffff", "stroke_width": 4, "stroke_linejoin": "round", "paint_order": "stroke"}
        out = []
        for i, line in enumerate(lines):
            attrs = _attrs(
                class_=cls, x=x, y=y + i * LINE, text_anchor=anchor, font_size=size, fill=fill,
                **(paint if halo else {}), **extra,
            )  # fmt: skip
            out.append(f"<text {attrs}>{escape(line)}</text>")
        return out

    def _label_above(self, x: float, y: float, lines: list[str], **kw) -> list[str]:
        return self._text(x, y - 5 - (len(lines) - 1) * LINE, lines, **kw)

    def _label_below(self, x: float, y: float, lines: list[str], **kw) -> list[str]:
        return self._text(x, y + 5 + LABEL_SIZE, lines, **kw)

    def _path(self, points: list[tuple[float, float]], radius: float = 6) -> str:
        """Straight segments with rounded corners."""
        for x, y in points:
            self._grow(x, y, x, y)
        d = [f"M{_num(points[0][0])},{_num(points[0][1])}"]
        for i in range(1, len(points) - 1):
            (ax, ay), (bx, by), (cx, cy) = points[i - 1], points[i], points[i + 1]
            r = min(radius, abs(bx - ax) / 2 + abs(by - ay) / 2, abs(cx - bx) / 2 + abs(cy - by) / 2)

            def toward(px: float, py: float, bx=bx, by=by, r=r) -> tuple[float, float]:
                length = ((px - bx) ** 2 + (py - by) ** 2) ** 0.5 or 1
                return bx + (px - bx) * r / length, by + (py - by) * r / length

            (p1x, p1y), (p2x, p2y) = toward(ax, ay), toward(cx, cy)
            d.append(f"L{_num(p1x)},{_num(p1y)}Q{_num(bx)},{_num(by)} {_num(p2x)},{_num(p2y)}")
        d.append(f"L{_num(points[-1][0])},{_num(points[-1][1])}")
        return "".join(d)

    def _edge_label(self, edge: _Edge) -> list[str]:
        src = self.nodes[edge.source]
        kind, pts = edge.kind, edge.points
        gap_x = self.gap_x[edge.gap] if edge.gap is not None and 0 <= edge.gap < len(self.gap_x) else None
        if kind == "straight":
            x = gap_x if gap_x is not None else (pts[0][0] + pts[1][0]) / 2
            place = self._label_above if edge.forward else self._label_below
            return place(x, pts[0][1], edge.label)
        if kind == "lane-above":
            return self._label_above(gap_x, pts[1][1], edge.label)
        if kind == "lane-below":
            return self._label_below(gap_x, pts[1][1], edge.label)
        if kind in ("up", "down"):
            return self._label_above(gap_x, pts[1][1], edge.label)
        if kind == "side-return":
            return self._label_above((pts[0][0] + pts[1][0]) / 2, pts[0][1], edge.label)
        if kind == "loop":
            return self._label_above(src.x, self._top(src) - LOOP_H, edge.label)
        if kind == "direct":
            (x0, y0), (x1, y1) = pts
            return self._label_above((x0 + x1) / 2, (y0 + y1) / 2, edge.label)
        return []

    def _edge_svg(self, edge: _Edge) -> list[str]:
        src = self.nodes[edge.source]
        if edge.kind == "loop":
            x, top = src.x, self._top(src)
            points = [(x - 12, top), (x - 12, top - LOOP_H), (x + 12, top - LOOP_H), (x + 12, top)]
            d = self._path(points, radius=10)
        else:
            d = self._path(edge.points)
        classes = f"transition transition-{edge.kind}" + ("" if edge.forward or edge.kind == "loop" else " back")
        head = _attrs(
            class_=classes, data_source=edge.source, data_dest=edge.dest, data_triggers=" ".join(edge.triggers)
        )
        path = _attrs(d=d, fill="none", stroke=EDGE, stroke_width=1.4, marker_end=f"url(#{self.id}-arrow)")
        return [f"<g {head}>", f"<title>{escape('; '.join(edge.titles))}</title>", f"<path {path}/>", "</g>"]

    def _node_svg(self, node: _Node) -> list[str]:
        count = None if self.counts is None else int(self.counts.get(node.name, 0))
        classes = ["state", f"state-{node.name}"]
        classes += ["state-initial"] if node.kind == "initial" else []
        classes += ["state-final"] if node.final else []
        classes += ["state-side-exit"] if node.kind == "side" else []
        classes += ["state-empty"] if count == 0 else []
        head = _attrs(
            class_=" ".join(classes), data_state=node.name, data_count=count if node.kind != "initial" else None
        )
        out = [f"<g {head}>"]
        if node.kind == "initial":
            self._grow(node.left, node.top, node.right, node.bottom)
            out.append(f"<circle {_attrs(cx=node.x, cy=node.y, r=INITIAL_R, fill=INK)}/>")
            return [*out, "</g>"]
        fill, stroke = (EXIT_FILL, EXIT_STROKE) if node.kind == "side" else (STATE_FILL, STATE_STROKE)
        if node.final and node.kind != "side":
            fill, stroke = FINAL_FILL, FINAL_STROKE
        self._grow(node.left, node.top, node.right, node.bottom)
        box = {"x": node.left, "y": node.top, "width": node.w, "height": node.h}
        out.append(f"<rect {_attrs(**box, rx=8, fill=fill, stroke=stroke, stroke_width=1.5)}/>")
        if node.final:
            inner = {"x": node.left + 4, "y": node.top + 4, "width": node.w - 8, "height": node.h - 8}
            out.append(f"<rect {_attrs(**inner, rx=5, fill='none', stroke=stroke, stroke_width=1.5)}/>")
        text_h = len(node.lines) * NAME_LINE + (COUNT_H if count is not None else 0)
        y = node.y - text_h / 2 + NAME_LINE - 4
        out += self._text(node.x, y, node.lines, size=NAME_SIZE, cls="state-name", halo=False)
        if count is not None:
            y += len(node.lines) * NAME_LINE + 2 + COUNT_SIZE - NAME_LINE + 2
            ink = MUTED if count == 0 else COUNT_INK
            out += self._text(
                node.x, y, [str(count)], size=COUNT_SIZE, cls="state-count", fill=ink, halo=False, font_weight="bold"
            )
        return [*out, "</g>"]

    def _buses_svg(self) -> list[str]:
        out = []
        for sources, targets in self.buses.items():
            y = self.bus_y[sources]
            stubs = sorted({self._stub_x(self.nodes[s]) for s in sources})
            for x in stubs + [t.x for t in targets]:
                out.append(f"<circle {_attrs(class_='junction', cx=x, cy=y, r=3, fill=EDGE)}/>")
            where = self._where_from(sources)
            for node in targets:
                lines = self._fan_in_label(node)
                mid = (y + node.top) / 2 - (len(lines) * LINE) / 2 + LABEL_SIZE - 2
                out += self._text(node.x + 8, mid, lines, anchor="start", data_dest=node.name)
                out += self._text(
                    node.x + 8, mid + len(lines) * LINE, [where], anchor="start", size=NOTE_SIZE, fill=MUTED,
                    font_style="italic", data_dest=node.name,
                )  # fmt: skip
        return out

    def _describe(self) -> str:
        parts = []
        for node in self.nodes.values():
            if node.kind == "initial":
                continue
            text = _display(node.name)
            if self.counts is not None:
                text += f": {int(self.counts.get(node.name, 0))}"
            if node.final:
                text += " (final)"
            parts.append(text)
        return f"States of the {self.workflow.name} workflow: " + "; ".join(parts) + "."

    def render(self) -> str:
        # Ids are unique per workflow so that several diagrams can be inlined in one page.
        self.id = "workflow-" + re.sub(r"[^A-Za-z0-9_-]", "-", self.workflow.name)
        edges, labels = [], []
        for edge in self.edges.values():
            edges += self._edge_svg(edge)
            if edge.kind != "fan-in":
                labels += self._edge_label(edge)
        nodes = [line for node in self.nodes.values() for line in self._node_svg(node)]
        buses = self._buses_svg()
        x0, y0 = self.bounds[0] - MARGIN, self.bounds[1] - MARGIN
        width, height = self.bounds[2] - self.bounds[0] + 2 * MARGIN, self.bounds[3] - self.bounds[1] + 2 * MARGIN
        width, height = round(width), round(height)
        root = _attrs(
            xmlns="http://www.w3.org/2000/svg",
            class_=f"workflow-diagram {self.id}",
            data_workflow=self.workflow.name,
            role="img",
            aria_labelledby=f"{self.id}-title {self.id}-desc",
            width=width,
            height=height,
            viewBox=f"{_num(round(x0))} {_num(round(y0))} {width} {height}",
            font_family=FONT,
            font_size=LABEL_SIZE,
        )
        marker = _attrs(
            id=f"{self.id}-arrow", viewBox="0 0 10 10", refX=9, refY=5, markerWidth=7, markerHeight=7,
            markerUnits="userSpaceOnUse", orient="auto-start-reverse",
        )  # fmt: skip
        title = f"The {self.workflow.name} workflow"
        return "\n".join(
            [
                f"<svg {root}>",
                f"<title {_attrs(id=f'{self.id}-title')}>{escape(title)}</title>",
                f"<desc {_attrs(id=f'{self.id}-desc')}>{escape(self._describe())}</desc>",
                f"<defs><marker {marker}><path {_attrs(d='M0,0L10,5L0,10z', fill=EDGE)}/></marker></defs>",
                '<g class="transitions">',
                *edges,
                "</g>",
                '<g class="buses">',
                *buses,
                "</g>",
                '<g class="states">',
                *nodes,
                "</g>",
                '<g class="transition-labels">',
                *labels,
                "</g>",
                "</svg>",
            ]
        )
