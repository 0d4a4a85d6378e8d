"""Activation patching over a HookedVLM: one generic, batched loop.

Like TransformerLens's ``patching`` module, one function covers every hook point and
position set; unlike it, a row of the grid (positions of one layer) runs in a few forward
passes (the batch axis holds the patched copies), each pass starts at the patched layer
from the cached corrupted residual (blocks before it are skipped, not recomputed) and
computes only the positions the patch can change (the corrupted run's keys/values serve
the ones before), cells where clean equals corrupted are not run, and the metric reads
two unembedding rows, not the full vocabulary.

Semantics follow TransformerLens: run the *corrupted* input, write the *clean*
activation at (hook, position), read the metric. ``normalise`` maps the metric to
0 (= corrupted) .. 1 (= clean).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from interp.sequence import Batch
from interp.vlm import HookedVLM

Metric = Callable[[torch.Tensor, Batch], torch.Tensor]
"""metric(final normalised residual [n, pos, d_model], batch of n rows) -> [n]"""


def logit_diff_metric(vlm: HookedVLM, good: int, bad: int) -> Metric:
    """Logit of ``good`` minus logit of ``bad`` at each row's last text token."""
    ids = torch.tensor([good, bad])

    def metric(resid: torch.Tensor, batch: Batch) -> torch.Tensor:
        last = resid[torch.arange(resid.shape[0]), batch.last("text").to(resid.device)]
        logits = vlm.lm.unembed(last, ids)
        return logits[:, 0] - logits[:, 1]

    return metric


def metric_value(vlm: HookedVLM, inp: "PatchInput", metric: Metric) -> float:
    """The metric on one unpatched run (no logits beyond the metric's rows)."""
    with torch.no_grad():
        out = vlm.forward(inp.batch, inp.features, logits_at=None)
    return float(metric(out.resid, inp.batch)[0])


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


def block_hooks(vlm: HookedVLM, hooks: str | Sequence[str] | None = None) -> list[tuple[int, str]]:
    """``[(layer, name)]`` for full canonical per-block hook names (``blocks.{i}.hook_resid_pre``,
    ``blocks.{i}.hook_attn_out``, ``blocks.{i}.hook_mlp_out``...), in the order given, each
    checked against the model; one name is one row, ``None`` is ``blocks.{i}.hook_resid_pre``
    of every layer. The rows of the patching grids below are these hooks."""
    lm = vlm.lm
    if hooks is None:
        hooks = [f"blocks.{layer}.hook_resid_pre" for layer in range(lm.n_layers)]
    elif isinstance(hooks, str):
        hooks = [hooks]
    out = []
    for name in hooks:
        m = re.fullmatch(r"blocks\.(\d+)\.(.+)", str(name))
        if m is None:
            raise ValueError(f"hook {name!r}: patching takes per-block hook names blocks.{{i}}.<point>, e.g. "
                             f"'blocks.0.hook_resid_pre'")
        out.append((int(m.group(1)), lm.check_hook(str(name))))
    if not out:
        raise ValueError("no hooks to patch: pass at least one blocks.{i}.<point> name")
    return out


def plan_passes(positions: Sequence[int], cost: Callable[[list[int]], float], limit: Callable[[list[int]], bool]
                ) -> list[list[int]]:
    """Split sorted ``positions`` into contiguous groups (one forward pass each) minimising
    the summed ``cost(group)``, every group within ``limit(group)``. Exact dynamic programme:
    ``O(len(positions)^2)`` cost evaluations."""
    pos = sorted(positions)
    m = len(pos)
    best = [0.0] + [float("inf")] * m  # best[j]: the cheapest plan of the first j positions
    cut = [0] * (m + 1)
    for j in range(1, m + 1):
        for i in range(j - 1, -1, -1):
            group = pos[i:j]
            if not limit(group):
                break  # longer groups only grow
            c = best[i] + cost(group)
            if c < best[j]:
                best[j], cut[j] = c, i
        if best[j] == float("inf"):
            raise ValueError(f"position {pos[j - 1]} alone exceeds the pass limit")
    groups, j = [], m
    while j > 0:
        groups.append(pos[cut[j]:j])
        j = cut[j]
    return groups[::-1]


