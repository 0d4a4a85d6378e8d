"""The visual-alignment study's plotly figures, drawn from a results folder: :func:`build_figures`
makes them (the results page embeds them), :func:`write_figures` saves them as HTML + PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from interp.io import read_json
from interp.metrics import pearson
from interp.plots import heatmap, save_figure
from interp.studies.alignment.head import confusion, group_confusion
from interp.studies.alignment.tables import LM_ONLY_METRICS, LM_ONLY_NUMERIC, lm_scores, read_csv, summarize


_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]



# (width, height) of the saved figures that are not 900 x 560, by file-stem prefix
SIZES = {"score_vs_lm_only": (1300, 520), "confusion_classes": (1100, 1000), "confusion_hypernyms": (1000, 900)}


def figure_size(stem: str) -> tuple[int, int]:
    return next((wh for prefix, wh in SIZES.items() if stem.startswith(prefix)), (900, 560))


# ------------------------------------------------------------------- figures
def write_figures(study_dir: Path, fig_dir: Path, *, score_layer: int = -1, confusion_lm: str = "") -> list[Path]:
    """Save :func:`build_figures` as ``fig_dir/<stem>.html`` and ``.png``."""
    files: list[Path] = []
    for stem, fig in build_figures(study_dir, score_layer=score_layer, confusion_lm=confusion_lm).items():
        width, height = figure_size(stem)
        files += save_figure(fig, Path(fig_dir) / stem, width=width, height=height)
    return files


def build_figures(study_dir: Path, *, score_layer: int = -1, confusion_lm: str = "") -> dict[str, go.Figure]:
    """Figures from a study folder's tables (results.csv, lm_only.csv, units/) by file stem: top-1
    per layer and LM (relative depth), score vs the LM-only test, confusion among held-out
    classes (one unit) and between top-level hypernyms (over seeds)."""
    study_dir = Path(study_dir)
    rows = read_csv(study_dir / "results.csv")
    summary = summarize(rows)
    figs: dict[str, go.Figure] = {}
    for split in sorted({r["split"] for r in rows}):
        fig = go.Figure()
        ss = [s for s in summary if s["split"] == split]
        for lm in sorted({s["lm"] for s in ss}, key=lambda x: ("+random" in x, x)):
            pts = sorted((s for s in ss if s["lm"] == lm), key=lambda s: s["layer"])
            fig.add_trace(go.Scatter(
                x=[s["rel_depth"] for s in pts], y=[s["top1"] for s in pts], name=lm, mode="lines+markers",
                text=[f"layer {s['layer']}" for s in pts], line=dict(dash="dot" if "+random" in lm else None),
                error_y=dict(type="data", array=[0 if s["top1_ci"] != s["top1_ci"] else s["top1_ci"] for s in pts])))
        chance = float(np.mean([s["chance1"] for s in ss]))
        fig.add_hline(y=chance, line_dash="dash", line_color="black", annotation_text=f"chance {chance:.1f}")
        fig.update_layout(title=f"Zero-shot top-1 on held-out classes (split by {split}), mean ± 95% CI over seeds",
                          xaxis_title="relative depth (block / last block)", yaxis_title="top-1 (%)")
        figs[f"score_by_layer_{split}"] = fig
    lm_path = study_dir / "lm_only.csv"
    if lm_path.exists():
        by_lm = {r["lm"]: r for r in read_csv(lm_path, LM_ONLY_NUMERIC)}
        scores = lm_scores(summary, score_layer)
        for split in sorted({s["split"] for s in scores}):
            ss = [s for s in scores if s["split"] == split and s["lm"] in by_lm]
            rs = [pearson([by_lm[s["lm"]][m] for s in ss], [s["top1"] for s in ss])[0] for m in LM_ONLY_METRICS]
            fig = make_subplots(rows=1, cols=len(LM_ONLY_METRICS), shared_yaxes=True,
                                subplot_titles=[f"{m} (r = {r:.2f})" for m, r in zip(LM_ONLY_METRICS, rs)])
            colors = {b: c for b, c in zip(sorted({s["lm_base"] for s in ss}), _COLORS * 10)}
            for col, m in enumerate(LM_ONLY_METRICS, start=1):
                for s in ss:
                    fig.add_trace(go.Scatter(
                        x=[by_lm[s["lm"]][m]], y=[s["top1"]], name=s["lm"], mode="markers", showlegend=col == 1,
                        legendgroup=s["lm"],
                        error_y=dict(type="data", array=[0 if s["top1_ci"] != s["top1_ci"] else s["top1_ci"]]),
                        marker=dict(size=11, color=colors[s["lm_base"]],
                                    symbol="circle-open" if s["lm_init"] == "random" else "circle")),
                        row=1, col=col)
                fig.update_xaxes(title_text=f"LM-only {m} (%)", row=1, col=col)
            fig.update_yaxes(title_text="zero-shot top-1 at the score layer (%)", row=1, col=1)
            fig.update_layout(title=f"Alignment score vs LM-only hypernym test (split by {split}; n = {len(ss)} LMs; "
                                    "open = random init)")
            figs[f"score_vs_lm_only_{split}"] = fig
    if (study_dir / "units").is_dir():  # a copy of the tables alone (figures/out) has no per-unit files
        figs.update(confusion_figures(study_dir, rows, score_layer, confusion_lm))
    return figs


def confusion_figures(study_dir: Path, rows: list[dict], score_layer: int, confusion_lm: str) -> dict[str, go.Figure]:
    """Confusion among one unit's held-out classes and between top-level hypernyms (over seeds),
    per split, read from the per-unit files in ``study_dir/units``."""
    figs: dict[str, go.Figure] = {}
    pretrained = [r for r in rows if r["lm_init"] == "pretrained"] or rows
    lm = confusion_lm or pretrained[0]["lm"]
    cand = [r for r in rows if r["lm"] == lm]
    if not cand:
        raise ValueError(f"confusion_lm {lm!r} has no results; LMs in the table: {sorted({r['lm'] for r in rows})}")
    layer = score_layer % cand[0]["n_layers"]
    for split in sorted({r["split"] for r in cand}):
        units = sorted((r for r in cand if r["split"] == split and r["layer"] == layer), key=lambda r: r["seed"])
        if not units:
            continue
        tops_path = study_dir / "class_groups.json"
        groups = read_json(tops_path) if tops_path.exists() else {}
        safe = lm.replace("/", "__")
        first = read_json(study_dir / "units" / safe / f"{split}-L{layer:02d}-s{units[0]['seed']}.json")
        names = first["test_classes"]
        order = sorted(range(len(names)), key=lambda j: (sorted(groups.get(names[j], ["~"]))[0], names[j]))
        m = confusion(first["true"], [p[0] for p in first["pred"]], len(names))
        m = m[order][:, order]
        labels = [names[j] for j in order]
        fig = heatmap(m.numpy(), labels, labels, title=f"Confusion among held-out classes: {lm}, layer {layer}, "
                      f"split by {split}, seed {units[0]['seed']}<br>(rows: true, sorted by top-level hypernym)",
                      xlabel="predicted (top-1)", ylabel="true", colorscale="Blues", zmid=None)
        figs[f"confusion_classes_{split}"] = fig
        if groups:
            t_names, p_names = [], []
            for u in units:
                got = read_json(study_dir / "units" / safe / f"{split}-L{layer:02d}-s{u['seed']}.json")
                n = got["test_classes"]
                t_names += [n[t] for t in got["true"]]
                p_names += [n[p[0]] for p in got["pred"]]
            gnames, gm = group_confusion(t_names, p_names, {c: groups[c] for c in set(t_names) | set(p_names)})
            fig = heatmap(gm.numpy(), gnames, gnames, title=f"Held-out images by top-level hypernym: true vs predicted "
                          f"class's<br>({lm}, layer {layer}, split by {split}, all seeds)", xlabel="predicted",
                          ylabel="true", colorscale="Blues", zmid=None)
            figs[f"confusion_hypernyms_{split}"] = fig
    return figs
