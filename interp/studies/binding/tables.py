"""The binding study's tidy tables (from the per-run result dicts), their grouping over seeds
and the summary next to the brief's numbers.

Everything here reads the per-run result dicts (or the CSV tables written from them), so
``figures/binding.py`` can redraw the report and figures without re-running anything.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

from interp.io import read_csv
from interp.metrics import mean_ci

#: the brief's published numbers (section C of SEEDS.md)
BRIEF = {"text_ood": 37.2, "image_text_ood": 69.5, "text_id": 100.0}
REGIME_ORDER = ("phase1", "text", "noise-text", "image-text", "noise-image-text")
TABLES = ("accuracy", "interchange", "knockout", "probes", "training", "selection")


def tidy(results: Iterable[dict]) -> dict[str, list[dict]]:
    """Per-run result dicts -> the tidy tables (lists of flat rows; ``selection``: one row per
    candidate continuation rate with ``train.continuation_lrs``, else empty)."""
    tables: dict[str, list[dict]] = {t: [] for t in TABLES}
    for res in results:
        ev = res["eval"]
        regime, seed = ev["regime"], ev["seed"]
        for row in ev["rows"]:
            tables["accuracy"].append({"regime": regime, "seed": seed, **row})
        for h in res.get("history", []):
            tables["training"].append({"regime": regime, "seed": seed, **h})
        sel = res.get("selection")
        if sel:
            tables["selection"] += [{"regime": regime, "seed": seed, "lr": c["lr"], "set": c["set"],
                                     "val_acc": c["val_acc"], "chosen": c["lr"] == sel["lr"]} for c in sel["candidates"]]
        mech = res.get("mech")
        if mech:
            for key in ("interchange", "knockout", "probes"):
                tables[key] += [{"regime": regime, "seed": seed, **row} for row in mech[key]]
    return tables


def is_chosen(row: dict) -> bool:
    """Whether a ``selection`` row is the kept rate, in a result dict (a bool) or read back from
    selection.csv (the text "True")."""
    return row["chosen"] is True or str(row["chosen"]).lower() == "true"


def read_tables(folder: str | Path) -> dict[str, list[dict]]:
    """The tidy tables of a study folder, as :func:`tidy` made them (a missing table is empty:
    e.g. no interchange.csv when the mechanism analyses were off)."""
    folder = Path(folder)
    return {t: read_csv(folder / f"{t}.csv") if (folder / f"{t}.csv").exists() else [] for t in TABLES}


def ordered(regimes: Iterable[str]) -> list[str]:
    regs = set(regimes)
    return [r for r in REGIME_ORDER if r in regs] + sorted(regs - set(REGIME_ORDER))


def group(rows: list[dict], keys: tuple[str, ...], value: str) -> dict[tuple, tuple[float, float, int]]:
    """mean, CI half-width and count of ``value`` over seeds, per ``keys``."""
    acc: dict[tuple, list[float]] = defaultdict(list)
    for r in rows:
        v = r[value]
        if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isinf(v)):
            acc[tuple(r[k] for k in keys)].append(float(v))
    return {k: mean_ci(v) for k, v in acc.items()}


# --------------------------------------------------------------------- summary
def summarise(tables: dict[str, list[dict]], cfg_dict: dict) -> dict[str, Any]:
    acc = group(tables["accuracy"], ("regime", "set"), "acc")
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
    for regime in ordered({r["regime"] for r in tables["accuracy"]}):
        m, h, n = mean_ci(ood_mean.get(regime, []))
        id_stat = acc.get((regime, id_set), (float("nan"),) * 3)
        slot_sets = {f"{k}@{cfg_dict['task']['n_objects']}" for k in ("image", "noise-image", "noise-text")}
        by_seed = defaultdict(dict)  # the slot versions per seed: a mean can hide a seed that did not learn
        for r in tables["accuracy"]:
            if r["regime"] == regime and r["set"] in slot_sets:
                by_seed[r["set"]][str(r["seed"])] = r["acc"]
        out["accuracy"][regime] = {"id": id_stat[0], "id_ci": id_stat[1],
                                   "ood_mean": m, "ood_ci": h, "seeds": n,
                                   **{s: acc[(regime, s)][0] for (rg, s) in acc if rg == regime},
                                   **({"slot_by_seed": dict(by_seed)} if by_seed else {})}
    sym = group(tables["interchange"], ("regime", "layer"), "symbolic")
    pos = group(tables["interchange"], ("regime", "layer"), "positional")
    for regime in ordered({r["regime"] for r in tables["interchange"]}):
        layers = sorted(k[1] for k in sym if k[0] == regime)
        out["ratio"][regime] = {int(l): ratio(sym[(regime, l)][0], pos[(regime, l)][0]) for l in layers}
    out["brief"] = BRIEF
    out["claims"] = claims(tables, out, cfg_dict)
    return out


def learned_threshold(n_objects: int) -> float:
    """In-distribution accuracy below which a model counts as not having learned the task:
    twice the chance of picking one of the episode's items, and at least 50%."""
    return max(0.5, 2.0 / n_objects)


