"""The taxonomic study's tables from its tidy rows: the grid of means with intervals, by depth,
against visual coherence, paired against the chance line, and the learning table of the runs."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from interp.diagnostics import stage_history, verdict
from interp.io import read_csv, read_json
from interp.metrics import mean_ci, pearson


RESULT_COLUMNS = ("run_id", "world", "ablation", "rate", "lm_init", "seed", "hypernym", "split", "depth", "n", "f1",
                  "chance_f1", "yes_rate", "pairwise", "coherence")
# the numeric columns of results.csv, as read back (the others stay text)
RESULT_TYPES = {"rate": float, "seed": int, "depth": int, "n": int, "f1": float, "chance_f1": float, "yes_rate": float,
                "pairwise": float, "coherence": float}
CONDITIONS = ("original", "within", "across", "random-init")

# Published macro F1 x100 on unseen hypernym pairs (brief, section A; DINOv2, 3 seeds).
PUBLISHED = {
    "Qwen3-0.6B original": {"10%": 90.0, "30%": 87.5, "50%": 84.7, "70%": 80.7, "90%": 76.9, "100%": 74.1},
    "Qwen3-0.6B within": {"10%": 89.8, "30%": 86.8, "50%": 83.7, "70%": 83.6, "90%": 79.5, "100%": 73.7},
    "Qwen3-0.6B across": {"10%": 46.6, "30%": 48.1, "50%": 48.3, "70%": 46.9, "90%": 48.3, "100%": 46.4},
    "Qwen3-0.6B random-init": {"10%": 84.9, "30%": 76.3, "50%": 68.0, "70%": 57.9, "90%": 49.4, "100%": 45.2},
}


def read_results(path: Path) -> list[dict]:
    """The rows of a study's ``results.csv`` with their numbers typed (:data:`RESULT_TYPES`)."""
    return read_csv(path, RESULT_TYPES)


def condition_label(row: dict) -> str:
    return "random-init" if row["lm_init"] == "random" else row["world"]


def aggregate(rows: list[dict]) -> dict[str, Any]:
    """Means with 95% t-intervals over (hypernym x seed) rows, per condition and ablation."""
    cells: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    rates: dict[str, float] = {}
    for r in rows:
        key = (condition_label(r), r["ablation"])
        rates[r["ablation"]] = r["rate"]
        if r["hypernym"] == "<leaf>":
            cells[key]["leaf"].append(r["f1"])
        else:
            cells[key][r["split"]].append(r["f1"])
            cells[key][f"chance_{r['split']}"].append(r["chance_f1"])
            pw = r.get("pairwise")
            if isinstance(pw, float) and pw == pw:  # absent (older runs) or undefined (no pair): left out
                cells[key][f"pairwise_{r['split']}"].append(r["pairwise"])
    table = {}
    for key, parts in cells.items():
        table[key] = {name: mean_ci(vals) for name, vals in parts.items()}
    return {"cells": table, "rates": rates}


def depth_table(rows: list[dict]) -> dict[tuple[str, str, int], tuple[float, float, int]]:
    groups: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    for r in rows:
        if r["hypernym"] != "<leaf>" and r["split"] == "unseen":
            groups[(condition_label(r), r["ablation"], int(r["depth"]))].append(r["f1"])
    return {k: mean_ci(v) for k, v in sorted(groups.items())}


def coherence_table(rows: list[dict]) -> dict[tuple[str, str], dict[str, float]]:
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        if r["hypernym"] != "<leaf>" and r["split"] == "unseen":
            groups[(condition_label(r), r["ablation"])].append(r)
    out = {}
    for key, rs in sorted(groups.items()):
        coh = [r["coherence"] for r in rs]
        r_, p = pearson([r["f1"] for r in rs], coh)
        out[key] = {"mean_coherence": float(np.nanmean(coh)) if rs else float("nan"),
                    "sd_coherence": float(np.nanstd(coh, ddof=1)) if len(rs) > 1 else float("nan"), "r": r_, "p": p,
                    "n": len(rs)}
    return out


