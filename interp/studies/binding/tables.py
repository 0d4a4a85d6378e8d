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
        out["accuracy"][regime] = {"id": id_stat[0], "id_ci": id_stat[1],
                                   "ood_mean": m, "ood_ci": h, "seeds": n,
                                   **{s: acc[(regime, s)][0] for (rg, s) in acc if rg == regime}}
    sym = group(tables["interchange"], ("regime", "layer"), "symbolic")
    pos = group(tables["interchange"], ("regime", "layer"), "positional")
    for regime in ordered({r["regime"] for r in tables["interchange"]}):
        layers = sorted(k[1] for k in sym if k[0] == regime)
        out["ratio"][regime] = {int(l): ratio(sym[(regime, l)][0], pos[(regime, l)][0]) for l in layers}
    out["brief"] = BRIEF
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


def ratio(s: float, p: float) -> float:
    if p > 0:
        return s / p
    return float("inf") if s > 0 else float("nan")
