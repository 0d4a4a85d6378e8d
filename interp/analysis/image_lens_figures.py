"""Figures of the image-token readouts (:mod:`interp.analysis.image_lenses`), drawn from their
tidy rows alone: where each readout first names the concept and its hypernym, across concepts
(:func:`first_naming_figure`), and one concept's rank by layer (:func:`rank_heatmap_figure`).
Save them with :func:`interp.plots.save_figure`."""

from __future__ import annotations

import math
import re
from typing import Mapping, Sequence

import plotly.graph_objects as go

from interp.analysis.image_lenses import TARGET_KINDS

KIND_COLORS = {"concept": "#1f77b4", "hypernym": "#d62728"}


def in_order(values: Sequence[str]) -> list[str]:
    """Distinct values in first-seen order."""
    return list(dict.fromkeys(values))


def first_naming_figure(first_rows: Sequence[Mapping], *, n_layers: int | None = None, title: str | None = None
                        ) -> go.Figure:
    """Per readout (x) and target kind (colour), the first layer at which each concept's image is
    named (y, one point per concept, hover: the concept), over a box of the concepts. Concepts
    a readout never names sit at ``y = n_layers``, labelled "never" (default ``n_layers``: one
    past the deepest first layer)."""
    named = [int(r["first_layer"]) for r in first_rows if r["first_layer"] not in (None, "")]
    never = n_layers if n_layers is not None else (max(named) + 1 if named else 1)
    readouts = in_order([r["readout"] for r in first_rows])
    fig = go.Figure()
    for kind in TARGET_KINDS:
        sel = [r for r in first_rows if r["target"] == kind]
        if not sel:
            continue
        y = [never if r["first_layer"] in (None, "") else int(r["first_layer"]) for r in sel]
        fig.add_trace(go.Box(x=[r["readout"] for r in sel], y=y, text=[r["concept"] for r in sel], name=kind,
                             boxpoints="all", jitter=0.4, pointpos=0, marker=dict(color=KIND_COLORS.get(kind), size=7),
                             hovertemplate="%{text}: layer %{y}<extra>" + kind + "</extra>"))
    top_k = in_order([str(r["top_k"]) for r in first_rows])
    ticks = list(range(0, never, max(1, math.ceil(never / 10)))) + [never]
    fig.update_layout(title=title or f"First layer whose readout of the image names the concept / its hypernym "
                      f"(top-{'/'.join(top_k)})", xaxis_title="readout", yaxis_title="first layer",
                      boxmode="group", xaxis=dict(categoryorder="array", categoryarray=readouts),
                      yaxis=dict(tickvals=ticks, ticktext=[str(t) for t in ticks[:-1]] + ["never"]))
    return fig


def rank_grid(rows: Sequence[Mapping], concept: str) -> tuple[list[str], list[int], list[list[float | None]]]:
    """(row labels ``"<readout> · <target>"``, layers, ranks ``[labels][layers]``, None where
    missing) of one concept's :func:`readout_rows`."""
    sel = [r for r in rows if r["concept"] == concept]
    if not sel:
        raise ValueError(f"no rows of concept {concept!r}; concepts: {in_order([r['concept'] for r in rows])}")
    layers = sorted({int(r["layer"]) for r in sel})
    labels = [f"{ro} · {kind}" for ro in in_order([r["readout"] for r in sel]) for kind in TARGET_KINDS]
    cell = {(f"{r['readout']} · {r['target']}", int(r["layer"])): float(r["rank"]) for r in sel}
    return labels, layers, [[cell.get((lab, layer)) for layer in layers] for lab in labels]


def rank_heatmap_figure(rows: Sequence[Mapping], concept: str, *, title: str | None = None) -> go.Figure:
    """One concept: the rank (0 = top) of the concept word and of its hypernym word by layer (x)
    under each readout (y), coloured by ``log10(1 + rank)`` (bright = named)."""
    labels, layers, ranks = rank_grid(rows, concept)
    z = [[None if v is None else math.log10(1 + v) for v in row] for row in ranks]
    text = [["" if v is None else str(int(v)) for v in row] for row in ranks]
    fig = go.Figure(go.Heatmap(z=z, x=layers, y=labels, text=text, texttemplate="%{text}", colorscale="Viridis",
                               reversescale=True, colorbar=dict(title="log10(1 + rank)"),
                               hovertemplate="%{y}, layer %{x}: rank %{text}<extra></extra>"))
    fig.update_layout(title=title or f"{concept}: rank of the concept and hypernym words by layer",
                      xaxis_title="layer", yaxis_title="readout · target", yaxis=dict(autorange="reversed"))
    return fig


def figure_stem(concept: str) -> str:
    """A file stem for one concept's heatmap: ``ranks_<concept>`` with non-word characters as ``_``."""
    return "ranks_" + re.sub(r"\W+", "_", concept).strip("_")


def build_figures(rows: Sequence[Mapping], first_rows: Sequence[Mapping], *, n_layers: int | None = None
                  ) -> dict[str, go.Figure]:
    """The figures by file stem: ``first_naming`` and one ``ranks_<concept>`` heatmap per concept."""
    figs = {"first_naming": first_naming_figure(first_rows, n_layers=n_layers)} if first_rows else {}
    for concept in in_order([r["concept"] for r in rows]):
        figs[figure_stem(concept)] = rank_heatmap_figure(rows, concept)
    return figs
