"""AtP*: attribution patching with its two fixes (Kramár et al. 2024, arXiv 2403.00745).

Plain attribution patching (:func:`interp.analysis.attribution.attribution_grid`) estimates
each (hook, position) cell of a patching grid by ``(clean - corrupted) . gradient`` on the
corrupted run. Kramár et al. find two ways this misses cells that matter (false
negatives) and fix both while keeping the cost at a few backward passes:

1. **QK fix** (their section 3.1.1). Queries and keys act only through their layer's
   attention logits, and the softmax after them saturates: where one key takes almost all
   the weight the gradient is ~0, so the linear estimate says "no effect" even when the
   patch moves the attention elsewhere. AtP* computes that layer's *exact* patched pattern
   (the corrupted queries against the clean key at ``t``, or the clean query at ``s``
   against the corrupted keys, through the real softmax) and is linear only from the
   pattern on: ``effect ~ (pattern_patched - pattern) . d metric / d pattern``.
2. **GradDrop** (section 3.1.2). A cell's direct effect and its effects through later
   layers can cancel in the gradient, giving an estimate near 0 although the patch matters.
   AtP* repeats the backward pass once per layer ``l`` with the gradient through layer
   ``l``'s writes to the residual stream (``blocks.{l}.hook_attn_out`` and
   ``blocks.{l}.hook_mlp_out``) set to zero, and scores a cell by
   ``sum_l |estimate_l| / (L - 1)`` over the ``L`` dropped layers (their eq. 11; the paper
   averages this over prompt pairs, here there is one pair). The ``L - 1``: for a node inside
   layer ``l`` the drop of ``l`` gives 0, so the score is the mean of the other drops'
   magnitudes; no other correction is applied. A path that cancels another survives in the
   drops that remove the other, so the sum of absolute values does not vanish. The score is
   a magnitude for ranking cells (the paper's ``c(n)``), not a signed effect;
   :attr:`AtPStar.signed` keeps the signed QK-fixed estimate.

Granularity. The paper's attention nodes are each head's query, key and value at each
token. The rows of our grids are full hook names and the columns positions, summed over
heads (as :func:`~interp.analysis.attribution.attribution_grid` does), so the QK fix applies
to the rows whose patch at a position changes *only* that position's queries (or keys) of
one layer: ``blocks.{i}.attn.hook_q`` / ``attn.q.hook_out`` / ``attn.hook_rot_q`` and the
key counterparts (:func:`qk_role`). Such a patch changes nothing in the forward pass but
row ``s`` (query) or column ``t`` (key) of that layer's logits, for every head; the heads'
patterns are independent, so "exact pattern, linear after it" for all heads at once is the
sum of the per-head estimates the paper defines: the head sum loses nothing. The other rows
(``hook_resid_pre``, ``hook_attn_out``, ``attn.hook_v``, ``hook_mlp_out``...) keep the linear
estimate (with GradDrop): a residual-stream patch also moves the values, the MLP and every
later layer, so an exact softmax for one layer's queries/keys would fix one nonlinearity
among many, and the paper does not define that estimator.

The logits are recomputed from the rotated queries/keys the model used (``attn.hook_rot_q``
/ ``attn.hook_rot_k``) with the layer's scaling and softcap
(:meth:`interp.models.hooked.HookedLM.attention_scale`), and the recomputation is checked
against the corrupted run's own ``attn.hook_attn_scores`` and ``attn.hook_pattern``: an
attention computed differently fails loudly instead of giving wrong numbers.

Cost: one clean forward, one corrupted forward whose graph is kept, one full backward pass
(nothing dropped: the QK-fixed AtP) and one partial pass per dropped layer ``l``, from
``blocks.{l}.hook_resid_post`` down (:func:`run_gradients`; about half of ``L`` full passes),
and per QK row ``O(heads * pos^2)`` arithmetic (the key fix uses leave-one-out sums, not one
softmax per patched key). It does not grow with the number of grid rows, so it pays off
against exact patching on large grids, not on a few rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from interp.analysis.patching import Metric, PatchInput, block_hooks
from interp.vlm import HookedVLM

QUERY_POINTS = ("attn.hook_q", "attn.q.hook_out", "attn.hook_rot_q")
KEY_POINTS = ("attn.hook_k", "attn.k.hook_out", "attn.hook_rot_k")
DROP_POINTS = ("hook_attn_out", "hook_mlp_out")
"""A layer's writes to the residual stream: GradDrop zeroes the gradient flowing back through them."""


