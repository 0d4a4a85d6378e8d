"""The look-inside study's figures (plotly), redrawn from its tables: :func:`build_figures` makes
them (the results page embeds them), :func:`figures` saves them as HTML + PNG."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from interp.analysis.image_lens_figures import figure_stem, first_naming_figure, in_order, rank_heatmap_figure
from interp.io import read_json
from interp.plots import heatmap, line_with_ci, save_figure
from interp.studies.inside.config import InsideConfig
from interp.studies.inside.tables import read_rows, series_by


WIDE = {"patching_exact": 1100, "patching_attribution": 1100}  # saved wider than the default 900 px


def figures(out: Path) -> list[Path]:
    """Save every figure the tables in ``out`` can draw as ``out/<name>.html`` and ``.png``."""
    written: list[Path] = []
    for name, fig in build_figures(out).items():
        written += save_figure(fig, Path(out) / name, **({"width": WIDE[name]} if name in WIDE else {}))
    return written


def build_figures(out: Path) -> dict[str, go.Figure]:
    """The figures by file stem (only those whose tables are in ``out``)."""
    out = Path(out)
    figs: dict[str, go.Figure] = {}
    lm = read_json(out / "summary.json")["lm"] if (out / "summary.json").exists() else "?"
    if (rows := read_rows(out, "probes")) is not None:
        fig = line_with_ci(series_by(rows, "layer", "probe", "balanced_accuracy"), title=f"Hypernym probes per layer ({lm}); "
                           "mean over hypernyms, 95% CI", xlabel="layer", ylabel="balanced accuracy",
                           hlines={"chance": 0.5})
        figs["probes"] = fig
    if (rows := read_rows(out, "directions")) is not None:
        series = series_by(rows, "layer", "hypernym", "cosine")
        long = [dict(r, kind="text vs image direction", value=r["cosine"]) for r in rows]
        long += [dict(r, kind="shuffled membership", value=r["shuffled_cosine"]) for r in rows]
        fig = line_with_ci(series_by(long, "layer", "kind", "value"), title=f"Cosine of text- and image-derived hypernym "
                           f"directions ({lm}, {len(series)} hypernyms)", xlabel="layer", ylabel="cosine")
        figs["directions"] = fig
    if (rows := read_rows(out, "steering")) is not None:
        layer = int(rows[0]["layer"])
        scaled = [dict(r, scale_x=int(round(100 * float(r["scale"]))),
                       series=f"{r.get('direction') or 'image'} direction: {r['condition']}") for r in rows]
        series = series_by(scaled, "scale_x", "series", "delta_p_yes")
        series = {k: ([x / 100 for x in v[0]], v[1], v[2]) for k, v in sorted(series.items())}
        fig = line_with_ci(series, title=f"Steering at image positions, layer {layer} ({lm}): change in P(Yes)",
                           xlabel="scale (x mean residual norm)", ylabel="delta P(Yes)")
        figs["steering"] = fig
    if (rows := read_rows(out, "causal")) is not None and rows:
        n = len({(r["hypernym"], r["clean"], r["corrupt"]) for r in rows})
        fig = line_with_ci(series_by(rows, "layer", "source", "restored"),
                           title=f"A state written at a non-member's image position ({lm}, {n} pairs)",
                           xlabel="layer (blocks.{l}.hook_resid_pre)",
                           ylabel="share of the member's answer restored")
        figs["causal"] = fig
    if (rows := read_rows(out, "lens_ranks")) is not None:
        by_layer: dict[int, list[float]] = defaultdict(list)
        for r in rows:
            by_layer[int(r["layer"])].append(float(r["rank"]))
        ks = sorted(by_layer)
        fig = go.Figure([go.Scatter(x=ks, y=[float(np.median(by_layer[k])) for k in ks], name="median rank",
                                    mode="lines+markers"),
                         go.Scatter(x=ks, y=[float(np.percentile(by_layer[k], 25)) for k in ks], name="25th percentile",
                                    mode="lines", line=dict(dash="dot"))])
        fig.update_layout(title=f"Logit lens at the image position: rank of the hypernym word ({lm})",
                          xaxis_title="layer", yaxis_title="rank (0 = top token)", yaxis_type="log")
        figs["lens_ranks"] = fig
    if (rows := read_rows(out, "image_lens")) is not None and (first := read_rows(out, "image_lens_first")) is not None:
        config = read_json(out / "summary.json").get("config", {}) if (out / "summary.json").exists() else {}
        figs.update(image_lens_figures(rows, first, lm, int(config.get("image_lens_concepts",
                                                                       InsideConfig.image_lens_concepts))))
    if (rows := read_rows(out, "similarity")) is not None:
        nan = [float("nan")] * len(rows)
        ks = [int(r["layer"]) for r in rows]
        fig = line_with_ci({m: (ks, [float(r[m]) for r in rows], nan) for m in ("cka", "rsa", "cka_shuffled", "rsa_shuffled")},
                           title=f"Text vs image representations of the same concepts ({lm})", xlabel="layer",
                           ylabel="similarity")
        figs["similarity"] = fig
    if (rows := read_rows(out, "umap")) is not None:
        fig = go.Figure()
        tops = sorted({r["top_hypernym"] for r in rows})
        palette = [f"hsl({int(360 * i / max(len(tops), 1))},70%,45%)" for i in range(len(tops))]
        for mod, sym in (("text", "circle"), ("image", "x")):
            sel = [r for r in rows if r["modality"] == mod]
            fig.add_trace(go.Scatter(x=[r["x"] for r in sel], y=[r["y"] for r in sel], mode="markers", name=mod,
                                     text=[f"{r['concept']} ({r['top_hypernym']})" for r in sel],
                                     marker=dict(symbol=sym, size=7,
                                                 color=[palette[tops.index(r["top_hypernym"])] for r in sel])))
        fig.update_layout(title=f"UMAP of concept representations, layer {int(rows[0]['layer'])} ({lm}); colour = top "
                          "hypernym, circle = text, x = image")
        figs["umap"] = fig
    if (rows := read_rows(out, "patching")) is not None:
        layers = sorted({int(r["layer"]) for r in rows})
        pos = sorted({int(r["position"]) for r in rows})
        lab = {int(r["position"]): f"{int(r['position'])}:{r['modality']}:{r['token']}" for r in rows}
        for col, name in (("exact_effect", "exact"), ("attribution", "attribution")):
            z = np.zeros((len(layers), len(pos)))
            for r in rows:
                z[int(r["layer"]), pos.index(int(r["position"]))] = float(r[col])
            summ = read_json(out / "summary.json").get("patching", {})
            fig = heatmap(z, [lab[p] for p in pos], [str(l) for l in layers],
                          title=f"{name} patching of resid_pre: {summ.get('clean')} -> {summ.get('corrupt')} "
                          "(effect on logit Yes - No)", xlabel="position (modality)", ylabel="layer")
            figs[f"patching_{name}"] = fig
        fig = go.Figure(go.Scatter(x=[r["exact_effect"] for r in rows], y=[r["attribution"] for r in rows],
                                   mode="markers", text=[f"L{int(r['layer'])} {lab[int(r['position'])]}" for r in rows]))
        fig.update_layout(title="Attribution vs exact patching, every cell", xaxis_title="exact effect",
                          yaxis_title="attribution estimate")
        figs["patching_agreement"] = fig
    return figs


def image_lens_figures(rows: list[dict], first: list[dict], lm: str, n_concepts: int) -> dict[str, go.Figure]:
    """``image_lens_first``: per readout, the first layer naming each concept's word and its
    hypernym's, from the image states beside the text states (the positive control); and
    ``image_lens_ranks_<concept>``: the rank heatmap of the image states of the first
    ``n_concepts`` concepts (:mod:`interp.analysis.image_lens_figures`)."""
    readouts = in_order([r["readout"] for r in first])
    modalities = ("image", "text")
    ordered = sorted(first, key=lambda r: (readouts.index(r["readout"]), modalities.index(r["modality"])))
    labelled = [dict(r, readout=f"{r['readout']} ({'text control' if r['modality'] == 'text' else r['modality']})")
                for r in ordered]
    n_layers = max(int(r["layer"]) for r in rows) + 1
    k = first[0]["top_k"] if first else "?"
    figs = {"image_lens_first": first_naming_figure(
        labelled, n_layers=n_layers, title=f"First layer whose readout names the concept / its hypernym (top-{k}; "
        f"{lm}): image tokens, and the concept word's text tokens as a control")}
    image = [r for r in rows if r["modality"] == "image"]
    for concept in in_order([r["concept"] for r in image])[:n_concepts]:
        figs[f"image_lens_{figure_stem(concept)}"] = rank_heatmap_figure(
            image, concept, title=f"{concept} (image tokens, {lm}): rank of the concept and hypernym words by layer")
    return figs