def not_learned(summary: dict, n_objects: int) -> list[str]:
    """The regimes whose in-distribution accuracy is below :func:`learned_threshold` (the
    markdown report's and the page's "not learned" flag)."""
    acc = summary["accuracy"]
    return [r for r in ordered(acc) if acc[r].get("id", float("nan")) < learned_threshold(n_objects)]


def slot_not_learned(summary: dict, n_objects: int) -> dict[str, tuple[str, float]]:
    """The regimes that did not learn their own slot version (``image@n``, ``noise-image@n``,
    ``noise-text@n`` in distribution, held out): regime -> (set, mean accuracy), below
    :func:`learned_threshold`; when the mean passes but a seed does not, (``"set (seed k)"``,
    that seed's accuracy), the lowest such seed. An image-text model that answers its held-out image episodes at
    chance has not read the images, so nothing it shows is an effect of visual data."""
    out = {}
    for regime, a in summary["accuracy"].items():
        for name, value in a.items():
            kind, _, n = name.partition("@")
            if (n == str(n_objects) and kind not in ("text", "") and isinstance(value, (int, float))
                    and value < learned_threshold(n_objects)):
                out[regime] = (name, float(value))
        if regime not in out:  # the mean passes; a seed below the line is flagged by itself
            for name, seeds in a.get("slot_by_seed", {}).items():
                low = [(v, k) for k, v in seeds.items() if v < learned_threshold(n_objects)]
                if low:
                    v, k = min(low)
                    out[regime] = (f"{name} (seed {k})", float(v))
    return out


def ratio(s: float, p: float) -> float:
    if p > 0:
        return s / p
    return float("inf") if s > 0 else float("nan")


# ------------------------------------------------------------ the brief's claims
def seed_values(tables: dict[str, list[dict]], cfg_dict: dict) -> dict[tuple[str, int], dict[str, float]]:
    """Per (regime, seed): text accuracy in distribution (``id``), the mean over the OOD object
    counts (``ood``) and the symbolic share of the interchange test averaged over the inner
    patch points (``share``: layers 1..n_layers-1; the embedding is a query swap and the
    output copies the source answer, so both ends are sanity checks, not readouts)."""
    id_set = f"text@{cfg_dict['task']['n_objects']}"
    ood_sets = {f"text@{n}" for n in cfg_dict["task"]["ood_objects"]}
    inner = set(range(1, int(cfg_dict["model"]["n_layers"])))
    acc: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in tables["accuracy"]:
        key = (r["regime"], int(r["seed"]))
        if r["set"] == id_set:
            acc[key]["id"].append(float(r["acc"]))
        elif r["set"] in ood_sets:
            acc[key]["ood"].append(float(r["acc"]))
    for r in tables["interchange"]:
        share = r.get("sym_share")
        if int(r["layer"]) in inner and isinstance(share, (int, float)) and share == share:
            acc[(r["regime"], int(r["seed"]))]["share"].append(float(share))
    return {k: {q: sum(v) / len(v) for q, v in d.items() if v} for k, d in acc.items()}


def paired_difference(values: dict[tuple[str, int], dict[str, float]], regime: str, base: str,
                      quantity: str) -> tuple[float, float, int]:
    """``quantity`` of ``regime`` minus that of ``base``, paired by seed: mean, 95% t half-width, seeds."""
    seeds = sorted(s for (r, s) in values if r == regime and (base, s) in values)
    diffs = [values[(regime, s)][quantity] - values[(base, s)][quantity] for s in seeds
             if quantity in values[(regime, s)] and quantity in values[(base, s)]]
    return mean_ci(diffs)


