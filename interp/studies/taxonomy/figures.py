"""The taxonomic study's figures (plotly): F1 against deprivation, against visual coherence, and
by hypernym depth; :func:`build_figures` makes them (the results page embeds them),
:func:`write_figures` saves them as HTML + PNG."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from interp.plots import grouped_bars, line_with_ci, save_figure, scatter_groups
from interp.studies.taxonomy.tables import condition_label


def build_figures(agg, depth, rows) -> dict[str, go.Figure]:
    """The study's figures by file stem (only those its rows can draw)."""
    cells, rates = agg["cells"], agg["rates"]
    random_cols = sorted((a for a in rates if a.endswith("%")), key=lambda a: rates[a])
    series = {}
    for cond in ("original", "within", "across", "random-init"):
        pts = [(rates[a] * 100, *cells[(cond, a)]["unseen"][:2]) for a in random_cols
               if (cond, a) in cells and "unseen" in cells[(cond, a)]]
        if pts:
            series[cond] = tuple(zip(*pts))
    chance = [v["chance_unseen"][0] for v in cells.values() if "chance_unseen" in v]
    figs: dict[str, go.Figure] = {}
    if series:
        fig = line_with_ci(series, title="Unseen-hypernym F1 vs deprivation", xlabel="hypernym leaves removed (%)",
                           ylabel="macro F1 x100 (unseen pairs)",
                           hlines={"chance": float(np.mean(chance))} if chance else None)
        fig.update_yaxes(range=[0, 100])  # F1 is bounded; wide intervals of small groups are clipped
        figs["f1_vs_deprivation"] = fig
    groups = defaultdict(lambda: ([], [], []))
    for r in rows:
        if r["hypernym"] != "<leaf>" and r["split"] == "unseen" and r["coherence"] == r["coherence"]:
            g = groups[f"{condition_label(r)} {r['ablation']}"]
            g[0].append(r["coherence"])
            g[1].append(r["f1"])
            g[2].append(f"{r['hypernym']} (seed {r['seed']})")
    if groups:
        fig = scatter_groups(dict(groups), title="Per-hypernym F1 vs visual coherence",
                             xlabel="visual coherence (mean pairwise cosine)", ylabel="macro F1 x100 (unseen)")
        fig.update_yaxes(range=[0, 100])
        figs["f1_vs_coherence"] = fig
    bars = defaultdict(lambda: ([], [], []))
    for (c, a, d), (m, h, _) in depth.items():
        b = bars[f"{c} {a}"]
        b[0].append(f"depth {d}")
        b[1].append(m)
        b[2].append(h)
    if bars:
        fig = grouped_bars(dict(bars), title="Unseen-hypernym F1 by depth", xlabel="hypernym depth",
                           ylabel="macro F1 x100")
        fig.update_yaxes(range=[0, 100])
        figs["f1_by_depth"] = fig
    return figs


def write_figures(agg, depth, rows, folder: Path) -> list[Path]:
    files: list[Path] = []
    for stem, fig in build_figures(agg, depth, rows).items():
        files += save_figure(fig, folder / stem)
    return files
