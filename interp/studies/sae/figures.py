"""The SAE study's figures (plotly, HTML + PNG via :func:`interp.plots.save_figure`), drawn
from its tables: quality per layer, shared latents vs the shuffled baseline, training curves
and, per layer, a grid of each top latent's top-activating images. :func:`build_figures`
returns the figures (and a map of the latents by concepts per modality) for the results page."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.subplots import make_subplots

from interp.io import read_csv
from interp.plots import grouped_bars, line_with_ci, save_figure
from interp.studies.sae.data import TOKEN_GROUPS, has_group_measures

THUMB = 96


def _rows(out: Path, name: str) -> list[dict]:
    p = out / f"{name}.csv"
    return read_csv(p) if p.exists() and p.stat().st_size else []


def thumbnail(path: str, size: int = THUMB) -> np.ndarray:
    """``[size, size, 3]`` uint8 RGB of an image file (grey if it does not open)."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB").resize((size, size)))
    except (OSError, ValueError):
        return np.full((size, size, 3), 200, dtype=np.uint8)


def image_grid(rows: list[dict], title: str) -> go.Figure:
    """One row per latent (by rank), its top images left to right, titled with concept and activation."""
    by = defaultdict(list)
    for r in rows:
        by[(int(r["rank"]), int(r["latent"]))].append(r)
    keys = sorted(by)
    n_cols = max(len(v) for v in by.values())
    titles = []
    for k in keys:
        titles += [f"#{k[1]}: {r['concept']} ({float(r['activation']):.2f})" for r in by[k]] + [""] * (n_cols - len(by[k]))
    fig = make_subplots(rows=len(keys), cols=n_cols, subplot_titles=titles, horizontal_spacing=0.01,
                        vertical_spacing=0.06)
    for i, k in enumerate(keys):
        for j, r in enumerate(by[k]):
            fig.add_trace(go.Image(z=thumbnail(str(r["path"]))), row=i + 1, col=j + 1)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_annotations(font_size=9)
    fig.update_layout(title=title, margin=dict(t=60, l=10, r=10, b=10))
    return fig


def quality_figure(summary: list[dict]) -> go.Figure:
    """Bars per layer: explained variance, loss recovered, spliced loss delta, dead fraction."""
    layers = [str(r["layer"]) for r in summary]
    groups = {m: (layers, [float(r[m]) for r in summary], [0.0] * len(summary))
              for m in ("explained_variance", "loss_recovered", "loss_delta", "dead_frac")}
    return grouped_bars(groups, title="SAE quality per layer (held-out batches)", xlabel="layer", ylabel="value")


def group_figure(summary: list[dict]) -> go.Figure:
    """Bars per layer and token group: the held-out reconstruction error over the tokens'
    squared norm (0 = exact; 1 = no better than zero), from ``relerr_<group>``."""
    layers = [str(r["layer"]) for r in summary]
    groups = {label: (layers, [float(r[f"relerr_{g}"]) for r in summary], [0.0] * len(summary))
              for g, label in TOKEN_GROUPS.items()}
    trained = ", ".join(sorted({str(r.get("train_sequences", "all")) for r in summary}))
    return grouped_bars(groups, title=f"Reconstruction error by token group (SAE trained on: {trained} sequences)",
                        xlabel="layer", ylabel="squared error / squared norm")


def sharing_figure(sharing: list[dict]) -> go.Figure:
    """Bars per layer: latents shared across modalities (observed and with the text side's
    concepts shuffled, half the 95% range as the error bar), image-only and text-only latents."""
    layers = [str(r["layer"]) for r in sharing]
    zeros = [0.0] * len(sharing)
    groups = {"shared (observed)": (layers, [float(r["shared"]) for r in sharing], zeros),
              "shared (shuffled concepts)": (layers, [float(r["shuffled_shared_mean"]) for r in sharing],
                                             [(float(r["shuffled_shared_hi"]) - float(r["shuffled_shared_lo"])) / 2
                                              for r in sharing]),
              "image-only": (layers, [float(r["image-only"]) for r in sharing], zeros),
              "text-only": (layers, [float(r["text-only"]) for r in sharing], zeros)}
    return grouped_bars(groups, title="Latents by modality", xlabel="layer", ylabel="latents")


def train_curve_figure(curve: list[dict]) -> go.Figure:
    """One line per layer: the training fraction of variance unexplained per epoch."""
    series: dict[str, tuple[list, list, list]] = defaultdict(lambda: ([], [], []))
    for r in curve:
        s = series[f"layer {r['layer']}"]
        s[0].append(int(r["epoch"]))
        s[1].append(float(r["train_fvu"]))
        s[2].append(0.0)
    return line_with_ci(dict(series), title="SAE training (fraction of variance unexplained)", xlabel="epoch",
                        ylabel="train FVU")


def latent_map_figure(latents: list[dict]) -> go.Figure:
    """Every latent that fires for some concept: how many concepts it fires for in images (x)
    and in text (y), one marker colour per layer; the shared ones lie off both axes."""
    fig = go.Figure()
    for layer in sorted({int(r["layer"]) for r in latents}):
        rows = [r for r in latents if int(r["layer"]) == layer
                and int(r["n_concepts_image"]) + int(r["n_concepts_text"]) > 0]
        fig.add_trace(go.Scatter(
            x=[int(r["n_concepts_image"]) for r in rows], y=[int(r["n_concepts_text"]) for r in rows],
            mode="markers", name=f"layer {layer}", opacity=0.6,
            text=[f"latent {r['latent']} ({r['class']})" for r in rows],
            hovertemplate="%{text}<br>image concepts %{x}<br>text concepts %{y}<extra></extra>"))
    fig.update_layout(title="Latents: concepts they fire for in images and in text",
                      xaxis_title="concepts (image questions)", yaxis_title="concepts (text prompts)")
    return fig


def build_figures(out: Path) -> dict[str, go.Figure]:
    """The study's figures from the tables in ``out`` (name -> figure; a missing table, no figure)."""
    out = Path(out)
    builders = (("quality", "summary", quality_figure), ("sharing", "sharing", sharing_figure),
                ("latent_map", "latents", latent_map_figure), ("train_curve", "train_curve", train_curve_figure))
    figs = {}
    for name, table, build in builders:
        rows = _rows(out, table)
        if rows:
            figs[name] = build(rows)
    summary = _rows(out, "summary")
    if has_group_measures(summary):
        figs["groups"] = group_figure(summary)
    return figs


def write_figures(out: Path) -> list[Path]:
    """figures/<name>.html and .png for every figure of :func:`build_figures` but the latent map,
    and a grid of each top latent's top images per layer."""
    out = Path(out)
    figs = out / "figures"
    written: list[Path] = []
    for name, fig in build_figures(out).items():
        if name != "latent_map":
            written += save_figure(fig, figs / name)
    by_layer = defaultdict(list)
    for r in _rows(out, "top_images"):
        by_layer[int(r["layer"])].append(r)
    for layer, rows in sorted(by_layer.items()):
        n = len({r["latent"] for r in rows})
        written += save_figure(image_grid(rows, f"Top images of the top latents, layer {layer}"),
                               figs / f"top_images_layer{layer}", width=1100, height=max(300, 170 * n))
    return written
