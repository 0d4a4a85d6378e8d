"""AtP, AtP (QK fix only) and AtP* against exact patching on one grid: how well each ranks
the cells that matter, and what it costs.

AtP* (:mod:`interp.analysis.atp_star`) is a prefilter: rank the cells by its estimate, then
verify the top ones with exact patching. What matters is therefore which cells each
estimator puts on top, so beside the correlations with the exact effects every row reports
the recall of the true top-``k`` cells (by ``|exact effect|``) among the estimator's top
``k``, its complement the false-negative rate (the true top cells the prefilter would drop,
what AtP* exists to cut), and how many cells one would verify, in the estimator's order,
before all true top-``k`` cells are found (the paper's cost measure, Kramár et al. 2024
section 5). Costs are wall times measured in the same call, over ``patch_grid``'s.
"""

from __future__ import annotations

import math
import time
from typing import Sequence

import numpy as np
import torch

from interp.analysis.atp_star import atp_star_grid, grid_positions
from interp.analysis.attribution import attribution_grid
from interp.analysis.patching import Metric, PatchInput, block_hooks, patch_grid
from interp.vlm import HookedVLM

ESTIMATORS = ("atp", "atp_qk", "atp_star")
"""``atp``: :func:`~interp.analysis.attribution.attribution_grid` (signed); ``atp_qk``: AtP with
the QK fix, no GradDrop (signed); ``atp_star``: QK fix + GradDrop (a magnitude)."""


def ranking(values: torch.Tensor) -> torch.Tensor:
    """Flat cell indices by decreasing ``|value|`` (ties: lower index first)."""
    v = values.detach().double().flatten().abs()
    return torch.as_tensor(np.argsort(-v.numpy(), kind="stable"))


def topk_recall(estimate: torch.Tensor, exact: torch.Tensor, k: int) -> float:
    """The share of the ``k`` cells with the largest ``|exact|`` that are among the ``k`` cells
    with the largest ``|estimate|`` (same-shape grids)."""
    truth = set(ranking(exact)[:k].tolist())
    return len(truth & set(ranking(estimate)[:k].tolist())) / k


def cells_to_cover(estimate: torch.Tensor, exact: torch.Tensor, k: int) -> int:
    """How many cells, taken in decreasing ``|estimate|``, must be verified before all ``k`` cells
    of largest ``|exact|`` are among them (``k`` for a perfect ranking, at most every cell)."""
    where = torch.empty(exact.numel(), dtype=torch.long)
    where[ranking(estimate)] = torch.arange(exact.numel())
    return int(where[ranking(exact)[:k]].max()) + 1


def correlations(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """(Pearson, Spearman) of two same-shape grids over their cells; NaN when either is constant."""
    from scipy.stats import pearsonr, spearmanr  # deferred: scipy.stats costs ~2 s; only the validations need it

    x, y = a.detach().double().flatten().numpy(), b.detach().double().flatten().numpy()
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan, math.nan
    return float(pearsonr(x, y).statistic), float(spearmanr(x, y).statistic)


def agreement(estimate: torch.Tensor, exact: torch.Tensor, k: int, *, signed: bool = True) -> dict[str, float]:
    """How an estimated ``[hooks, positions]`` grid matches the exact effects (patched minus
    corrupted metric): ``pearson`` / ``spearman`` with the signed effects (NaN for a magnitude,
    ``signed=False``), ``pearson_abs`` / ``spearman_abs`` of ``|estimate|`` with ``|exact|``,
    ``topk_recall``, ``false_negative_rate`` (``1 - topk_recall``) and ``cells_to_cover_topk``."""
    if estimate.shape != exact.shape:
        raise ValueError(f"estimate {tuple(estimate.shape)} and exact {tuple(exact.shape)} grids differ in shape")
    if not 1 <= k <= exact.numel():
        raise ValueError(f"k={k}: the top-k needs 1 <= k <= the number of cells ({exact.numel()})")
    pearson, spearman = correlations(estimate, exact) if signed else (math.nan, math.nan)
    pearson_abs, spearman_abs = correlations(estimate.abs(), exact.abs())
    recall = topk_recall(estimate, exact, k)
    return {"pearson": pearson, "spearman": spearman, "pearson_abs": pearson_abs, "spearman_abs": spearman_abs,
            "topk_recall": recall, "false_negative_rate": 1.0 - recall,
            "cells_to_cover_topk": cells_to_cover(estimate, exact, k)}


def compare_estimators(
    vlm: HookedVLM,
    clean: PatchInput,
    corrupted: PatchInput,
    metric: Metric,
    *,
    hooks: str | Sequence[str] | None = None,
    positions: Sequence[int] | None = None,
    k: int | None = None,
    drop_layers: Sequence[int] | None = None,
    estimators: Sequence[str] = ESTIMATORS,
) -> list[dict]:
    """Run exact patching (:func:`~interp.analysis.patching.patch_grid`) and each of
    ``estimators`` (:data:`ESTIMATORS`) on the same ``hooks x positions`` grid (defaults as
    :func:`patch_grid`) and return one tidy row per estimator (for a CSV): its
    :func:`agreement` with the exact effects at ``k`` (default a tenth of the cells, at least
    1), the grid size, its wall time, the exact grid's and their ratio ``cost_ratio``. AtP*'s
    GradDrop runs over ``drop_layers`` (default every layer)."""
    rows = block_hooks(vlm, hooks)
    positions = grid_positions(clean, corrupted, positions)
    unknown = [e for e in estimators if e not in ESTIMATORS]
    if unknown or not estimators:
        raise ValueError(f"estimators {list(estimators)}: choose from {list(ESTIMATORS)}")
    names = [n for _, n in rows]
    cells = len(names) * len(positions)
    k = max(1, cells // 10) if k is None else int(k)
    if not 1 <= k <= cells:
        raise ValueError(f"k={k}: the top-k needs 1 <= k <= the number of cells ({cells})")

    t = time.perf_counter()
    exact_values = patch_grid(vlm, clean, corrupted, metric, hooks=names, positions=positions)
    exact_seconds = time.perf_counter() - t

    out = []
    for name in estimators:
        t = time.perf_counter()
        if name == "atp":
            att = attribution_grid(vlm, clean, corrupted, metric, hooks=names, positions=positions)
            estimate, base, signed = att.grid, att.corrupted, True
        else:
            star = atp_star_grid(vlm, clean, corrupted, metric, hooks=names, positions=positions,
                                 drop_layers=() if name == "atp_qk" else drop_layers)
            estimate, base, signed = (star.signed, star.corrupted, True) if name == "atp_qk" else \
                (star.grid, star.corrupted, False)
        seconds = time.perf_counter() - t
        out.append({"estimator": name, "signed": signed, "hooks": len(names), "positions": len(positions),
                    "cells": cells, "k": k, **agreement(estimate, exact_values - base, k, signed=signed),
                    "seconds": seconds, "exact_seconds": exact_seconds, "cost_ratio": seconds / exact_seconds})
    return out
