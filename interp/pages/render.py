"""A :class:`~interp.pages.blocks.Page` as ONE self-contained HTML file: Jinja2 templates,
the CSS and the page's own script inline, plotly's bundled JS inlined once (never a CDN),
images as ``data:`` URIs. The file opens offline and asks the network for nothing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import plotly.graph_objects as go
import plotly.io as pio
from markupsafe import Markup
from plotly.offline import get_plotlyjs
from tqdm.auto import tqdm

from interp.io import write_text
from interp.pages.blocks import Block, Code, Gallery, Page, Plot, Table, Text


@dataclass(frozen=True)
class Rendered:
    """One block ready for the template: its kind, the block and (for a plot) its HTML."""

    kind: str
    block: Block
    html: Markup | None = None


def plot_html(plot: Plot) -> Markup:
    """The figure's div and the script that draws it, without plotly.js (the page holds it once)."""
    fig = go.Figure(plot.figure)  # a copy: the caller's figure keeps its own size
    # the look of the saved figures (interp.plots.save_figure); the width follows the page
    fig.update_layout(template="plotly_white", width=None, height=plot.height, autosize=True)
    html = pio.to_html(fig, include_plotlyjs=False, full_html=False, div_id=f"plot-{plot.name}",
                       default_width="100%", default_height=f"{plot.height}px",
                       config={"responsive": True, "displaylogo": False})
    return Markup(html)


def _kind(block: Block) -> str:
    for cls, name in ((Table, "table"), (Plot, "plot"), (Gallery, "gallery"), (Text, "text"), (Code, "code")):
        if isinstance(block, cls):
            return name
    raise TypeError(f"not a page block: {type(block).__name__}")


def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("interp.pages", "templates"),
                              autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def inline_script(js: str) -> Markup:
    """Script text safe inside ``<script>``: no ``</script`` can end the element early."""
    return Markup(js.replace("</script", "<\\/script").replace("</SCRIPT", "<\\/SCRIPT"))


def render(page: Page, *, progress: bool = False) -> str:
    """The page as one HTML document (a string)."""
    names = [b.name for b in page.plots()] + [b.name for b in page.tables()] + [b.name for b in page.galleries()]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"page {page.title!r}: block names {dup} are used twice (each figure, table and gallery "
                         "needs its own)")
    plots = page.plots()
    bar = tqdm(total=len(plots), desc="page figures", disable=not progress or not plots)
    sections = []
    for s in page.sections:
        blocks = []
        for b in s.blocks:
            kind = _kind(b)
            html = plot_html(b) if kind == "plot" else None
            if html is not None:
                bar.update(1)
            blocks.append(Rendered(kind, b, html))
        sections.append((s, blocks))
    bar.close()
    prov: dict[str, Any] | None = None
    if page.provenance is not None:
        p = page.provenance
        prov = {"p": p, "config": json.dumps(p.config, indent=2, sort_keys=True, default=str)}
    template = _environment().get_template("page.html.j2")
    return template.render(page=page, sections=sections, provenance=prov,
                           plotly_js=inline_script(get_plotlyjs()) if plots else None)


def write_page(page: Page, path: str | Path, *, progress: bool = False) -> Path:
    """Render ``page`` and write it to ``path`` atomically; returns the path."""
    path = Path(path)
    write_text(path, render(page, progress=progress))
    return path
