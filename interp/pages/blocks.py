"""What a results page is made of: dataclasses a study fills in, the renderer lays out.

A :class:`Page` is a title, :class:`Section` s of blocks (:class:`Text`, :class:`Table`,
:class:`Plot`, :class:`Gallery`, :class:`Code`) and a :class:`Provenance` block. Nothing here
knows a study; a table cell is formatted here (:meth:`Column.cell`) so that what the page
shows and what it sorts by come from one value.
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass, field
from typing import Any, Union

import plotly.graph_objects as go

TAG_KEY = re.compile(r"[a-z][a-z0-9-]*")


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value == "") or (
        isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isnan(float(value)))


@dataclass(frozen=True)
class Cell:
    """One table cell: the text shown and, for a number, its full-precision value (kept in the
    page as ``data-value``: what the table sorts by and what a test compares with the CSV)."""

    text: str
    value: str = ""


@dataclass(frozen=True)
class Column:
    """A table column: ``key`` into each row, ``label`` shown, ``fmt`` a format spec for numbers
    (e.g. ``".1f"``). ``interval``: the row holds ``(mean, half-width)`` (or ``(mean, half, n)``),
    shown as ``mean ± half`` and sorted by the mean."""

    key: str
    label: str = ""
    fmt: str = ""
    interval: bool = False

    @property
    def title(self) -> str:
        return self.label or self.key

    def cell(self, value: Any) -> Cell:
        if self.interval:
            mean, half = (value[0], value[1]) if isinstance(value, (tuple, list)) and value else (None, None)
            if _is_missing(mean):
                return Cell("-")
            text = format(mean, self.fmt) if _is_missing(half) else f"{format(mean, self.fmt)} ± {format(half, self.fmt)}"
            return Cell(text, sort_value(float(mean)))
        if _is_missing(value):
            return Cell("-")
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return Cell(format(value, self.fmt), sort_value(value.item() if hasattr(value, "item") else value))
        return Cell(str(value))


def sort_value(x: numbers.Real) -> str:
    """A number as the page's script reads it (``parseFloat``): ``inf`` is ``Infinity`` there,
    so an infinite ratio sorts above every finite one instead of as NaN."""
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return repr(x)


@dataclass
class Table:
    """A table of dict rows; ``sortable`` (click a header), ``filterable`` (a text box that keeps
    the rows containing it). ``name``: a stable id (tests find the table by it)."""

    name: str
    columns: list[Column]
    rows: list[dict]
    caption: str = ""
    sortable: bool = True
    filterable: bool = False

    def cells(self) -> list[list[Cell]]:
        return [[c.cell(r.get(c.key)) for c in self.columns] for r in self.rows]


@dataclass
class Plot:
    """An interactive plotly figure; ``height`` in pixels (the width follows the page)."""

    name: str
    figure: go.Figure
    caption: str = ""
    height: int = 480


@dataclass(frozen=True)
class Card:
    """One gallery image: ``image`` a ``data:`` URI (None when the file is gone), a title, lines
    of text, ``tags`` (filter key -> value) and ``good`` (True right, False wrong, None neither)."""

    image: str | None
    title: str
    lines: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()
    good: bool | None = None


@dataclass
class Gallery:
    """Image cards with a drop-down filter per tag key (``filters``: key -> label)."""

    name: str
    cards: list[Card]
    filters: dict[str, str] = field(default_factory=dict)
    caption: str = ""

    def __post_init__(self) -> None:
        bad = sorted({k for k in self.filters if not TAG_KEY.fullmatch(k)} |
                     {k for c in self.cards for k, _ in c.tags if not TAG_KEY.fullmatch(k)})
        if bad:
            raise ValueError(f"gallery {self.name!r}: tag keys {bad} are not lower-case words (a-z, 0-9, -)")

    def options(self) -> dict[str, list[str]]:
        """Every value each filter key takes, sorted."""
        return {k: sorted({v for c in self.cards for kk, v in c.tags if kk == k}) for k in self.filters}


@dataclass
class Text:
    """Paragraphs of plain text (escaped; one paragraph per item), or a bulleted list."""

    paragraphs: list[str]
    bullets: bool = False


@dataclass
class Code:
    """Preformatted text (a command, a config), optionally folded away under ``summary``."""

    text: str
    summary: str = ""


Block = Union[Text, Table, Plot, Gallery, Code]


@dataclass
class Section:
    title: str
    blocks: list[Block]
    anchor: str = ""

    @property
    def id(self) -> str:
        return self.anchor or "".join(ch if ch.isalnum() else "-" for ch in self.title.lower()).strip("-")


@dataclass
class Provenance:
    """Where the numbers came from: the config, seeds, package versions, the commands that
    reproduce the run and this page, and any other facts (label -> text)."""

    config: dict[str, Any]
    commands: list[str]
    seeds: list[int] = field(default_factory=list)
    packages: dict[str, str | None] = field(default_factory=dict)
    facts: dict[str, str] = field(default_factory=dict)


@dataclass
class Page:
    title: str
    sections: list[Section]
    provenance: Provenance | None = None
    subtitle: str = ""

    def plots(self) -> list[Plot]:
        return [b for s in self.sections for b in s.blocks if isinstance(b, Plot)]

    def tables(self) -> list[Table]:
        return [b for s in self.sections for b in s.blocks if isinstance(b, Table)]

    def galleries(self) -> list[Gallery]:
        return [b for s in self.sections for b in s.blocks if isinstance(b, Gallery)]
