"""Attribution patching: the first-order (gradient) approximation of activation patching.

For a hook point ``h`` and position ``p``, exact patching measures
``metric(corrupted with clean h[p]) - metric(corrupted)``. Attribution patching replaces
it by the linear term of its Taylor expansion around the corrupted run::
    (h_clean[p] - h_corrupted[p]) . d metric / d h[p]   (evaluated on the corrupted run)

so one corrupted forward + backward and one clean forward give the whole
``hooks x positions`` grid (Nanda 2023; Syed et al. 2023). It is exact when the metric is
linear in the patched activation and degrades where attention or norms saturate, so
validate it against :func:`interp.analysis.patching.patch_grid` on a sample of cells
(:func:`compare_to_exact`) before trusting a grid.

The returned grid has the units of :func:`patch_grid` *minus the corrupted baseline*
(an effect, not a metric value); ``normalise=True`` divides by the clean-minus-corrupted
metric gap, as ``patch_grid(normalise=True)`` does after subtracting the baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from interp.analysis.patching import Metric, PatchInput, block_hooks, patch_grid


@dataclass
class Attribution:
    """``grid``: ``[hooks, positions]`` estimated effects, one row per full hook name in
    ``hooks``; ``clean`` / ``corrupted``: the metric on the unpatched runs (scalars)."""

    grid: torch.Tensor
    hooks: list[str]
    positions: list[int]
    clean: float
    corrupted: float
    normalised: bool = False

    def effects(self) -> torch.Tensor:
        """The grid in metric units (undoes ``normalise``): ``[hooks, positions]``."""
        return self.grid * (self.clean - self.corrupted) if self.normalised else self.grid


def attribution_grid(
    vlm,
    clean: PatchInput,
    corrupted: PatchInput,
    metric: Metric,
    *,
    hooks: str | Sequence[str] | None = None,
    positions: Sequence[int] | None = None,
    normalise: bool = False,
) -> Attribution:
    """Gradient estimate of patching the clean activation of each of ``hooks`` (full per-block
    names, :func:`~interp.analysis.patching.block_hooks`; default ``blocks.{i}.hook_resid_pre``
    of every layer) into the corrupted run at every (hook, position). Two forward passes and
    one backward pass in total.

    Activations with a head axis (``attn.hook_z [batch, pos, heads, d_head]``) are summed
    over heads and features: the estimate of patching all heads at that position.
    """
    rows = block_hooks(vlm, hooks)
    if clean.batch.shape != corrupted.batch.shape:
        raise ValueError(f"clean and corrupted inputs differ in shape {clean.batch.shape} vs "
                         f"{corrupted.batch.shape}; attribution patching needs aligned positions")
    n_pos = clean.batch.shape[1]
    positions = list(range(n_pos)) if positions is None else [int(p) for p in positions]
    bad = [p for p in positions if not 0 <= p < n_pos]
    if bad:
        raise ValueError(f"positions {bad} out of range 0..{n_pos - 1}")
    names = [n for _, n in rows]

    with torch.no_grad():
        out, clean_cache = vlm.run_with_cache(clean.batch, clean.features, names=names, logits_at=None)
        m_clean = float(metric(out.resid, clean.batch)[0])

    saved: dict[str, torch.Tensor] = {}
    embeds = vlm.embed(corrupted.batch, corrupted.features).detach().requires_grad_(True)
    with torch.enable_grad():
        resid = vlm.run_with_hooks(corrupted.batch, embeds=embeds, fwd_hooks=[(n, _keeper(n, saved)) for n in names],
                                   logits_at=None).resid
        m = metric(resid, corrupted.batch)
        m.sum().backward()
    m_corr = float(m[0].detach())

    pos = torch.tensor(positions)
    grid = torch.empty(len(names), len(positions))
    for i, name in enumerate(names):
        act = saved[name]
        if act.grad is None:
            raise RuntimeError(f"no gradient reached {name}: the hook's tensor is not on the metric's path")
        delta = clean_cache[name][0, pos].float() - act.detach()[0, pos].float()  # [positions, ...]
        grid[i] = (delta * act.grad[0, pos].float()).flatten(1).sum(1).cpu()
    if normalise:
        grid = grid / (m_clean - m_corr)
    return Attribution(grid=grid, hooks=names, positions=positions, clean=m_clean, corrupted=m_corr,
                       normalised=normalise)


def _keeper(name: str, saved: dict[str, torch.Tensor]):
    def hook(t, hook):
        if t.requires_grad:
            t.retain_grad()
        saved[name] = t
        # returned, not None: a hook with a head-axis conversion (attn.hook_q/k/v/z) hands us a
        # reshaped copy and uses it downstream only when the hook returns it
        return t

    return hook


@dataclass
class Agreement:
    """How well attribution matches exact patching on the sampled cells."""

    pearson: float
    spearman: float
    n_cells: int
    max_abs_error: float
    sign_agreement: float

    def as_dict(self) -> dict[str, float]:
        return dict(vars(self))


def sample_cells(n_layers: int, n_positions: int, n: int, seed: int = 0) -> list[tuple[int, int]]:
    """``n`` distinct (layer index, position index) cells, seeded (all cells if n >= grid size)."""
    total = n_layers * n_positions
    rng = np.random.default_rng(seed)
    flat = np.arange(total) if n >= total else np.sort(rng.choice(total, size=n, replace=False))
    return [(int(f) // n_positions, int(f) % n_positions) for f in flat]


def compare_to_exact(attribution: torch.Tensor, exact_effect: torch.Tensor) -> Agreement:
    """Agreement of ``[cells]`` attribution estimates with exact effects (patched minus corrupted)."""
    from scipy.stats import pearsonr, spearmanr  # deferred: scipy.stats costs ~2 s; only the AtP validation needs it

    a = attribution.double().flatten().numpy()
    e = exact_effect.double().flatten().numpy()
    if a.shape != e.shape or a.size < 3:
        raise ValueError(f"need >= 3 paired cells, got {a.shape} and {e.shape}")
    return Agreement(pearson=float(pearsonr(a, e).statistic), spearman=float(spearmanr(a, e).statistic),
                     n_cells=int(a.size), max_abs_error=float(np.abs(a - e).max()),
                     sign_agreement=float(np.mean(np.sign(a) == np.sign(e))))


def validate_attribution(vlm, clean: PatchInput, corrupted: PatchInput, metric: Metric, attribution: Attribution,
                         *, n_cells: int = 32, seed: int = 0) -> tuple[Agreement, list[dict]]:
    """Exact patching on ``n_cells`` sampled cells of an attribution grid (at its own hooks);
    returns the agreement and tidy rows (hook, layer, position, attribution, exact) for plots."""
    cells = sample_cells(len(attribution.hooks), len(attribution.positions), n_cells, seed)
    effects = attribution.effects()
    rows = []
    by_layer: dict[int, list[int]] = {}
    for li, pi in cells:
        by_layer.setdefault(li, []).append(pi)
    for li, pis in by_layer.items():
        name = attribution.hooks[li]
        exact = patch_grid(vlm, clean, corrupted, metric, hooks=[name],
                           positions=[attribution.positions[p] for p in pis])[0]
        for pi, value in zip(pis, exact.tolist()):
            rows.append({"hook": name, "layer": int(name.split(".")[1]), "position": attribution.positions[pi],
                         "attribution": float(effects[li, pi]),
                         "exact": value - attribution.corrupted})
    agreement = compare_to_exact(torch.tensor([r["attribution"] for r in rows]),
                                 torch.tensor([r["exact"] for r in rows]))
    return agreement, rows