def learning_rows(out: Path, run_ids: list[str]) -> list[dict]:
    """One row per trained run from its ``train.json``: the last in-training diagnostics (train and
    held-out leaf F1, image-token collapse), the held-out leaf F1 at the first (before the readout
    stage, when it ran), steps of the readout stage and of the fine-tuning, seconds of both,
    warnings, warm start and prototypes."""
    table = []
    for rid in run_ids:
        path = out / "runs" / rid / "train.json"
        if not path.exists():
            continue
        t = read_json(path)
        history = stage_history(t)[0] or [{}]
        first, last = history[0], history[-1]
        proto = t.get("meta", {}).get("prototypes", {})
        readout = t.get("meta", {}).get("readout") or {}
        seconds = t.get("train_seconds", t.get("seconds_this_session")) or 0.0
        table.append({"run_id": rid, "readout_steps": readout.get("steps", 0), "steps": t["steps"],
                      "train_seconds": seconds + readout.get("train_seconds", 0.0),
                      "final_loss": t["final_loss"], "init_heldout_leaf_f1": first.get("heldout_leaf_f1"),
                      "train_leaf_f1": last.get("train_leaf_f1"), "heldout_leaf_f1": last.get("heldout_leaf_f1"),
                      "heldout_leaf_pairwise": last.get("heldout_leaf_pairwise"),
                      "token_cosine": last.get("token_cosine"), "centred_cosine": last.get("centred_cosine"),
                      "image_part": last.get("image_part"), "norm_ratio": last.get("norm_ratio"),
                      "warm_start": "prototypes" if t.get("meta", {}).get("warm_start") else "none",
                      "prototype_leaf_f1": proto.get("leaf_f1"), "prototype_hypernym_f1": proto.get("hypernym_macro_f1"),
                      "prototype_hypernym_pairwise": proto.get("hypernym_pairwise"),
                      "calibrated": calibration_text(t.get("calibration")),
                      "warnings": " | ".join(verdict(stage_history(t)[0]))})
    return table


def calibration_text(cal: dict | None) -> str:
    """One cell on a run's answer calibration (``train.json``'s ``calibration``; empty if it did not run)."""
    if not cal:
        return ""
    if not cal["applied"]:
        return f"no (answer mass {cal['answer_mass']:.2f})"
    return (f"yes (answer mass {cal['answer_mass']:.3f}; train Yes rate {cal['yes_rate_before']:.0f}% -> "
            f"{cal['yes_rate_after']:.0f}%)")


def paired_differences(rows: list[dict]) -> dict[str, dict[tuple[str, str], tuple[float, float, int]]]:
    """Per (condition, ablation), mean ± 95% t-interval over (unseen hypernym x seed) of
    ``vs_chance``: F1 minus the run's own chance line for the same hypernym; ``vs_original``:
    F1 minus the original world's F1 for the same hypernym and seed."""
    unseen = [r for r in rows if r["hypernym"] != "<leaf>" and r["split"] == "unseen"]
    f1 = {(condition_label(r), r["ablation"], r["hypernym"], r["seed"]): r["f1"] for r in unseen}
    vs_chance: dict[tuple[str, str], list[float]] = defaultdict(list)
    vs_original: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in unseen:
        c, a = condition_label(r), r["ablation"]
        vs_chance[(c, a)].append(r["f1"] - r["chance_f1"])
        ref = f1.get(("original", a, r["hypernym"], r["seed"]))
        if c != "original" and ref is not None:
            vs_original[(c, a)].append(r["f1"] - ref)
    return {"vs_chance": {k: mean_ci(v) for k, v in vs_chance.items()},
            "vs_original": {k: mean_ci(v) for k, v in vs_original.items()}}


def headline_rows(rows: list[dict]) -> list[dict]:
    """The headline table, one row per (condition, ablation): unseen-hypernym macro F1, the chance
    line, the paired difference from chance and from the original world (each ``(mean, half, n)``),
    seen and leaf F1, the unseen pairs' threshold-free pairwise % (chance 50), and the published
    number for the same condition and ablation (None if none)."""
    agg, diffs = aggregate(rows), paired_differences(rows)
    rates = agg["rates"]
    order = {c: i for i, c in enumerate(CONDITIONS)}
    keys = sorted(agg["cells"], key=lambda k: (order.get(k[0], len(order)), rates[k[1]], k[1]))
    nan = (float("nan"), float("nan"), 0)
    out = []
    for c, a in keys:
        cell = agg["cells"][(c, a)]
        out.append({"condition": c, "ablation": a, "rate": rates[a], "unseen": cell.get("unseen", nan),
                    "chance": cell.get("chance_unseen", nan), "vs_chance": diffs["vs_chance"].get((c, a), nan),
                    "vs_original": diffs["vs_original"].get((c, a), nan), "seen": cell.get("seen", nan),
                    "leaf": cell.get("leaf", nan), "n": cell.get("unseen", nan)[2],
                    "pairwise": cell.get("pairwise_unseen", nan),
                    "published": PUBLISHED.get(f"Qwen3-0.6B {c}", {}).get(a)})
    return out
