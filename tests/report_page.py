"""The report page read back for tests: its tables, figures and notes per section, parsed with the
standard library's html.parser, so that tests assert on what a reader sees in a cell or a figure
rather than on a substring somewhere in the page (CSS and base64 image text included)."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from html.parser import HTMLParser

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class Table:
    heading: str                      # the last h3 before the table ("" when none in its section)
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)

    def records(self) -> list[dict[str, str]]:
        """One dict per body row, keyed by the header; a repeated header name gets '.1', '.2', ..."""
        keys, seen = [], {}
        for name in self.header:
            keys.append(name if name not in seen else f"{name}.{seen[name]}")
            seen[name] = seen.get(name, 0) + 1
        return [dict(zip(keys, row)) for row in self.rows]

    def column(self, name: str) -> list[str]:
        return [r[name] for r in self.records()]


@dataclass
class Figure:
    alt: str
    src: str
    caption: str = ""

    @property
    def png(self) -> bytes:
        prefix = "data:image/png;base64,"
        assert self.src.startswith(prefix), self.src[:40]
        data = base64.b64decode(self.src[len(prefix):], validate=True)
        assert data.startswith(PNG_SIGNATURE)
        return data


@dataclass
class Section:
    id: str
    title: str
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    paragraphs: list[str] = field(default_factory=list)
    counts: dict[str, str] = field(default_factory=dict)   # the summary's <dt> name -> <dd> value

    def table(self, heading_start: str) -> Table:
        found = [t for t in self.tables if t.heading.startswith(heading_start)]
        assert len(found) == 1, (heading_start, [t.heading for t in self.tables])
        return found[0]


class _Parser(HTMLParser):
    CAPTURED = ("h2", "h3", "th", "td", "figcaption", "p", "title", "dt", "dd")

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.sections = [Section("", "")]
        self.heading = ""
        self.table: Table | None = None
        self.row: list[str] | None = None
        self.header_row = False
        self.figure: Figure | None = None
        self.term = ""
        self.stack: list[tuple[str, list[str]]] = []   # captured elements open, innermost last

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "h2":
            self.sections.append(Section(a.get("id", ""), ""))
            self.heading = ""
        if tag == "table":
            self.table = Table(self.heading)
        elif tag == "tr" and self.table is not None:
            self.row, self.header_row = [], True
        elif tag == "td":
            self.header_row = False
        elif tag == "img":
            self.figure = Figure(a.get("alt", ""), a.get("src", ""))
            self.sections[-1].figures.append(self.figure)
        if tag in self.CAPTURED:
            self.stack.append((tag, []))

    def handle_data(self, data):
        for _, buf in self.stack:
            buf.append(data)

    def handle_endtag(self, tag):
        text = None
        if self.stack and self.stack[-1][0] == tag:
            text = " ".join("".join(self.stack.pop()[1]).split())
        section = self.sections[-1]
        if tag == "h2":
            section.title = text or ""
        elif tag == "h3":
            self.heading = text or ""
        elif tag in ("td", "th") and self.row is not None:
            self.row.append(text or "")
        elif tag == "tr" and self.table is not None and self.row is not None:
            if self.header_row and not self.table.header and not self.table.rows:
                self.table.header = self.row
            else:
                self.table.rows.append(self.row)
            self.row = None
        elif tag == "table" and self.table is not None:
            section.tables.append(self.table)
            self.table = None
        elif tag == "figcaption" and self.figure is not None:
            self.figure.caption = text or ""
        elif tag == "p":
            section.paragraphs.append(text or "")
        elif tag == "dt":
            self.term = text or ""
        elif tag == "dd":
            section.counts[self.term] = text or ""


def parse_report(html: str) -> dict[str, Section]:
    """{section id: Section} of a report page; '' holds what precedes the first h2 (title, meta)."""
    parser = _Parser()
    parser.feed(html)
    parser.close()
    return {s.id: s for s in parser.sections}


def panels(html: str) -> list[Section]:
    """The panel sections (h2 id 'panel-<i>'), in page order."""
    return [s for key, s in parse_report(html).items() if key.startswith("panel-")]


def first_words(cells: list[str]) -> set[str]:
    """The method names behind variant labels ('none n=50' -> 'none')."""
    return {c.split()[0] for c in cells if c}


@dataclass
class Drawn:
    """What one figure's axes show: title, labels, limits, scales, the labelled lines (legend label ->
    (x, y)), every line's data, the scatter layers (offsets [n, 2] and marker sizes), and texts."""

    title: str
    xlabel: str
    ylabel: str
    xlim: tuple[float, float]
    ylim: tuple[float, float]
    xscale: str
    yscale: str
    lines: dict
    all_lines: list
    scatters: list
    texts: list
    legend: list


def snapshot(fig) -> Drawn:
    import numpy as np
    from matplotlib.collections import PathCollection

    (ax,) = fig.axes
    lines = [(ln.get_label(), np.asarray(ln.get_xdata(), float), np.asarray(ln.get_ydata(), float))
             for ln in ax.get_lines()]
    legend = ax.get_legend()
    return Drawn(
        title=ax.get_title(), xlabel=ax.get_xlabel(), ylabel=ax.get_ylabel(), xlim=ax.get_xlim(), ylim=ax.get_ylim(),
        xscale=ax.get_xscale(), yscale=ax.get_yscale(),
        lines={label: (x, y) for label, x, y in lines if not label.startswith("_")},
        all_lines=[(x, y) for _, x, y in lines],
        scatters=[{"offsets": np.asarray(c.get_offsets(), float), "sizes": list(c.get_sizes())}
                  for c in ax.collections if isinstance(c, PathCollection)],
        texts=[(t.get_text(), tuple(getattr(t, "xy", t.get_position()))) for t in ax.texts],
        legend=[t.get_text() for t in legend.get_texts()] if legend else [])


def capture_figures(monkeypatch) -> list[Drawn]:
    """Record every figure benchmark.report.figures encodes (in order) before it is encoded."""
    from benchmark.report import figures

    drawn: list[Drawn] = []
    encode = figures.encode

    def recording(fig, save_to=None):
        drawn.append(snapshot(fig))
        return encode(fig, save_to)

    monkeypatch.setattr(figures, "encode", recording)
    return drawn