def qk_role(name: str) -> str | None:
    """``"query"`` / ``"key"`` for a full hook name whose patch at a position changes only that
    position's query / key vectors of one layer (the rows the QK fix applies to), else None."""
    m = re.fullmatch(r"blocks\.\d+\.(.+)", name)
    point = m.group(1) if m else ""
    return "query" if point in QUERY_POINTS else "key" if point in KEY_POINTS else None


# ------------------------------------------------------------------ the QK fix, pure tensors
def attention_logits(q: torch.Tensor, k: torch.Tensor, scaling: float, softcap: float | None = None) -> torch.Tensor:
    """Attention logits before the mask, in float64: ``q [q_pos, heads, d_head]`` and
    ``k [k_pos, kv_heads, d_head]`` (rotated) -> ``[heads, q_pos, k_pos]`` =
    ``scaling * q . k``, softcapped when ``softcap`` is set; head ``h`` reads kv head
    ``h // (heads / kv_heads)`` (grouped-query attention, as ``repeat_kv``)."""
    heads, kv_heads = q.shape[1], k.shape[1]
    if heads % kv_heads:
        raise ValueError(f"{heads} query heads cannot share {kv_heads} key heads evenly")
    k = k.double().repeat_interleave(heads // kv_heads, dim=1)
    x = torch.einsum("qhd,khd->hqk", q.double(), k) * scaling
    return softcap * torch.tanh(x / softcap) if softcap else x


def visible(scores: torch.Tensor) -> torch.Tensor:
    """Bool ``[heads, q, k]``: the entries of attention logits the mask leaves (masked ones
    are ``-inf`` or the dtype's minimum, as the bridge writes them)."""
    return scores > torch.finfo(scores.dtype).min / 2


def _exclusive_sums(v: torch.Tensor) -> torch.Tensor:
    """``[..., k]`` -> ``[..., k]``: the sum of every entry but the ``t``-th, without subtracting it."""
    zero = torch.zeros_like(v[..., :1])
    before = torch.cat([zero, v.cumsum(-1)[..., :-1]], -1)
    after = torch.cat([v.flip(-1).cumsum(-1).flip(-1)[..., 1:], zero], -1)
    return before + after


@dataclass(frozen=True)
class KeyPatternChange:
    """The exact change of one layer's attention pattern when the key at each of ``positions``
    (``[P]``) is patched, as a linear map on pattern gradients (:meth:`effects`).

    With key ``t`` patched only logit ``t`` of each (head, query) row moves, so the row's other
    weights are all rescaled by one factor: ``others_delta [heads, q, P]`` is the change of their
    total weight, ``key_delta [heads, q, P]`` the change of key ``t``'s weight (both 0 where the
    mask hides ``t`` from the query); ``weights [heads, q, k]`` are ``exp(logit - row max)``
    (0 where masked), to average the gradient over the other keys."""

    positions: torch.Tensor
    weights: torch.Tensor
    others_delta: torch.Tensor
    key_delta: torch.Tensor

    def effects(self, grad: torch.Tensor) -> torch.Tensor:
        """``grad [heads, q, k]`` (d metric / d pattern) -> ``[P]``: the sum over heads and queries
        of ``(patched pattern - pattern) . grad`` for each patched key."""
        g = grad.double()
        num = _exclusive_sums(self.weights * g)[..., self.positions]
        den = _exclusive_sums(self.weights)[..., self.positions]
        mean_other = torch.where(den > 0, num / den.clamp(min=torch.finfo(den.dtype).tiny), 0.0)
        return (self.others_delta * mean_other + self.key_delta * g[..., self.positions]).sum((0, 1))


def key_pattern_change(scores: torch.Tensor, new_logits: torch.Tensor, positions: Sequence[int]) -> KeyPatternChange:
    """``scores [heads, q, k]``: one layer's attention logits, mask included (model dtype:
    :func:`visible`); ``new_logits [heads, q, P]``: each query's logit against the patched key at
    ``positions[j]`` (before the mask). Exact softmax arithmetic in float64, stable when a row
    saturates (no ``1 - p`` of a weight near 1 is ever formed)."""
    pos = torch.as_tensor(list(positions), dtype=torch.long)
    seen = visible(scores)
    x = scores.double().masked_fill(~seen, float("-inf"))
    top = x.amax(-1, keepdim=True).clamp(min=torch.finfo(torch.float64).min)  # a fully masked row stays finite
    w = torch.exp(x - top)  # [heads, q, k]
    seen_t = seen[..., pos]
    new = torch.where(seen_t, new_logits.double(), top)  # masked entries are not used; keep them finite
    shift = torch.maximum(new, top)  # per (row, patched key): no exp overflows
    rest = _exclusive_sums(w)[..., pos] * torch.exp(top - shift)  # the other keys' total weight
    mine, new = w[..., pos] * torch.exp(top - shift), torch.exp(new - shift)
    total, total_new = rest + mine, rest + new
    ok = seen_t & (total > 0)
    total, total_new = total.clamp(min=torch.finfo(total.dtype).tiny), total_new.clamp(min=torch.finfo(total.dtype).tiny)
    others_delta = torch.where(ok, rest / total_new - rest / total, 0.0)
    key_delta = torch.where(ok, new / total_new - mine / total, 0.0)
    return KeyPatternChange(pos, w, others_delta, key_delta)


@dataclass(frozen=True)
class QueryPatternChange:
    """The exact change of one layer's attention pattern when the query at each of
    ``positions`` (``[P]``) is patched: only that query's row moves, ``delta [heads, P, k]`` is
    new minus old row."""

    positions: torch.Tensor
    delta: torch.Tensor

    def effects(self, grad: torch.Tensor) -> torch.Tensor:
        """``grad [heads, q, k]`` -> ``[P]``: sum over heads of ``(new row - row) . grad``."""
        return (self.delta * grad.double()[:, self.positions]).sum((0, 2))


def query_pattern_change(scores: torch.Tensor, new_logits: torch.Tensor, positions: Sequence[int]
                         ) -> QueryPatternChange:
    """``scores [heads, q, k]`` as :func:`key_pattern_change`; ``new_logits [heads, P, k]``: the
    patched query at ``positions[j]`` against every key (before the mask)."""
    pos = torch.as_tensor(list(positions), dtype=torch.long)
    seen = visible(scores)[:, pos]
    old = scores.double()[:, pos].masked_fill(~seen, float("-inf"))
    new = new_logits.double().masked_fill(~seen, float("-inf"))
    any_seen = seen.any(-1, keepdim=True)
    delta = torch.where(any_seen, torch.softmax(new, -1) - torch.softmax(old, -1), 0.0).nan_to_num(0.0)
    return QueryPatternChange(pos, delta)


# ------------------------------------------------------------------------ GradDrop, gradients
class _DropGradient(torch.autograd.Function):
    """Identity forward; backward passes the gradient on unless ``state["dropped"] == layer``."""

    @staticmethod
    def forward(ctx, t, state, layer):  # noqa: D102
        ctx.state, ctx.layer = state, layer
        return t.clone()

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        return (torch.zeros_like(grad) if ctx.state["dropped"] == ctx.layer else grad), None, None


def drop_hooks(layers: Sequence[int], state: dict) -> list[tuple[str, Callable]]:
    """Forward hooks on each layer's writes to the residual stream (``blocks.{l}.hook_attn_out``,
    ``blocks.{l}.hook_mlp_out``) that change nothing forward and, in a backward pass run while
    ``state["dropped"] == l``, stop the gradient flowing back through layer ``l`` (it still
    flows around it, through the residual stream). Put them after any hook that saves these
    activations: a saved write of the dropped layer then gets gradient 0."""
    def gate(layer: int):
        return lambda t, hook: _DropGradient.apply(t, state, layer)

    return [(f"blocks.{l}.{point}", gate(l)) for l in layers for point in DROP_POINTS]


@dataclass
class RunGradients:
    """One run's activations and the metric's gradients with respect to them.

    ``acts[name]``: ``[pos, ...]`` (batch row 0, detached); ``grads[d][name]``: the same
    shape, from backward pass ``d`` -- ``d = 0`` with nothing dropped, ``d = j + 1`` with
    ``drop_layers[j]`` dropped; ``metric``: the metric of the run (scalar)."""

    acts: dict[str, torch.Tensor]
    grads: list[dict[str, torch.Tensor]]
    drop_layers: list[int]
    metric: float


def block_layer(name: str) -> int | None:
    """The block index of a ``blocks.{i}.*`` hook name, None for a top-level hook."""
    m = re.match(r"blocks\.(\d+)\.", name)
    return int(m.group(1)) if m else None


def run_gradients(vlm: HookedVLM, inp: PatchInput, metric: Metric, names: Sequence[str], *,
                  drop_layers: Sequence[int] = (), saved_only: Sequence[str] = ()) -> RunGradients:
    """Run ``inp`` once through ``vlm`` keeping the graph, then one backward pass with nothing
    dropped and one per layer of ``drop_layers`` (GradDrop, :func:`drop_hooks`), each giving
    ``d metric / d activation`` at every full hook name of ``names``; ``saved_only``: hooks
    whose activations are kept too, without gradients.

    Dropping layer ``l`` cannot change the gradient of anything after it, and everything up to
    it reaches the metric only through ``blocks.{l}.hook_resid_post`` (all positions): so the
    pass for ``l`` starts there, from the undropped gradient, and runs down to the earliest
    of ``names`` at or before ``l`` (none: no pass; the undropped gradients are it). About half
    the work of ``len(drop_layers)`` full backward passes when the names span the model."""
    names = [vlm.lm.check_hook(n) for n in dict.fromkeys(names)]
    only = [vlm.lm.check_hook(n) for n in dict.fromkeys(saved_only) if n not in names]
    layers = [vlm.lm.check_layer(int(l)) for l in drop_layers]
    if len(set(layers)) != len(layers):
        raise ValueError(f"drop_layers {list(drop_layers)} repeats a layer")
    where = {n: block_layer(n) for n in names}
    shortcut = all(l is not None for l in where.values())  # a top-level name: plain full passes
    cuts = {l: f"blocks.{l}.hook_resid_post" for l in layers} if shortcut else {}
    wanted = list(dict.fromkeys(names + list(cuts.values())))
    saved: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(t, hook):
            saved[name] = t
            return t  # returned: a hook with a head-axis conversion (attn.hook_q...) uses its copy only then

        return hook

    def grads_of(outputs, inputs, grad_outputs=None) -> dict[str, torch.Tensor]:
        got = torch.autograd.grad(outputs, [saved[n] for n in inputs], grad_outputs=grad_outputs,
                                  retain_graph=True, allow_unused=True)
        return {n: torch.zeros_like(saved[n]) if g is None else g for n, g in zip(inputs, got)}

    state: dict = {"dropped": None}
    embeds = vlm.embed(inp.batch, inp.features).detach().requires_grad_(True)
    with torch.enable_grad():
        resid = vlm.run_with_hooks(inp.batch, embeds=embeds, logits_at=None,
                                   fwd_hooks=[(n, keep(n)) for n in wanted + only] + drop_hooks(layers, state)).resid
        m = metric(resid, inp.batch)[0]
        missing = [n for n in wanted if n not in saved or not saved[n].requires_grad]
        missing += [n for n in only if n not in saved]
        if missing:
            raise RuntimeError(f"hooks {missing} did not fire, or (for gradients) are off the metric's path")
        full = grads_of(m, wanted)
        passes = [full]
        for layer in layers:
            state["dropped"] = layer
            if not shortcut:
                passes.append(grads_of(m, names))
                continue
            up = [n for n in names if where[n] <= layer]
            passes.append({**full, **(grads_of(saved[cuts[layer]], up, full[cuts[layer]]) if up else {})})
        state["dropped"] = None
    return RunGradients(acts={n: saved[n][0].detach() for n in names + only},
                        grads=[{n: g[n][0].detach() for n in names} for g in passes],
                        drop_layers=layers, metric=float(m.detach()))


def graddrop_score(per_drop: torch.Tensor) -> torch.Tensor:
    """GradDrop's score (Kramár et al. eq. 11): ``per_drop [drops, ...]``, the signed estimates
    with one layer's gradient dropped each -> ``[...]`` ``sum_l |estimate_l| / (drops - 1)``."""
    if per_drop.ndim < 1 or per_drop.shape[0] < 2:
        raise ValueError(f"GradDrop needs the estimates of at least two dropped layers (it divides by their number "
                         f"minus one); got shape {tuple(per_drop.shape)}")
    return per_drop.abs().sum(0) / (per_drop.shape[0] - 1)


# ----------------------------------------------------------------------------------- AtP*
@dataclass
class AtPStar:
    """AtP* over a ``[hooks, positions]`` grid.

    ``grid``: the AtP* score, ``>= 0``, in metric units -- :func:`graddrop_score` of
    ``per_drop`` (or ``|signed|`` without GradDrop); rank cells by it. ``signed``: the
    estimated effect with the QK fix and nothing dropped (patched minus corrupted metric, as
    :func:`~interp.analysis.attribution.attribution_grid`). ``per_drop [len(drop_layers),
    hooks, positions]``: the signed estimates with each layer's gradient dropped.
    ``qk_fixed[i]``: row ``i`` used the QK fix. ``clean`` / ``corrupted``: the metric on the
    unpatched runs."""

    grid: torch.Tensor
    signed: torch.Tensor
    per_drop: torch.Tensor
    drop_layers: list[int]
    hooks: list[str]
    positions: list[int]
    qk_fixed: list[bool]
    clean: float
    corrupted: float


def grid_positions(clean: PatchInput, corrupted: PatchInput, positions: Sequence[int] | None) -> list[int]:
    """The grid's positions (default every position), checked: same-shape inputs, in range."""
    if clean.batch.shape != corrupted.batch.shape:
        raise ValueError(f"clean and corrupted inputs differ in shape {clean.batch.shape} vs "
                         f"{corrupted.batch.shape}; attribution patching needs aligned positions")
    n_pos = clean.batch.shape[1]
    out = list(range(n_pos)) if positions is None else [int(p) for p in positions]
    bad = [p for p in out if not 0 <= p < n_pos]
    if bad or not out:
        raise ValueError(f"positions {bad or out} out of range 0..{n_pos - 1} (need at least one)")
    return out


def attention_names(layer: int) -> dict[str, str]:
    """The hooks of block ``layer``'s attention the QK fix reads."""
    return {k: f"blocks.{layer}.attn.hook_{k}" for k in ("rot_q", "rot_k", "attn_scores", "pattern")}


def check_logits(vlm: HookedVLM, layer: int, scores: torch.Tensor, pattern: torch.Tensor, q: torch.Tensor,
                 k: torch.Tensor) -> None:
    """Raise unless :func:`attention_logits` of the run's rotated ``q``/``k`` reproduce its
    logits ``scores [heads, q, k]`` and their softmax its ``pattern``: the QK fix is exact only
    for attention computed that way."""
    scaling, cap = vlm.lm.attention_scale(layer)
    seen = visible(scores)
    ours = attention_logits(q, k, scaling, cap)
    theirs = scores.double()
    scale = float(theirs[seen].abs().max()) if bool(seen.any()) else 1.0
    err = float((ours - theirs)[seen].abs().max()) if bool(seen.any()) else 0.0
    p_err = float((torch.softmax(theirs.masked_fill(~seen, float("-inf")), -1).nan_to_num(0.0)
                   - pattern.double()).abs().max())
    if err > 1e-3 * max(scale, 1.0) or p_err > 1e-3:
        raise RuntimeError(f"layer {layer}: the QK fix cannot reproduce this model's attention (logits off by {err:.3g}, "
                           f"pattern by {p_err:.3g}); its attention is not softmax(softcap(scaling * q_rot . k_rot) + "
                           "mask). Use qk_fix=False")


def atp_star_grid(
    vlm: HookedVLM,
    clean: PatchInput,
    corrupted: PatchInput,
    metric: Metric,
    *,
    hooks: str | Sequence[str] | None = None,
    positions: Sequence[int] | None = None,
    qk_fix: bool = True,
    drop_layers: Sequence[int] | None = None,
) -> AtPStar:
    """AtP* estimate of patching the clean activation of each of ``hooks`` (full per-block names,
    :func:`~interp.analysis.patching.block_hooks`; default ``blocks.{i}.hook_resid_pre`` of every
    layer) into the corrupted run at each of ``positions`` (default all).

    ``qk_fix``: exact attention pattern for the query/key rows (:func:`qk_role`); the others
    are linear. ``drop_layers``: GradDrop over these layers (default every layer; ``()`` for
    none, then ``grid = |signed|``; otherwise at least two). With ``qk_fix=False`` and
    ``drop_layers=()`` this is :func:`~interp.analysis.attribution.attribution_grid`.
    """
    rows = block_hooks(vlm, hooks)
    positions = grid_positions(clean, corrupted, positions)
    drops = list(range(vlm.lm.n_layers)) if drop_layers is None else [int(l) for l in drop_layers]
    if len(drops) == 1:
        raise ValueError(f"drop_layers={drops}: GradDrop needs at least two layers (its score divides by their number "
                         "minus one); pass () for no GradDrop")
    names = [n for _, n in rows]
    roles = [qk_role(n) if qk_fix else None for n in names]
    qk_layers = sorted({layer for (layer, _), r in zip(rows, roles) if r})
    attn = {layer: attention_names(layer) for layer in qk_layers}
    for layer in qk_layers:
        for name in attn[layer].values():
            vlm.lm.check_hook(name)
    extra = [attn[l][k] for l in qk_layers for k in ("rot_q", "rot_k", "attn_scores")]
    patterns = [attn[l]["pattern"] for l in qk_layers]

    with torch.no_grad():
        out, clean_cache = vlm.run_with_cache(clean.batch, clean.features, logits_at=None,
                                              names=list(dict.fromkeys(names + [attn[l][k] for l in qk_layers
                                                                                 for k in ("rot_q", "rot_k")])))
        m_clean = float(metric(out.resid, clean.batch)[0])
    run = run_gradients(vlm, corrupted, metric, names + patterns, drop_layers=drops, saved_only=extra)

    changes: dict[tuple[int, str], KeyPatternChange | QueryPatternChange] = {}
    for layer in qk_layers:
        a = attn[layer]
        scores, q, k = run.acts[a["attn_scores"]], run.acts[a["rot_q"]], run.acts[a["rot_k"]]
        check_logits(vlm, layer, scores, run.acts[a["pattern"]], q, k)
        scaling, cap = vlm.lm.attention_scale(layer)
        q_clean, k_clean = clean_cache[a["rot_q"]][0], clean_cache[a["rot_k"]][0]
        changes[layer, "key"] = key_pattern_change(
            scores, attention_logits(q, k_clean[positions], scaling, cap), positions)
        changes[layer, "query"] = query_pattern_change(
            scores, attention_logits(q_clean[positions], k, scaling, cap), positions)

    pos = torch.tensor(positions)
    estimates = torch.empty(1 + len(drops), len(names), len(positions))
    for i, ((layer, name), role) in enumerate(zip(rows, roles)):
        if role:
            change, pattern = changes[layer, role], attn[layer]["pattern"]
            for d, grads in enumerate(run.grads):
                estimates[d, i] = change.effects(grads[pattern]).float().cpu()
        else:
            delta = (clean_cache[name][0, pos].float() - run.acts[name][pos].float())  # [positions, ...]
            for d, grads in enumerate(run.grads):
                estimates[d, i] = (delta * grads[name][pos].float()).flatten(1).sum(1).cpu()
    signed, per_drop = estimates[0], estimates[1:]
    grid = graddrop_score(per_drop) if drops else signed.abs()
    return AtPStar(grid=grid, signed=signed, per_drop=per_drop, drop_layers=drops, hooks=names, positions=positions,
                   qk_fixed=[r is not None for r in roles], clean=m_clean, corrupted=run.metric)