@dataclass(frozen=True)
class PackedPass:
    """Patched copies of one sequence packed into ONE row: the copy patched at position
    ``p`` holds only positions ``p..n_pos-1`` (the earlier ones equal the corrupted run's,
    whose keys/values stand in for them), copies side by side.

    ``pos [T]``: the original position of each packed token; ``copy [T]``: its copy;
    ``starts [copies]``: where each copy begins in the row (its patched token).
    """

    pos: torch.Tensor
    copy: torch.Tensor
    starts: torch.Tensor

    @classmethod
    def of(cls, patched: Sequence[int], n_pos: int) -> "PackedPass":
        pos = torch.cat([torch.arange(p, n_pos) for p in patched])
        copy = torch.cat([torch.full((n_pos - p,), i) for i, p in enumerate(patched)])
        lengths = torch.tensor([n_pos - p for p in patched])
        return cls(pos, copy, torch.cumsum(lengths, 0) - lengths)

    def mask(self, n_pos: int, key_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Additive mask ``[1, 1, T, n_pos + T]`` over (the corrupted run's ``n_pos`` keys,
        then the packed tokens): a token sees the corrupted keys before its copy's patched
        position and the earlier tokens of its own copy; ``key_mask [n_pos]`` drops padding."""
        first = self.pos[self.starts][self.copy]  # [T] the copy's patched position
        prefix = (torch.arange(n_pos)[None, :] < first[:, None]) & key_mask.bool().cpu()[None, :]
        own = (self.copy[:, None] == self.copy[None, :]) & (self.pos[None, :] <= self.pos[:, None])
        allowed = torch.cat([prefix, own], dim=1)
        out = torch.zeros(allowed.shape, dtype=dtype)
        return out.masked_fill_(~allowed, torch.finfo(dtype).min)[None, None]


@torch.no_grad()
def patch_grid(
    vlm: HookedVLM,
    clean: PatchInput,
    corrupted: PatchInput,
    metric: Metric,
    *,
    hooks: str | Sequence[str] | None = None,
    positions: Sequence[int] | None = None,
    max_batch: int = 64,
    normalise: bool = False,
    packed: bool | None = None,
    skip_identical: bool = True,
    max_tokens: int = 1024,
    pass_overhead: float = 64.0,
) -> torch.Tensor:
    """Patch clean activations into the corrupted run at every (hook, position).

    ``hooks``: full per-block hook names, one grid row each (:func:`block_hooks`; default
    ``blocks.{i}.hook_resid_pre`` of every layer). Clean and corrupted must have the same
    length (same token/image layout). Returns ``[len(hooks), len(positions)]`` metric values
    (or normalised 0..1 scores).

    Exact, and fast because nothing is computed that the patch cannot change:

    - blocks before the patched layer are skipped: each pass starts from the cached
      corrupted ``hook_resid_pre`` of that layer;
    - a patch at position ``p`` of a causal LM leaves the positions before ``p`` as in the
      corrupted run, so (``packed``) each patched copy computes only positions ``>= p`` and
      reads the corrupted run's keys/values for the others; the copies of a layer are packed
      side by side in one row with a block mask (:class:`PackedPass`), in passes of at most
      ``max_tokens`` tokens planned by :func:`plan_passes` (cost: tokens + attention pairs +
      ``pass_overhead`` tokens per pass);
    - a cell whose clean and corrupted activations are equal (a shared prefix) IS the
      corrupted run: its value is the corrupted metric, without a pass (``skip_identical``);
    - the metric reads a few unembedding rows, not the full vocabulary.

    ``packed=None``: packed unless a sliding attention window is shorter than the sequence
    (then up to ``max_batch`` full-length copies per pass, the plain batched loop).
    """
    lm = vlm.lm
    rows = block_hooks(vlm, hooks)
    if clean.batch.shape != corrupted.batch.shape:
        raise ValueError(f"clean and corrupted inputs differ in shape {clean.batch.shape} vs {corrupted.batch.shape}; "
                         "patching needs aligned positions")
    n_pos = clean.batch.shape[1]
    positions = list(range(n_pos)) if positions is None else [int(p) for p in positions]
    bad = [p for p in positions if not 0 <= p < n_pos]
    if bad:
        raise ValueError(f"positions {bad} out of range 0..{n_pos - 1}")
    if max_batch < 1 or max_tokens < n_pos:
        raise ValueError(f"max_batch {max_batch} (must be >= 1), max_tokens {max_tokens} (must be >= the sequence "
                         f"length {n_pos})")
    window = lm.sliding_window
    if packed is None:
        packed = window is None or n_pos <= window
    elif packed and window is not None and n_pos > window:
        raise ValueError(f"packed patching needs the sequence ({n_pos} positions) within the sliding window ({window})")
    names = sorted({f"blocks.{l}.hook_resid_pre" for l, _ in rows} | {n for _, n in rows})
    mask = corrupted.batch.attention_mask
    clean_out, clean_cache = vlm.run_with_cache(clean.batch, clean.features, names=names, logits_at=None)
    corr_cache: dict[str, torch.Tensor] = {}
    savers = [(n, lambda t, hook, n=n: corr_cache.__setitem__(n, t.detach())) for n in names]
    corr_resid, kv = vlm.forward_with_kv(corrupted.batch, corrupted.features, fwd_hooks=savers)
    for name in names:
        if clean_cache[name].shape[1] != n_pos:
            raise ValueError(f"hook {name!r} has shape {tuple(clean_cache[name].shape)}: patching needs the position "
                             f"axis second ([batch, pos, ...], pos = {n_pos}); attention patterns are not patchable here")
    base_clean = metric(clean_out.resid, clean.batch)
    base_corr = metric(corr_resid, corrupted.batch)
    if packed:
        attn = lm.attention_cost_ratio

        def cost(group: list[int]) -> float:
            t = sum(n_pos - p for p in group)
            return t + attn * t * (n_pos + t) + pass_overhead

        def limit(group: list[int]) -> bool:
            return sum(n_pos - p for p in group) <= max_tokens
    else:
        def cost(group: list[int]) -> float:
            return len(group) * n_pos + pass_overhead

        def limit(group: list[int]) -> bool:
            return len(group) <= max_batch

    out = torch.full((len(rows), len(positions)), float(base_corr[0]))
    where: dict[int, list[int]] = {}
    for i, p in enumerate(positions):
        where.setdefault(p, []).append(i)
    for li, (layer, name) in enumerate(rows):
        start = corr_cache[f"blocks.{layer}.hook_resid_pre"]
        src, tgt = clean_cache[name], corr_cache[name]
        todo = [p for p in where if not (skip_identical and torch.equal(src[0, p], tgt[0, p]))]
        for group in plan_passes(todo, cost, limit):
            n = len(group)
            cols = torch.tensor(group)
            if packed:
                pk = PackedPass.of(group, n_pos)
                dev = start.device

                def write(t, hook, at=pk.starts.to(dev), cols=cols):
                    t = t.clone()
                    t[0, at] = src[0, cols].to(t.dtype)
                    return t

                resid = vlm.forward(None, embeds=start[:, pk.pos.to(dev)], start_at_layer=layer, past=kv,
                                    attention_mask=pk.mask(n_pos, mask[0], start.dtype).to(dev),
                                    position_ids=pk.pos[None].to(dev), fwd_hooks=[(name, write)],
                                    logits_at=None).resid
                full = corr_resid.expand(n, -1, -1).clone()
                full[pk.copy.to(dev), pk.pos.to(dev)] = resid[0].to(full.dtype)
                resid = full
            else:
                def write(t, hook, copies=torch.arange(n), cols=cols):
                    t = t.clone()
                    t[copies, cols] = src[0, cols].to(t.dtype)
                    return t

                resid = vlm.forward(None, embeds=start.expand(n, -1, -1), attention_mask=mask.expand(n, -1),
                                    start_at_layer=layer, fwd_hooks=[(name, write)], logits_at=None).resid
            values = metric(resid, _repeat(corrupted.batch, n)).float().cpu()
            for v, p in zip(values, group):
                out[li, where[p]] = v
    if normalise:
        out = (out - base_corr.cpu()) / (base_clean.cpu() - base_corr.cpu())
    return out


@torch.no_grad()
def patch_grid_reference(vlm: HookedVLM, clean: PatchInput, corrupted: PatchInput, metric: Metric, *,
                         hooks: str | Sequence[str] | None = None,
                         positions: Sequence[int] | None = None) -> torch.Tensor:
    """The one-forward-per-cell loop (as TransformerLens's helpers do it), full forward from
    the embeddings each time. For tests and benchmarks of :func:`patch_grid`."""
    rows = block_hooks(vlm, hooks)
    positions = list(range(clean.batch.shape[1])) if positions is None else list(positions)
    _, clean_cache = vlm.run_with_cache(clean.batch, clean.features, names=[n for _, n in rows], logits_at=None)
    out = torch.empty(len(rows), len(positions))
    for li, (_, name) in enumerate(rows):
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
    hooks: str | Sequence[str] | None = None,
    average: bool = True,
) -> torch.Tensor:
    """Cross-modal patch: the mean activation at each of ``hooks`` (full per-block names,
    :func:`block_hooks`) over ``src_positions`` of ``source`` (e.g. the concept word's text
    tokens) is written at every ``dst_positions`` of ``target`` (e.g. its image tokens), one
    hook at a time, each run starting at its own block. Returns ``[len(hooks)]`` metric values.
    ``average=False`` writes position by position instead (``src_positions[i]`` ->
    ``dst_positions[i]``; equal lengths): patching several image tokens into another image's."""
    rows = block_hooks(vlm, hooks)
    if not src_positions or not dst_positions:
        raise ValueError("cross_patch needs at least one source and one destination position")
    if not average and len(src_positions) != len(dst_positions):
        raise ValueError(f"position-wise patching needs as many source as destination positions; got "
                         f"{len(src_positions)} and {len(dst_positions)}")
    names = sorted({n for _, n in rows} | {f"blocks.{l}.hook_resid_pre" for l, _ in rows})
    _, src_cache = vlm.run_with_cache(source.batch, source.features, names=names, logits_at=None)
    _, tgt_cache = vlm.run_with_cache(target.batch, target.features, names=names, logits_at=None)
    dst = torch.tensor(list(dst_positions))
    out = torch.empty(len(rows))
    for li, (layer, name) in enumerate(rows):
        vec = src_cache[name][0, list(src_positions)]  # [n_src, d]
        vec = vec.mean(0) if average else vec

        def write(t, hook, vec=vec):
            t = t.clone()
            t[:, dst] = vec.to(t.dtype)
            return t

        resid = vlm.run_with_hooks(target.batch, embeds=tgt_cache[f"blocks.{layer}.hook_resid_pre"],
                                   start_at_layer=layer, fwd_hooks=[(name, write)], logits_at=None).resid
        out[li] = float(metric(resid, target.batch)[0])
    return out
