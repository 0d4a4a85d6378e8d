"""The binding study's figures (plotly), drawn from its tidy tables only: :func:`build_figures`
makes them (the results page embeds them), :func:`write_figures` saves them as HTML + PNG at
the size each figure carries in its layout."""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from interp.plots import grouped_bars, save_figure
from interp.studies.binding.tables import group, ordered

COLOURS = {"phase1": "#bbbbbb", "text": "#1f77b4", "noise-text": "#7f7f7f", "image-text": "#d62728",
           "noise-image-text": "#ff7f0e"}


def write_figures(tables: dict[str, list[dict]], out: Path) -> list[Path]:
    """Save :func:`build_figures` as ``out/<stem>.html`` and ``.png``."""
    out = Path(out)
    files: list[Path] = []
    for stem, fig in build_figures(tables).items():
        files += save_figure(fig, out / stem, width=fig.layout.width or 900, height=fig.layout.height or 560)
    return files


def build_figures(tables: dict[str, list[dict]]) -> dict[str, go.Figure]:
    """Accuracy bars, interchange outcomes per layer, the symbolic share, knockout and probe
    curves, training curves, by file stem (each with its saved width and height in its layout)."""
    figs: dict[str, go.Figure] = {}
    if tables["accuracy"]:
        acc = group(tables["accuracy"], ("regime", "set"), "acc")
        sets = sorted({r["set"] for r in tables["accuracy"]}, key=lambda s: (s.split("@")[0] != "text", s.split("@")[0],
                                                                            int(s.split("@")[1])))
        groups = {}
        for regime in ordered({r["regime"] for r in tables["accuracy"]}):
            cats = [s for s in sets if (regime, s) in acc]
            groups[regime] = (cats, [100 * acc[(regime, s)][0] for s in cats],
                              [100 * acc[(regime, s)][1] for s in cats])
        fig = grouped_bars(groups, title="Binding task accuracy by training regime", xlabel="evaluation set (kind@objects)",
                           ylabel="accuracy (%)")
        for tr in fig.data:
            tr.marker.color = COLOURS.get(tr.name)
        fig.update_yaxes(range=[0, 100])
        figs["accuracy"] = fig.update_layout(width=900, height=560)
    if tables["interchange"]:
        regs = ordered({r["regime"] for r in tables["interchange"]})
        fig = make_subplots(rows=1, cols=len(regs), subplot_titles=regs, shared_yaxes=True)
        palette = {"symbolic": "#2ca02c", "positional": "#9467bd", "source": "#8c564b", "base": "#1f77b4",
                   "other": "#bbbbbb"}
        for c, regime in enumerate(regs, start=1):
            rows = [r for r in tables["interchange"] if r["regime"] == regime]
            for outcome, colour in palette.items():
                g = group(rows, ("layer",), outcome)
                layers = sorted(k[0] for k in g)
                fig.add_trace(go.Scatter(x=layers, y=[100 * g[(l,)][0] for l in layers], name=outcome,
                                         line=dict(color=colour), legendgroup=outcome, showlegend=c == 1,
                                         error_y=dict(type="data", array=[0 if g[(l,)][1] != g[(l,)][1] else 100 * g[(l,)][1]
                                                                          for l in layers])), row=1, col=c)
            fig.update_xaxes(title_text="patched layer", row=1, col=c)
        fig.update_yaxes(title_text="% of base runs", range=[0, 100], row=1, col=1)
        fig.update_layout(title="Interchange interventions: which answer the patched query state produces")
        figs["interchange"] = fig.update_layout(width=max(900, 330 * len(regs)), height=430)
        fig = go.Figure()
        for regime in regs:
            rows = [r for r in tables["interchange"] if r["regime"] == regime]
            g = group(rows, ("layer",), "sym_share")
            layers = sorted(k[0] for k in g)
            fig.add_trace(go.Scatter(x=layers, y=[g[(l,)][0] for l in layers], name=regime, mode="lines+markers",
                                     line=dict(color=COLOURS.get(regime))))
        fig.update_layout(title="Symbolic share P(sym) / (P(sym) + P(pos)) per layer", xaxis_title="patched layer",
                          yaxis_title="symbolic share", yaxis_range=[0, 1])
        figs["symbolic_share"] = fig.update_layout(width=900, height=560)
    for table, key, ylabel, title in (("knockout", "route", "accuracy (%)", "Attention knockout by layer"),
                                      ("probes", "target", "held-out accuracy (%)", "Linear probes at the query position")):
        if not tables[table]:
            continue
        facets = sorted({r[key] for r in tables[table]})
        fig = make_subplots(rows=1, cols=len(facets), subplot_titles=facets, shared_yaxes=True)
        for c, facet in enumerate(facets, start=1):
            for regime in ordered({r["regime"] for r in tables[table]}):
                rows = [r for r in tables[table] if r["regime"] == regime and r[key] == facet]
                g = group(rows, ("layer",), "acc")
                layers = sorted(k[0] for k in g)
                fig.add_trace(go.Scatter(x=layers, y=[100 * g[(l,)][0] for l in layers], name=regime,
                                         legendgroup=regime, showlegend=c == 1, line=dict(color=COLOURS.get(regime))),
                              row=1, col=c)
            if table == "probes":
                ch = next(r["chance"] for r in tables[table] if r[key] == facet)
                fig.add_hline(y=100 * ch, line_dash="dash", line_color="black", row=1, col=c)
            fig.update_xaxes(title_text="layer", row=1, col=c)
        fig.update_yaxes(title_text=ylabel, range=[0, 100], row=1, col=1)
        fig.update_layout(title=title)
        figs[table] = fig.update_layout(width=max(900, 330 * len(facets)), height=430)
    if tables["training"]:
        fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "batch accuracy"))
        for regime in ordered({r["regime"] for r in tables["training"]}):
            for seed in sorted({r["seed"] for r in tables["training"] if r["regime"] == regime}):
                rows = [r for r in tables["training"] if r["regime"] == regime and r["seed"] == seed]
                for c, key in ((1, "loss"), (2, "acc")):
                    fig.add_trace(go.Scatter(x=[r["step"] for r in rows], y=[r[key] for r in rows],
                                             name=f"{regime} s{seed}", legendgroup=f"{regime}{seed}", showlegend=c == 1,
                                             line=dict(color=COLOURS.get(regime))), row=1, col=c)
                slot = [r for r in rows if r.get("slot_acc") not in (None, "")]
                if slot:  # the slot's own examples (a mixed batch's accuracy averages in its text)
                    fig.add_trace(go.Scatter(x=[r["step"] for r in slot], y=[r["slot_acc"] for r in slot],
                                             name=f"{regime} s{seed}: slot examples", legendgroup=f"{regime}{seed}",
                                             line=dict(color=COLOURS.get(regime), dash="dot")), row=1, col=2)
        fig.update_xaxes(title_text="step within segment")
        fig.update_layout(title="Training curves (segment 1 = phase1; segment 2 = each regime's curriculum)")
        figs["training"] = fig.update_layout(width=1100, height=430)
    return figs
