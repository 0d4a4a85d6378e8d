"""Activation patching over a HookedVLM: one generic, batched loop.

Like TransformerLens's ``patching`` module, one function covers every hook point and
position set; unlike it, a whole row of the grid (all positions of one layer) runs in ONE
forward pass (the batch axis holds the patched copies), the run starts at the patched
layer from the cached corrupted residual (blocks before it are skipped, not recomputed),
and the metric reads two unembedding rows, not the full vocabulary.

Semantics follow TransformerLens: run the *corrupted* input, write the *clean*
activation at (hook, position), read the metric. ``normalise`` maps the metric to
0 (= corrupted) .. 1 (= clean).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from interp.sequence import Batch
from interp.vlm import HookedVLM

Metric = Callable[[torch.Tensor, Batch], torch.Tensor]
"""metric(final normalised residual [n, pos, d_model], batch of n rows) -> [n]"""


def logit_diff_metric(vlm: HookedVLM, good: int, bad: int) -> Metric:
    """Logit of ``good`` minus logit of ``bad`` at each row's last text token."""
    w = vlm.lm.unembed_rows(torch.tensor([good, bad]))

    def metric(resid: torch.Tensor, batch: Batch) -> torch.Tensor:
        last = resid[torch.arange(resid.shape[0]), batch.last("text").to(resid.device)]
        logits = last @ w.to(resid.device).T
        if vlm.lm.softcap:
            logits = torch.tanh(logits / vlm.lm.softcap) * vlm.lm.softcap
        return logits[:, 0] - logits[:, 1]

    return metric


@dataclass
class PatchInput:
    """One input (a single sequence): its batch (1 row) and image features (or None)."""

    batch: Batch
    features: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if len(self.batch) != 1:
            raise ValueError(f"a patch input is one sequence; got a batch of {len(self.batch)}")


def _repeat(batch: Batch, n: int) -> Batch:
    return Batch(**{k: v.expand(n, -1) for k, v in vars(batch).items()})


def _check_hook(vlm: HookedVLM, hook: str) -> str:
    """``hook`` is a per-block suffix such as ``hook_resid_pre``, ``hook_attn_out``, ``hook_mlp_out``."""
    if "{" in hook or hook.startswith("blocks."):
        raise ValueError(f"pass the per-block hook suffix (e.g. 'hook_resid_pre'), not {hook!r}")
    vlm.lm.check_hook(f"blocks.0.{hook}")
    return hook


@torch.no_grad()
def patch_grid(
    vlm: HookedVLM,
    clean: PatchInput,
    corrupted: PatchInput,
    metric: Metric,
    *,
    hook: str = "hook_resid_pre",
    layers: Sequence[int] | None = None,
    positions: Sequence[int] | None = None,
    max_batch: int = 64,
    normalise: bool = False,
) -> torch.Tensor:
    """Patch clean activations into the corrupted run at every (layer, position).

    Clean and corrupted must have the same length (same token/image layout). Returns
    ``[len(layers), len(positions)]`` metric values (or normalised 0..1 scores).
    """
    lm = vlm.lm
    hook = _check_hook(vlm, hook)
    layers = list(range(lm.n_layers)) if layers is None else [lm.check_layer(int(l)) for l in layers]
    if clean.batch.shape != corrupted.batch.shape:
        raise ValueError(f"clean and corrupted inputs differ in shape {clean.batch.shape} vs {corrupted.batch.shape}; "
                         "patching needs aligned positions")
    n_pos = clean.batch.shape[1]
    positions = list(range(n_pos)) if positions is None else [int(p) for p in positions]
    bad = [p for p in positions if not 0 <= p < n_pos]
    if bad:
        raise ValueError(f"positions {bad} out of range 0..{n_pos - 1}")
    names = [f"blocks.{l}.hook_resid_pre" for l in layers] + [f"blocks.{l}.{hook}" for l in layers]
    _, clean_cache = vlm.run_with_cache(clean.batch, clean.features, names=sorted(set(names)), logits_at=None)
    _, corr_cache = vlm.run_with_cache(corrupted.batch, corrupted.features, names=sorted(set(names)), logits_at=None)
    base_clean = metric(vlm.lm(vlm.embed(clean.batch, clean.features), clean.batch.attention_mask), clean.batch)
    base_corr = metric(vlm.lm(vlm.embed(corrupted.batch, corrupted.features), corrupted.batch.attention_mask),
                       corrupted.batch)
    out = torch.empty(len(layers), len(positions))
    for li, layer in enumerate(layers):
        name = f"blocks.{layer}.{hook}"
        start = corr_cache[f"blocks.{layer}.hook_resid_pre"]
        src = clean_cache[name]
        for s in range(0, len(positions), max_batch):
            chunk = positions[s:s + max_batch]
            n = len(chunk)
            rows = torch.arange(n)
            cols = torch.tensor(chunk)

            def write(t, hook, rows=rows, cols=cols):
                t = t.clone()
                t[rows, cols] = src[0, cols].to(t.dtype)
                return t

            batch = _repeat(corrupted.batch, n)
            resid = lm(start.expand(n, -1, -1), batch.attention_mask, start_at_layer=layer,
                       fwd_hooks=[(name, write)])
            out[li, s:s + n] = metric(resid, batch).float().cpu()
    if normalise:
        out = (out - base_corr.cpu()) / (base_clean.cpu() - base_corr.cpu())
    return out


