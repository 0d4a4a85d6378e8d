"""Plotly figures from tidy tables, saved as self-contained HTML and PNG."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import plotly.graph_objects as go

log = logging.getLogger(__name__)

PALETTE = {"original": "#1f77b4", "within": "#2ca02c", "across": "#d62728", "random-init": "#7f7f7f"}


def save_figure(fig: go.Figure, path_stem: str | Path, *, width: int = 900, height: int = 560) -> list[Path]:
    """Write ``<stem>.html`` (plotly.js inlined, opens offline) and ``<stem>.png`` (kaleido +
    Chromium). Returns the files written; a PNG failure is logged, not fatal."""
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    fig.update_layout(template="plotly_white", width=width, height=height)
    written = [stem.with_suffix(".html")]
    fig.write_html(written[0], include_plotlyjs=True)
    try:
        fig.write_image(stem.with_suffix(".png"), scale=1.5)
        written.append(stem.with_suffix(".png"))
    except Exception as e:  # kaleido needs a Chrome binary (scripts/setup.sh installs chromium)
        log.warning("could not write %s.png (%s); the HTML is there", stem, e)
    return written


def line_with_ci(series: dict[str, tuple[Sequence[float], Sequence[float], Sequence[float]]], *, title: str,
                 xlabel: str, ylabel: str, hlines: dict[str, float] | None = None) -> go.Figure:
    """One line per series name: (x, mean, half-width of the interval)."""
    fig = go.Figure()
    for name, (x, y, err) in series.items():
        color = next((c for k, c in PALETTE.items() if k in name), None)
        fig.add_trace(go.Scatter(x=list(x), y=list(y), name=name, mode="lines+markers",
                                 line=dict(color=color, dash="dot" if "random" in name else None),
                                 error_y=dict(type="data", array=[0 if e != e else e for e in err], visible=True)))
    for label, y in (hlines or {}).items():
        fig.add_hline(y=y, line_dash="dash", line_color="black", annotation_text=label)
    fig.update_layout(title=title, xaxis_title=xlabel, yaxis_title=ylabel)
    return fig


def scatter_groups(groups: dict[str, tuple[Sequence[float], Sequence[float], Sequence[str]]], *, title: str,
                   xlabel: str, ylabel: str) -> go.Figure:
    """One marker set per group: (x, y, hover labels)."""
    fig = go.Figure()
    for name, (x, y, text) in groups.items():
        color = next((c for k, c in PALETTE.items() if k in name), None)
        fig.add_trace(go.Scatter(x=list(x), y=list(y), text=list(text), name=name, mode="markers",
                                 marker=dict(color=color, size=8, opacity=0.75)))
    fig.update_layout(title=title, xaxis_title=xlabel, yaxis_title=ylabel)
    return fig


def grouped_bars(groups: dict[str, tuple[Sequence[str], Sequence[float], Sequence[float]]], *, title: str,
                 xlabel: str, ylabel: str) -> go.Figure:
    """Bars per group: (categories, mean, half-width)."""
    fig = go.Figure()
    for name, (cats, y, err) in groups.items():
        color = next((c for k, c in PALETTE.items() if k in name), None)
        fig.add_trace(go.Bar(x=list(cats), y=list(y), name=name, marker_color=color,
                             error_y=dict(type="data", array=[0 if e != e else e for e in err])))
    fig.update_layout(title=title, xaxis_title=xlabel, yaxis_title=ylabel, barmode="group")
    return fig


def heatmap(z, x: Sequence[str], y: Sequence[str], *, title: str, xlabel: str, ylabel: str,
            colorscale: str = "RdBu", zmid: float | None = 0.0) -> go.Figure:
    fig = go.Figure(go.Heatmap(z=z, x=list(x), y=list(y), colorscale=colorscale, zmid=zmid))
    fig.update_layout(title=title, xaxis_title=xlabel, yaxis_title=ylabel)
    return fig