def direction(stat: tuple[float, float, int]) -> str:
    """``up`` / ``down`` when the 95% interval excludes 0, ``no detectable difference`` when it
    holds 0, ``one seed: no interval`` with a single seed, ``-`` with none."""
    m, h, n = stat
    if n == 0 or m != m:
        return "-"
    if n < 2 or h != h:
        return "one seed: no interval"
    return "up" if m - h > 0 else "down" if m + h < 0 else "no detectable difference"


def verdict(stat: tuple[float, float, int], expected: str) -> str:
    """A claim's verdict from its interval: ``holds`` when :func:`direction` is ``expected``
    (``up`` or ``down``), ``reversed`` for the other direction, ``does not hold`` when the
    interval holds 0, else ``undetermined (why)``."""
    d = direction(stat)
    if d in ("up", "down"):
        return "holds" if d == expected else "reversed"
    return "does not hold" if d == "no detectable difference" else f"undetermined ({d})"


def claims(tables: dict[str, list[dict]], summary: dict, cfg_dict: dict) -> list[dict[str, Any]]:
    """The brief's claims (section C) checked on this run: per claim the brief's number, the
    value here (mean, 95% half-width, seeds; differences paired by seed) and a verdict that
    reads only the interval (``holds``, ``does not hold``, ``reversed``, ``undetermined``)."""
    vals = seed_values(tables, cfg_dict)
    acc = summary["accuracy"]
    n_objects = int(cfg_dict["task"]["n_objects"])
    unlearned = {r: "not learned" for r in not_learned(summary, n_objects)}
    unlearned.update({r: f"did not learn its {name} version: {100 * v:.1f}% held out"
                      for r, (name, v) in slot_not_learned(summary, n_objects).items() if r not in unlearned})
    rows: list[dict[str, Any]] = []
    bar = 0.95

    def row(claim: str, brief: str, stat: tuple[float, float, int], says: str, unit: str = "%",
            regimes: tuple[str, ...] = ()) -> None:
        bad = [f"{r} {unlearned[r]}" for r in regimes if r in unlearned]
        if bad:  # a mechanism or a generalisation claim about a model that did not learn says nothing
            says = f"not comparable ({'; '.join(bad)})"
        rows.append({"claim": claim, "brief": brief, "here": stat[0], "ci": stat[1], "seeds": stat[2],
                     "unit": unit, "verdict": says})

    if "text" in acc:
        t = acc["text"]
        row("text-only training learns the task in distribution", f"~{BRIEF['text_id']:.0f}",
            (t["id"], t["id_ci"], t["seeds"]),
            "-" if t["id"] != t["id"] else "holds" if t["id"] >= bar else f"does not hold (below {100 * bar:.0f}%)")
        seeds = sorted(s for (r, s) in vals if r == "text")
        gap = mean_ci([vals[("text", s)]["ood"] - vals[("text", s)]["id"] for s in seeds
                       if {"ood", "id"} <= set(vals[("text", s)])])
        row(f"text-only OOD accuracy falls below in distribution (brief: {BRIEF['text_ood']}% OOD)",
            f"{BRIEF['text_ood'] - BRIEF['text_id']:+.1f} points", gap, verdict(gap, "down"), unit="points",
            regimes=("text",))
    lift = BRIEF["image_text_ood"] - BRIEF["text_ood"]
    if "image-text" in acc and "text" in acc:
        d_stat = paired_difference(vals, "image-text", "text", "ood")
        row("image-text continuation lifts text-only OOD accuracy (vs the text continuation)",
            f"{lift:+.1f} points ({BRIEF['text_ood']} -> {BRIEF['image_text_ood']})", d_stat, verdict(d_stat, "up"),
            unit="points", regimes=("text", "image-text"))
    for control in ("noise-text", "noise-image-text"):
        if control in acc and "text" in acc:
            d_stat = paired_difference(vals, control, "text", "ood")
            row(f"control: {control} continuation, text OOD accuracy vs the text continuation", "-", d_stat,
                direction(d_stat), unit="points", regimes=("text", control))
    if "image-text" in acc and "text" in acc and any("share" in v for v in vals.values()):
        d_stat = paired_difference(vals, "image-text", "text", "share")
        row("image training shifts binding toward symbolic (interchange symbolic share, inner layers, "
            "image-text vs text)", "up", d_stat, verdict(d_stat, "up"), unit="share", regimes=("text", "image-text"))
    return rows
