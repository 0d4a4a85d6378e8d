"""Tidy tables, the markdown report and the figures of the binding study.

Everything here reads the per-run result dicts (or the CSV tables written from them), so
``figures/binding.py`` can redraw the figures without re-running anything.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

from interp.io import read_csv, write_csv, write_text  # noqa: F401 (read_csv: used by figures/binding.py)
from interp.metrics import mean_ci

#: the brief's published numbers (section C of SEEDS.md)
BRIEF = {"text_ood": 37.2, "image_text_ood": 69.5, "text_id": 100.0}
REGIME_ORDER = ("phase1", "text", "noise-text", "image-text", "noise-image-text")
COLOURS = {"phase1": "#bbbbbb", "text": "#1f77b4", "noise-text": "#7f7f7f", "image-text": "#d62728",
           "noise-image-text": "#ff7f0e"}
TABLES = ("accuracy", "interchange", "knockout", "probes", "training")


def tidy(results: Iterable[dict]) -> dict[str, list[dict]]:
    """Per-run result dicts -> the five tidy tables (lists of flat rows)."""
    tables: dict[str, list[dict]] = {t: [] for t in TABLES}
    for res in results:
        ev = res["eval"]
        regime, seed = ev["regime"], ev["seed"]
        for row in ev["rows"]:
            tables["accuracy"].append({"regime": regime, "seed": seed, **row})
        for h in res.get("history", []):
            tables["training"].append({"regime": regime, "seed": seed, **h})
        mech = res.get("mech")
        if mech:
            for key in ("interchange", "knockout", "probes"):
                tables[key] += [{"regime": regime, "seed": seed, **row} for row in mech[key]]
    return tables


def _ordered(regimes: Iterable[str]) -> list[str]:
    regs = set(regimes)
    return [r for r in REGIME_ORDER if r in regs] + sorted(regs - set(REGIME_ORDER))


def _group(rows: list[dict], keys: tuple[str, ...], value: str) -> dict[tuple, tuple[float, float, int]]:
    """mean, CI half-width and count of ``value`` over seeds, per ``keys``."""
    acc: dict[tuple, list[float]] = defaultdict(list)
    for r in rows:
        v = r[value]
        if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isinf(v)):
            acc[tuple(r[k] for k in keys)].append(float(v))
    return {k: mean_ci(v) for k, v in acc.items()}


def _fmt(m: float, h: float, scale: float = 100.0, digits: int = 1) -> str:
    if m != m:
        return "-"
    return f"{m * scale:.{digits}f}" + ("" if h != h else f" ± {h * scale:.{digits}f}")


# --------------------------------------------------------------------- summary
def summarise(tables: dict[str, list[dict]], cfg_dict: dict) -> dict[str, Any]:
    acc = _group(tables["accuracy"], ("regime", "set"), "acc")
    ood_sets = [f"text@{n}" for n in cfg_dict["task"]["ood_objects"]]
    id_set = f"text@{cfg_dict['task']['n_objects']}"
    per_seed_ood: dict[tuple, list[float]] = defaultdict(list)
    for r in tables["accuracy"]:
        if r["set"] in ood_sets:
            per_seed_ood[(r["regime"], r["seed"])].append(r["acc"])
    ood_mean = defaultdict(list)
    for (regime, _), v in per_seed_ood.items():
        ood_mean[regime].append(sum(v) / len(v))
    out: dict[str, Any] = {"accuracy": {}, "ratio": {}}
    for regime in _ordered({r["regime"] for r in tables["accuracy"]}):
        m, h, n = mean_ci(ood_mean.get(regime, []))
        out["accuracy"][regime] = {"id": acc.get((regime, id_set), (float("nan"),) * 3)[0],
                                   "ood_mean": m, "ood_ci": h, "seeds": n,
                                   **{s: acc[(regime, s)][0] for (rg, s) in acc if rg == regime}}
    sym = _group(tables["interchange"], ("regime", "layer"), "symbolic")
    pos = _group(tables["interchange"], ("regime", "layer"), "positional")
    for regime in _ordered({r["regime"] for r in tables["interchange"]}):
        layers = sorted(k[1] for k in sym if k[0] == regime)
        out["ratio"][regime] = {int(l): _ratio(sym[(regime, l)][0], pos[(regime, l)][0]) for l in layers}
    out["brief"] = BRIEF
    return out


def learned_threshold(n_objects: int) -> float:
    """In-distribution accuracy below which a model counts as not having learned the task:
    twice the chance of picking one of the episode's items, and at least 50%."""
    return max(0.5, 2.0 / n_objects)


