"""Tables, report and figures of the taxonomic study, from its tidy rows."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from interp.io import write_csv, write_text
from interp.metrics import mean_ci, pearson
from interp.plots import grouped_bars, line_with_ci, save_figure, scatter_groups

# Published macro F1 x100 on unseen hypernym pairs (brief, section A; DINOv2, 3 seeds).
PUBLISHED = {
    "Qwen3-0.6B original": {"10%": 90.0, "30%": 87.5, "50%": 84.7, "70%": 80.7, "90%": 76.9, "100%": 74.1},
    "Qwen3-0.6B within": {"10%": 89.8, "30%": 86.8, "50%": 83.7, "70%": 83.6, "90%": 79.5, "100%": 73.7},
    "Qwen3-0.6B across": {"10%": 46.6, "30%": 48.1, "50%": 48.3, "70%": 46.9, "90%": 48.3, "100%": 46.4},
    "Qwen3-0.6B random-init": {"10%": 84.9, "30%": 76.3, "50%": 68.0, "70%": 57.9, "90%": 49.4, "100%": 45.2},
}


def _condition(row: dict) -> str:
    return "random-init" if row["lm_init"] == "random" else row["world"]


def _fmt(mean: float, half: float) -> str:
    if mean != mean:
        return "-"
    return f"{mean:.1f}" if half != half else f"{mean:.1f} ± {half:.1f}"


def aggregate(rows: list[dict]) -> dict[str, Any]:
    """Means with 95% t-intervals over (hypernym x seed) rows, per condition and ablation."""
    cells: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    rates: dict[str, float] = {}
    for r in rows:
        key = (_condition(r), r["ablation"])
        rates[r["ablation"]] = r["rate"]
        if r["hypernym"] == "<leaf>":
            cells[key]["leaf"].append(r["f1"])
        else:
            cells[key][r["split"]].append(r["f1"])
            cells[key][f"chance_{r['split']}"].append(r["chance_f1"])
    table = {}
    for key, parts in cells.items():
        table[key] = {name: mean_ci(vals) for name, vals in parts.items()}
    return {"cells": table, "rates": rates}


def grid_markdown(agg: dict[str, Any], metric: str = "unseen") -> str:
    cells, rates = agg["cells"], agg["rates"]
    cols = sorted(rates, key=lambda a: (not a.endswith("%"), rates[a], a))
    conds = [c for c in ("original", "within", "across", "random-init") if any(k[0] == c for k in cells)]
    lines = ["| condition | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for c in conds:
        vals = [_fmt(*cells[(c, a)][metric][:2]) if (c, a) in cells and metric in cells[(c, a)] else "" for a in cols]
        lines.append(f"| {c} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def published_markdown() -> str:
    cols = ["10%", "30%", "50%", "70%", "90%", "100%"]
    lines = ["| published | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for name, vals in PUBLISHED.items():
        lines.append(f"| {name} | " + " | ".join(f"{vals[c]:.1f}" for c in cols) + " |")
    return "\n".join(lines)


def depth_table(rows: list[dict]) -> dict[tuple[str, str, int], tuple[float, float, int]]:
    groups: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    for r in rows:
        if r["hypernym"] != "<leaf>" and r["split"] == "unseen":
            groups[(_condition(r), r["ablation"], int(r["depth"]))].append(r["f1"])
    return {k: mean_ci(v) for k, v in sorted(groups.items())}


def coherence_table(rows: list[dict]) -> dict[tuple[str, str], dict[str, float]]:
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        if r["hypernym"] != "<leaf>" and r["split"] == "unseen":
            groups[(_condition(r), r["ablation"])].append(r)
    out = {}
    for key, rs in sorted(groups.items()):
        coh = [r["coherence"] for r in rs]
        r_, p = pearson([r["f1"] for r in rs], coh)
        out[key] = {"mean_coherence": float(np.nanmean(coh)) if rs else float("nan"),
                    "sd_coherence": float(np.nanstd(coh, ddof=1)) if len(rs) > 1 else float("nan"), "r": r_, "p": p,
                    "n": len(rs)}
    return out


def write_outputs(cfg, rows: list[dict], lm_only: list[dict], out: Path, source: str = "CONFIG") -> dict[str, Any]:
    """results.csv, lm_only.csv, report.md, figures/*.html|png; prints the grid."""
    out = Path(out)
    write_csv(out / "results.csv", rows)
    write_csv(out / "lm_only.csv", lm_only)
    agg = aggregate(rows)
    depth = depth_table(rows)
    coh = coherence_table(rows)
    figs = write_figures(agg, depth, rows, out / "figures")

    md = [f"# Taxonomic generalization: `{cfg.name}`", "",
          f"LM `{cfg.model.lm}`, encoder `{cfg.model.encoder}`, projector `{cfg.model.projector}`"
          f" (image tokens pooled to {cfg.model.pool_to or 'all'}), images `{cfg.data.images}`, taxonomy "
          f"`{cfg.data.taxonomy}`; seeds {list(cfg.grid.seeds)}; {cfg.train.epochs} epochs, batch {cfg.train.batch_size}.",
          "", "Macro F1 x100 on **unseen** hypernym pairs (mean over hypernyms x seeds, 95% t-interval):", "",
          grid_markdown(agg, "unseen"), "", "Chance line (the run's own predictions permuted within each hypernym):",
          "", grid_markdown(agg, "chance_unseen"), "", "Leaf F1 (sanity):", "", grid_markdown(agg, "leaf"), ""]
    if any("seen" in v for v in agg["cells"].values()):
        md += ["Seen hypernym pairs:", "", grid_markdown(agg, "seen"), ""]
    md += ["Published for reference (Qwen3-0.6B + DINOv2 on THINGS; not the same models or images):", "",
           published_markdown(), "", "## By hypernym depth (unseen)", "", "| condition | ablation | depth | F1 | n |",
           "|---|---|---|---|---|"]
    md += [f"| {c} | {a} | {d} | {_fmt(m, h)} | {n} |" for (c, a, d), (m, h, n) in depth.items()]
    md += ["", "## Visual coherence and F1 (unseen, per hypernym)", "",
           "| condition | ablation | mean coherence (sd) | r(F1, coherence) | p | n |", "|---|---|---|---|---|---|"]
    md += [f"| {c} | {a} | {v['mean_coherence']:.3f} ({v['sd_coherence']:.3f}) | {v['r']:.2f} | {v['p']:.3f} | {v['n']} |"
           for (c, a), v in coh.items()]
    if lm_only:
        md += ["", "## LM-only text test", "",
               "| LM | taxonomy | pairs | macro F1 | majority F1 | yes rate | pairwise acc | cloze acc |",
               "|---|---|---|---|---|---|---|---|"]
        md += [f"| {r['lm']} | {r['taxonomy']} | {r['n_pairs']} | {r['macro_f1']:.1f} | {r['majority_f1']:.1f} | "
               f"{r['yes_rate']:.2f} | {r['pairwise_acc']:.1f} | {r['cloze_acc']:.1f} |" for r in lm_only]
    md += ["", "## Figures", ""] + [f"- [{p.name}](figures/{p.name})" for p in figs if p.suffix == ".html"]
    md += ["", f"Reproduce: `python -m interp.run {source}` (config hash `{cfg.hash}`)."]
    write_text(out / "report.md", "\n".join(md) + "\n")
    print("\nMacro F1 x100, unseen hypernym pairs (mean ± 95% CI):")
    print(grid_markdown(agg, "unseen"))
    print("\nLeaf F1:")
    print(grid_markdown(agg, "leaf"))
    print("\nChance line:")
    print(grid_markdown(agg, "chance_unseen"))
    for r in lm_only:
        print(f"LM-only {r['lm']} on {r['taxonomy']}: macro F1 {r['macro_f1']:.1f} (majority {r['majority_f1']:.1f}), "
              f"pairwise {r['pairwise_acc']:.1f}%, cloze {r['cloze_acc']:.1f}%")
    print(f"\nreport: {out / 'report.md'}")
    return {"grid_unseen": {f"{c}|{a}": v.get("unseen") for (c, a), v in agg["cells"].items()},
            "grid_leaf": {f"{c}|{a}": v.get("leaf") for (c, a), v in agg["cells"].items()},
            "coherence": {f"{c}|{a}": v for (c, a), v in coh.items()}, "lm_only": lm_only}


def write_figures(agg, depth, rows, folder: Path) -> list[Path]:
    cells, rates = agg["cells"], agg["rates"]
    random_cols = sorted((a for a in rates if a.endswith("%")), key=lambda a: rates[a])
    series = {}
    for cond in ("original", "within", "across", "random-init"):
        pts = [(rates[a] * 100, *cells[(cond, a)]["unseen"][:2]) for a in random_cols
               if (cond, a) in cells and "unseen" in cells[(cond, a)]]
        if pts:
            series[cond] = tuple(zip(*pts))
    chance = [v["chance_unseen"][0] for v in cells.values() if "chance_unseen" in v]
    files: list[Path] = []
    if series:
        fig = line_with_ci(series, title="Unseen-hypernym F1 vs deprivation", xlabel="hypernym leaves removed (%)",
                           ylabel="macro F1 x100 (unseen pairs)",
                           hlines={"chance": float(np.mean(chance))} if chance else None)
        fig.update_yaxes(range=[0, 100])  # F1 is bounded; wide intervals of small groups are clipped
        files += save_figure(fig, folder / "f1_vs_deprivation")
    groups = defaultdict(lambda: ([], [], []))
    for r in rows:
        if r["hypernym"] != "<leaf>" and r["split"] == "unseen" and r["coherence"] == r["coherence"]:
            g = groups[f"{_condition(r)} {r['ablation']}"]
            g[0].append(r["coherence"])
            g[1].append(r["f1"])
            g[2].append(f"{r['hypernym']} (seed {r['seed']})")
    if groups:
        fig = scatter_groups(dict(groups), title="Per-hypernym F1 vs visual coherence",
                             xlabel="visual coherence (mean pairwise cosine)", ylabel="macro F1 x100 (unseen)")
        fig.update_yaxes(range=[0, 100])
        files += save_figure(fig, folder / "f1_vs_coherence")
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
        files += save_figure(fig, folder / "f1_by_depth")
    return files
