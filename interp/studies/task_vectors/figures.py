"""The study's figures (plotly), drawn from its tables: :func:`build_figures` makes them (the
results page embeds them), :func:`write_figures` saves them as HTML (+ PNG)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go

from interp.metrics import mean_ci
from interp.plots import heatmap, line_with_ci, save_figure
from interp.studies.task_vectors.config import LABELS, SOURCES, TARGETS

WIDE = {"cosine_control": 1100}  # saved wider than the default 900 px


# ----------------------------------------------------------------- figures
def write_figures(tables: dict[str, list[dict]], cos: dict[str, Any], out: Path, *, png: bool = True) -> list[Path]:
    """Save :func:`build_figures` as ``out/<stem>.html`` and ``.png``; ``png=False`` writes HTML only."""
    files: list[Path] = []
    for stem, fig in build_figures(tables, cos).items():
        width = WIDE.get(stem, 900)
        if png:
            files += save_figure(fig, out / stem, width=width)
            continue
        out.mkdir(parents=True, exist_ok=True)
        fig.update_layout(template="plotly_white", width=width, height=560)
        fig.write_html(out / f"{stem}.html", include_plotlyjs=True)
        files.append(out / f"{stem}.html")
    return files


def build_figures(tables: dict[str, list[dict]], cos: dict[str, Any]) -> dict[str, go.Figure]:
    """Accuracy per layer per source -> target (validation sweep), cosine heatmaps, the
    examples curve, by file stem; drawn from the tidy tables only."""
    figs: dict[str, go.Figure] = {}
    sweep = [r for r in tables["sweep"] if r["split"] == "val" and r["layer"] not in ("", None)]
    for task in sorted({r["task"] for r in sweep}):
        series = {}
        for tg in TARGETS:
            for m in SOURCES + ("function_vector",):
                rs = sorted((r for r in sweep if r["task"] == task and r["target"] == tg and r["method"] == m),
                            key=lambda r: r["layer"])
                if rs:
                    series[f"{LABELS.get(m, m).replace('patch: ', '')} -> {tg}"] = (
                        [r["layer"] for r in rs], [r["em"] for r in rs], [float("nan")] * len(rs))
        nc = {f"no context ({r['target']})": r["em"] for r in tables["sweep"]
              if r["task"] == task and r["method"] == "no_context" and r["split"] == "val"}
        fig = line_with_ci(series, title=f"{task}: validation exact match per patched layer", xlabel="layer",
                           ylabel="exact match", hlines=nc)
        figs[f"layers_{task}"] = fig
    cosr = tables["cosine"]
    if cosr:
        layers = sorted({r["layer"] for r in cosr})
        pairs = sorted({(r["a"], r["b"]) for r in cosr})
        tasks = sorted({r["task"] for r in cosr})
        for a, b in pairs:
            z, ys = [], []
            for t in tasks:
                rs = {r["layer"]: r["cos"] for r in cosr if r["task"] == t and (r["a"], r["b"]) == (a, b)}
                if rs:
                    z.append([rs.get(l, float("nan")) for l in layers])
                    ys.append(t)
            if z:
                fig = heatmap(z, [str(l) for l in layers], ys, title=f"cosine: {a} vs {b} task vectors",
                              xlabel="layer", ylabel="task", colorscale="Viridis", zmid=None)
                figs[f"cosine_{a}_vs_{b}".replace("+", "_")] = fig
    if cos["rows"]:
        labels = sorted({(r["a"], r["b"]) for r in cos["rows"]})
        layers = sorted({r["layer"] for r in cos["rows"]})
        z, ys = [], []
        for a, b in labels:
            for kind in ("same_task", "other_task"):
                d = {r["layer"]: r[kind] for r in cos["rows"] if (r["a"], r["b"]) == (a, b)}
                z.append([d.get(l, float("nan")) for l in layers])
                ys.append(f"{a} vs {b} ({kind.replace('_', ' ')})")
        fig = heatmap(z, [str(l) for l in layers], ys, title="cosine of task vectors, same task vs other task (mean over tasks)",
                      xlabel="layer", ylabel="", colorscale="Viridis", zmid=None)
        figs["cosine_control"] = fig
    curve = tables["curve"]
    for tg in TARGETS:
        series = {}
        for m in ("prompting_text",) + SOURCES:
            rs = [r for r in curve if r["target"] == tg and r["method"] == m]
            if not rs:
                continue
            ks = sorted({r["n_examples"] for r in rs})
            stats = []
            for k in ks:  # per seed: mean over tasks; interval over seeds
                per_seed = defaultdict(list)
                for r in rs:
                    if r["n_examples"] == k:
                        per_seed[r["seed"]].append(r["em"])
                stats.append(mean_ci([float(np.mean(v)) for v in per_seed.values()]))
            series[LABELS.get(m, m).replace("patch: ", "")] = (ks, [s[0] for s in stats], [s[1] for s in stats])
        if series:
            fig = line_with_ci(series, title=f"{tg} queries: exact match vs number of examples (mean over tasks, "
                                             f"95% CI over seeds)", xlabel="examples", ylabel="exact match")
            fig.update_xaxes(type="log")
            figs[f"examples_{tg}"] = fig
    return figs