def _ratio(s: float, p: float) -> float:
    if p > 0:
        return s / p
    return float("inf") if s > 0 else float("nan")


def report_markdown(tables: dict[str, list[dict]], summary: dict, cfg_dict: dict, seconds: float | None = None) -> str:
    t = cfg_dict["task"]
    id_set = f"text@{t['n_objects']}"
    sets = [id_set] + [f"text@{n}" for n in t["ood_objects"]]
    extra = sorted({r["set"] for r in tables["accuracy"]} - set(sets))
    acc = _group(tables["accuracy"], ("regime", "set"), "acc")
    regimes = _ordered({r["regime"] for r in tables["accuracy"]})
    seeds = sorted({r["seed"] for r in tables["accuracy"]})
    lines = [f"# Binding study: {cfg_dict['name']}", "",
             f"Decoder {cfg_dict['model']['n_layers']} layers x d_model {cfg_dict['model']['d_model']}, "
             f"{cfg_dict['model']['n_heads']} heads, FFN {cfg_dict['model']['d_ff']}, RoPE; pools "
             f"{t['n_colours']} colours / {t['n_shapes']} shapes / {t['n_items']} items; {t['n_objects']} objects "
             f"in distribution, OOD {list(t['ood_objects'])}; image pools {cfg_dict['image']['colours']} colours x "
             f"{cfg_dict['image']['shapes']} shapes ({cfg_dict['image']['encoder']}). Steps: text "
             f"{cfg_dict['train']['text_steps']}, image {cfg_dict['train']['image_steps']}, mix "
             f"{cfg_dict['train']['mix_steps']} ({cfg_dict['train']['mix_frac']:.0%} slot), batch "
             f"{cfg_dict['train']['batch_size']}. Seeds {seeds}." + (f" Wall time {seconds / 60:.1f} min." if seconds else ""),
             "", "## Accuracy (%, mean ± 95% t-interval over seeds)", "",
             "| regime | " + " | ".join(sets + ["OOD mean"] + extra) + " |",
             "|---" * (len(sets) + len(extra) + 2) + "|"]
    for regime in regimes:
        a = summary["accuracy"].get(regime, {})
        cells = [_fmt(*acc.get((regime, s), (float("nan"),) * 3)[:2]) for s in sets]
        cells.append(_fmt(a.get("ood_mean", float("nan")), a.get("ood_ci", float("nan"))))
        cells += [_fmt(*acc.get((regime, s), (float("nan"),) * 3)[:2]) for s in extra]
        lines.append(f"| {regime} | " + " | ".join(cells) + " |")
    lines += ["", "`phase1` is the shared text-only segment before the curriculum; `text` continues on text for the "
              "same number of steps as the other regimes' curriculum.", "",
              f"Chance: 1/{t['n_items']} over items (whole-vocabulary argmax is scored); a model that only learned to "
              f"pick one of the episode's items scores 1/n ({100 / t['n_objects']:.1f}% at n={t['n_objects']}).", "",
              "## Next to the brief", "",
              "| quantity | brief | here |", "|---|---|---|"]
    s = summary["accuracy"]
    if "text" in s:
        lines.append(f"| text-only, in distribution | ~{BRIEF['text_id']:.0f} | {_fmt(s['text']['id'], float('nan'))} |")
        lines.append(f"| text-only, OOD | {BRIEF['text_ood']} | {_fmt(s['text']['ood_mean'], s['text']['ood_ci'])} |")
    if "image-text" in s:
        lines.append(f"| after image training (image-text), text OOD | {BRIEF['image_text_ood']} | "
                     f"{_fmt(s['image-text']['ood_mean'], s['image-text']['ood_ci'])} |")
    lines += ["", "The brief's OOD numbers come from its own OOD object counts and full training; compare the "
              "direction (image-text above text) rather than the values when the training budget differs.", ""]
    chance = 1.0 / t["n_objects"]
    unlearned = [r for r in regimes if s.get(r, {}).get("id", float("nan")) < learned_threshold(t["n_objects"])]
    if unlearned:
        lines += [f"**Not learned:** {', '.join(unlearned)} answer(s) in distribution below "
                  f"{100 * learned_threshold(t['n_objects']):.0f}% (chance among the episode's items: "
                  f"{100 * chance:.1f}%). These models have not learned the binding, so their OOD accuracies, "
                  "interchange ratios, knockout and probe results describe an untrained retrieval mechanism and "
                  "cannot be compared with the brief.", ""]
    # interchange
    if tables["interchange"]:
        sym = _group(tables["interchange"], ("regime", "layer"), "symbolic")
        pos = _group(tables["interchange"], ("regime", "layer"), "positional")
        src = _group(tables["interchange"], ("regime", "layer"), "source")
        layers = sorted({r["layer"] for r in tables["interchange"]})
        regs = _ordered({r["regime"] for r in tables["interchange"]})
        lines += ["## Interchange interventions (text, in distribution)", "",
                  "Per patch point (layer L = the residual entering block L; the last one is the output of the "
                  "last block): symbolic/positional ratio P(symbolic)/P(positional), then P(symbolic) / "
                  "P(positional) / P(source answer) in %. Mean over seeds.", "",
                  "| regime | " + " | ".join(f"L{l}" for l in layers) + " |", "|---" * (len(layers) + 1) + "|"]
        for regime in regs:
            cells = []
            for l in layers:
                r = _ratio(sym[(regime, l)][0], pos[(regime, l)][0])
                cells.append("-" if r != r else ("inf" if math.isinf(r) else f"{r:.2f}"))
            lines.append(f"| {regime} ratio | " + " | ".join(cells) + " |")
        for regime in regs:
            cells = [f"{100 * sym[(regime, l)][0]:.0f}/{100 * pos[(regime, l)][0]:.0f}/{100 * src[(regime, l)][0]:.0f}"
                     for l in layers]
            lines.append(f"| {regime} sym/pos/src | " + " | ".join(cells) + " |")
        lines.append("")
    if tables["knockout"]:
        ko = _group(tables["knockout"], ("regime", "route", "layer"), "acc")
        clean = _group(tables["knockout"], ("regime",), "acc_clean")
        lines += ["## Attention knockout (text, in distribution)", "",
                  "Accuracy (%) with the route cut in one layer window; the layer where the cut hurts most, "
                  "and the clean accuracy.", "", "| regime | clean | " + " | ".join(
                      f"{route} (worst layer: acc)" for route in sorted({r['route'] for r in tables['knockout']})) + " |",
                  "|---" * (2 + len({r['route'] for r in tables['knockout']})) + "|"]
        for regime in _ordered({r["regime"] for r in tables["knockout"]}):
            cells = [_fmt(clean[(regime,)][0], float("nan"))]
            for route in sorted({r["route"] for r in tables["knockout"]}):
                vals = {k[2]: v[0] for k, v in ko.items() if k[0] == regime and k[1] == route}
                worst = min(vals, key=vals.get)
                cells.append(f"L{worst}: {100 * vals[worst]:.1f}")
            lines.append(f"| {regime} | " + " | ".join(cells) + " |")
        lines.append("")
    if tables["probes"]:
        pr = _group(tables["probes"], ("regime", "target", "layer"), "acc")
        targets = sorted({r["target"] for r in tables["probes"]})
        chance = {r["target"]: r["chance"] for r in tables["probes"]}
        lines += ["## Linear probes at the query position (held-out accuracy, %)", "",
                  "Best layer (0 = embeddings, k = output of block k-1) and its accuracy; chance in brackets.", "",
                  "| regime | " + " | ".join(f"{t_} [{100 * chance[t_]:.1f}]" for t_ in targets) + " |",
                  "|---" * (len(targets) + 1) + "|"]
        for regime in _ordered({r["regime"] for r in tables["probes"]}):
            cells = []
            for t_ in targets:
                vals = {k[2]: v[0] for k, v in pr.items() if k[0] == regime and k[1] == t_}
                best = max(vals, key=vals.get)
                cells.append(f"L{best}: {100 * vals[best]:.1f}")
            lines.append(f"| {regime} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------- figures
def write_figures(tables: dict[str, list[dict]], out: Path) -> list[Path]:
    """Accuracy bars, interchange outcomes per layer, knockout and probe curves, training
    curves: HTML + PNG under ``out``."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from interp.plots import grouped_bars, save_figure

    out = Path(out)
    files: list[Path] = []
    if tables["accuracy"]:
        acc = _group(tables["accuracy"], ("regime", "set"), "acc")
        sets = sorted({r["set"] for r in tables["accuracy"]}, key=lambda s: (s.split("@")[0] != "text", s.split("@")[0],
                                                                            int(s.split("@")[1])))
        groups = {}
        for regime in _ordered({r["regime"] for r in tables["accuracy"]}):
            cats = [s for s in sets if (regime, s) in acc]
            groups[regime] = (cats, [100 * acc[(regime, s)][0] for s in cats],
                              [100 * acc[(regime, s)][1] for s in cats])
        fig = grouped_bars(groups, title="Binding task accuracy by training regime", xlabel="evaluation set (kind@objects)",
                           ylabel="accuracy (%)")
        for tr in fig.data:
            tr.marker.color = COLOURS.get(tr.name)
        fig.update_yaxes(range=[0, 100])
        files += save_figure(fig, out / "accuracy")
    if tables["interchange"]:
        regs = _ordered({r["regime"] for r in tables["interchange"]})
        fig = make_subplots(rows=1, cols=len(regs), subplot_titles=regs, shared_yaxes=True)
        palette = {"symbolic": "#2ca02c", "positional": "#9467bd", "source": "#8c564b", "base": "#1f77b4",
                   "other": "#bbbbbb"}
        for c, regime in enumerate(regs, start=1):
            rows = [r for r in tables["interchange"] if r["regime"] == regime]
            for outcome, colour in palette.items():
                g = _group(rows, ("layer",), outcome)
                layers = sorted(k[0] for k in g)
                fig.add_trace(go.Scatter(x=layers, y=[100 * g[(l,)][0] for l in layers], name=outcome,
                                         line=dict(color=colour), legendgroup=outcome, showlegend=c == 1,
                                         error_y=dict(type="data", array=[0 if g[(l,)][1] != g[(l,)][1] else 100 * g[(l,)][1]
                                                                          for l in layers])), row=1, col=c)
            fig.update_xaxes(title_text="patched layer", row=1, col=c)
        fig.update_yaxes(title_text="% of base runs", range=[0, 100], row=1, col=1)
        fig.update_layout(title="Interchange interventions: which answer the patched query state produces")
        files += save_figure(fig, out / "interchange", width=max(900, 330 * len(regs)), height=430)
        fig = go.Figure()
        for regime in regs:
            rows = [r for r in tables["interchange"] if r["regime"] == regime]
            g = _group(rows, ("layer",), "sym_share")
            layers = sorted(k[0] for k in g)
            fig.add_trace(go.Scatter(x=layers, y=[g[(l,)][0] for l in layers], name=regime, mode="lines+markers",
                                     line=dict(color=COLOURS.get(regime))))
        fig.update_layout(title="Symbolic share P(sym) / (P(sym) + P(pos)) per layer", xaxis_title="patched layer",
                          yaxis_title="symbolic share", yaxis_range=[0, 1])
        files += save_figure(fig, out / "symbolic_share")
    for table, key, ylabel, title in (("knockout", "route", "accuracy (%)", "Attention knockout by layer"),
                                      ("probes", "target", "held-out accuracy (%)", "Linear probes at the query position")):
        if not tables[table]:
            continue
        facets = sorted({r[key] for r in tables[table]})
        fig = make_subplots(rows=1, cols=len(facets), subplot_titles=facets, shared_yaxes=True)
        for c, facet in enumerate(facets, start=1):
            for regime in _ordered({r["regime"] for r in tables[table]}):
                rows = [r for r in tables[table] if r["regime"] == regime and r[key] == facet]
                g = _group(rows, ("layer",), "acc")
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
        files += save_figure(fig, out / table, width=max(900, 330 * len(facets)), height=430)
    if tables["training"]:
        fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "batch accuracy"))
        for regime in _ordered({r["regime"] for r in tables["training"]}):
            for seed in sorted({r["seed"] for r in tables["training"] if r["regime"] == regime}):
                rows = [r for r in tables["training"] if r["regime"] == regime and r["seed"] == seed]
                for c, key in ((1, "loss"), (2, "acc")):
                    fig.add_trace(go.Scatter(x=[r["step"] for r in rows], y=[r[key] for r in rows],
                                             name=f"{regime} s{seed}", legendgroup=f"{regime}{seed}", showlegend=c == 1,
                                             line=dict(color=COLOURS.get(regime))), row=1, col=c)
        fig.update_xaxes(title_text="step within segment")
        fig.update_layout(title="Training curves (segment 1 = phase1; segment 2 = each regime's curriculum)")
        files += save_figure(fig, out / "training", width=1100, height=430)
    return files


def write_outputs(cfg, results: list[dict], out: Path, seconds: float | None = None,
                  figures: bool = True) -> dict[str, Any]:
    """Write the tidy CSVs, ``report.md`` and ``figures/``; return the summary dict."""
    cfg_dict = cfg.to_dict() if hasattr(cfg, "to_dict") else cfg
    tables = tidy(results)
    for name, rows in tables.items():
        write_csv(out / f"{name}.csv", rows)
    summary = summarise(tables, cfg_dict)
    write_text(out / "report.md", report_markdown(tables, summary, cfg_dict, seconds))
    summary["figures"] = [str(p) for p in write_figures(tables, out / "figures")] if figures else []
    return summary