@torch.no_grad()
def patch_grid_reference(vlm: HookedVLM, clean: PatchInput, corrupted: PatchInput, metric: Metric, *,
                         hook: str = "hook_resid_pre", layers: Sequence[int] | None = None,
                         positions: Sequence[int] | None = None) -> torch.Tensor:
    """The one-forward-per-cell loop (as TransformerLens's helpers do it), full forward from
    the embeddings each time. For tests and benchmarks of :func:`patch_grid`."""
    lm = vlm.lm
    layers = list(range(lm.n_layers)) if layers is None else list(layers)
    positions = list(range(clean.batch.shape[1])) if positions is None else list(positions)
    _, clean_cache = vlm.run_with_cache(clean.batch, clean.features, names=[f"blocks.{l}.{hook}" for l in layers],
                                        logits_at=None)
    out = torch.empty(len(layers), len(positions))
    for li, layer in enumerate(layers):
        name = f"blocks.{layer}.{hook}"
        for pi, pos in enumerate(positions):
            def write(t, hook, name=name, pos=pos):
                t = t.clone()
                t[:, pos] = clean_cache[name][:, pos]
                return t

            res = vlm(corrupted.batch, corrupted.features, fwd_hooks=[(name, write)], logits_at=None)
            out[li, pi] = float(metric(res.resid, corrupted.batch)[0])
    return out


@torch.no_grad()
def cross_patch(
    vlm: HookedVLM,
    source: PatchInput,
    src_positions: Sequence[int],
    target: PatchInput,
    dst_positions: Sequence[int],
    metric: Metric,
    *,
    hook: str = "hook_resid_pre",
    layers: Sequence[int] | None = None,
) -> torch.Tensor:
    """Cross-modal patch: the mean ``hook`` activation over ``src_positions`` of ``source``
    (e.g. the concept word's text tokens) is written at every ``dst_positions`` of ``target``
    (e.g. its image tokens), layer by layer. Returns ``[len(layers)]`` metric values.
    All layers run in one batch per start layer group (each starts at its own layer)."""
    lm = vlm.lm
    hook = _check_hook(vlm, hook)
    layers = list(range(lm.n_layers)) if layers is None else [lm.check_layer(int(l)) for l in layers]
    if not src_positions or not dst_positions:
        raise ValueError("cross_patch needs at least one source and one destination position")
    names = sorted({f"blocks.{l}.{hook}" for l in layers} | {f"blocks.{l}.hook_resid_pre" for l in layers})
    _, src_cache = vlm.run_with_cache(source.batch, source.features, names=names, logits_at=None)
    _, tgt_cache = vlm.run_with_cache(target.batch, target.features, names=names, logits_at=None)
    dst = torch.tensor(list(dst_positions))
    out = torch.empty(len(layers))
    for li, layer in enumerate(layers):
        name = f"blocks.{layer}.{hook}"
        vec = src_cache[name][0, list(src_positions)].mean(0)

        def write(t, hook, vec=vec):
            t = t.clone()
            t[:, dst] = vec.to(t.dtype)
            return t

        resid = lm(tgt_cache[f"blocks.{layer}.hook_resid_pre"], target.batch.attention_mask, start_at_layer=layer,
                   fwd_hooks=[(name, write)])
        out[li] = float(metric(resid, target.batch)[0])
    return out
