"""Figures and a findings report from the tables of :mod:`interp.studies.inside` (redrawable:
``python figures/inside.py runs/inside``). Every sentence of the report is computed from the
tables; nothing is typed in."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from interp.io import read_json
from interp.metrics import mean_ci
from interp.plots import heatmap, line_with_ci, save_figure


def _rows(out: Path, name: str) -> list[dict] | None:
    from interp.io import read_csv

    p = out / f"{name}.csv"
    return read_csv(p) if p.exists() else None


def _by(rows: list[dict], key: str, group: str, value: str) -> dict[str, tuple[list[int], list[float], list[float]]]:
    """{group: (sorted keys, mean, 95% half-width over the other rows)}."""
    acc: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        acc[str(r[group])][int(r[key])].append(float(r[value]))
    out = {}
    for g, d in acc.items():
        ks = sorted(d)
        stats = [mean_ci(d[k]) for k in ks]
        out[g] = (ks, [s[0] for s in stats], [s[1] for s in stats])
    return out


def figures(out: Path) -> list[Path]:
    out = Path(out)
    written: list[Path] = []
    lm = read_json(out / "summary.json")["lm"] if (out / "summary.json").exists() else "?"
    if (rows := _rows(out, "probes")) is not None:
        fig = line_with_ci(_by(rows, "layer", "probe", "balanced_accuracy"), title=f"Hypernym probes per layer ({lm}); "
                           "mean over hypernyms, 95% CI", xlabel="layer", ylabel="balanced accuracy",
                           hlines={"chance": 0.5})
        written += save_figure(fig, out / "probes")
    if (rows := _rows(out, "directions")) is not None:
        series = _by(rows, "layer", "hypernym", "cosine")
        long = [dict(r, kind="text vs image direction", value=r["cosine"]) for r in rows]
        long += [dict(r, kind="shuffled membership", value=r["shuffled_cosine"]) for r in rows]
        fig = line_with_ci(_by(long, "layer", "kind", "value"), title=f"Cosine of text- and image-derived hypernym "
                           f"directions ({lm}, {len(series)} hypernyms)", xlabel="layer", ylabel="cosine")
        written += save_figure(fig, out / "directions")
    if (rows := _rows(out, "steering")) is not None:
        layer = int(rows[0]["layer"])
        scaled = [dict(r, scale_x=int(round(100 * float(r["scale"])))) for r in rows]
        series = _by(scaled, "scale_x", "condition", "delta_p_yes")
        series = {k: ([x / 100 for x in v[0]], v[1], v[2]) for k, v in series.items()}
        fig = line_with_ci(series, title=f"Steering at image positions, layer {layer} ({lm}): change in P(Yes)",
                           xlabel="scale (x mean residual norm)", ylabel="delta P(Yes)")
        written += save_figure(fig, out / "steering")
    if (rows := _rows(out, "lens_ranks")) is not None:
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
        written += save_figure(fig, out / "lens_ranks")
    if (rows := _rows(out, "similarity")) is not None:
        nan = [float("nan")] * len(rows)
        ks = [int(r["layer"]) for r in rows]
        fig = line_with_ci({m: (ks, [float(r[m]) for r in rows], nan) for m in ("cka", "rsa", "cka_shuffled", "rsa_shuffled")},
                           title=f"Text vs image representations of the same concepts ({lm})", xlabel="layer",
                           ylabel="similarity")
        written += save_figure(fig, out / "similarity")
    if (rows := _rows(out, "umap")) is not None:
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
        written += save_figure(fig, out / "umap")
    if (rows := _rows(out, "patching")) is not None:
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
            written += save_figure(fig, out / f"patching_{name}", width=1100)
        fig = go.Figure(go.Scatter(x=[r["exact_effect"] for r in rows], y=[r["attribution"] for r in rows],
                                   mode="markers", text=[f"L{int(r['layer'])} {lab[int(r['position'])]}" for r in rows]))
        fig.update_layout(title="Attribution vs exact patching, every cell", xaxis_title="exact effect",
                          yaxis_title="attribution estimate")
        written += save_figure(fig, out / "patching_agreement")
    return written


def findings(out: Path) -> str:
    """A markdown report of what the tables show, each number computed from them."""
    out = Path(out)
    summ = read_json(out / "summary.json")
    lines = [f"# Looking inside {summ['lm']}: {summ['n_concepts']} concepts, {len(summ['hypernyms'])} hypernyms", "",
             f"Checkpoint `{summ['config']['checkpoint']}`; reproduce with `python -m interp.analyze "
             f"{summ['config']['checkpoint']} --out {out}`.", ""]
    if (rows := _rows(out, "probes")) is not None:
        s = _by(rows, "layer", "probe", "balanced_accuracy")
        lines.append("## Probes (balanced accuracy, chance 0.5; mean over hypernyms, 95% CI)")
        for probe, (ks, m, e) in s.items():
            i = int(np.argmax(m))
            lines.append(f"- {probe}: best layer {ks[i]} ({m[i]:.3f} +/- {e[i]:.3f}); layer 0 {m[0]:.3f}; last {m[-1]:.3f}")
        if "text->image" in s:
            ks, m, e = s["text->image"]
            first = next((k for k, mm, ee in zip(ks, m, e) if mm - ee > 0.5 and mm >= 0.6), None)
            lines.append(f"- text-trained probes transfer to image tokens (mean >= 0.60 and CI above chance) from "
                         f"layer {first}" if first is not None else
                         "- text-trained probes never reach 0.60 with a CI above chance on image tokens")
        lines.append("")
    if (rows := _rows(out, "directions")) is not None:
        s = _by(rows, "layer", "hypernym", "cosine")
        per_layer = defaultdict(list)
        shuf = defaultdict(list)
        for r in rows:
            per_layer[int(r["layer"])].append(float(r["cosine"]))
            shuf[int(r["layer"])].append(float(r["shuffled_cosine"]))
        best = max(per_layer, key=lambda k: np.mean(per_layer[k]))
        lines += ["## Hypernym directions",
                  f"- cosine(text direction, image direction) peaks at layer {best}: {np.mean(per_layer[best]):.3f} "
                  f"(shuffled membership {np.mean(shuf[best]):.3f}); layer 0 {np.mean(per_layer[0]):.3f}", ""]
    if (rows := _rows(out, "steering")) is not None:
        lines.append(f"## Steering at the image positions (layer {int(rows[0]['layer'])})")
        for scale in sorted({float(r["scale"]) for r in rows}):
            if scale == 0:
                continue
            parts = []
            for cond in ("target", "other-question", "random-direction"):
                d = [float(r["delta_p_yes"]) for r in rows if float(r["scale"]) == scale and r["condition"] == cond]
                if d:
                    parts.append(f"{cond} {np.mean(d):+.3f}")
            lines.append(f"- scale {scale:g}: mean delta P(Yes): " + ", ".join(parts))
        lines.append("")
    if (rows := _rows(out, "lens_ranks")) is not None:
        by_layer: dict[int, list[float]] = defaultdict(list)
        for r in rows:
            by_layer[int(r["layer"])].append(float(r["rank"]))
        best = min(by_layer, key=lambda k: np.median(by_layer[k]))
        top100 = {k: float(np.mean(np.array(v) < 100)) for k, v in by_layer.items()}
        lines += ["## Logit lens at the image position",
                  f"- median rank of the hypernym word is lowest at layer {best} ({np.median(by_layer[best]):.0f}); "
                  f"in the top 100 for {100 * top100[best]:.0f}% of (concept, hypernym) pairs there; "
                  f"last layer median {np.median(by_layer[max(by_layer)]):.0f}", ""]
    if (rows := _rows(out, "similarity")) is not None:
        best = max(rows, key=lambda r: float(r["cka"]))
        lines += ["## Similarity of text and image representations",
                  f"- linear CKA peaks at layer {int(best['layer'])}: {float(best['cka']):.3f} (shuffled "
                  f"{float(best['cka_shuffled']):.3f}); RSA there {float(best['rsa']):.3f}", ""]
    if "patching" in summ:
        p = summ["patching"]
        a = p["agreement"]
        rows = _rows(out, "patching") or []
        top = max(rows, key=lambda r: abs(float(r["exact_effect"]))) if rows else None
        lines += [f"## Patching {p['clean']} -> {p['corrupt']} (\"{p['question']}\")",
                  f"- logit(Yes) - logit(No): clean {p['clean_metric']:+.3f}, corrupted {p['corrupted_metric']:+.3f}"]
        if top:
            lines.append(f"- largest exact effect: layer {int(top['layer'])}, position {int(top['position'])} "
                         f"({top['modality']}): {float(top['exact_effect']):+.3f}")
        lines += [f"- attribution vs exact over all {a['n_cells']} cells: Pearson {a['pearson']:.3f}, Spearman "
                  f"{a['spearman']:.3f}, sign agreement {a['sign_agreement']:.2f}; exact grid {p['seconds_exact']:.1f} s, "
                  f"attribution {p['seconds_attribution']:.1f} s (one run)", ""]
    lines.append("Figures: " + ", ".join(sorted(p.name for p in out.glob("*.html"))))
    return "\n".join(lines) + "\n"
