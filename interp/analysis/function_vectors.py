"""Function vectors (Todd et al. 2024) on a HookedVLM, two routes over the same weights.

1. Mean head outputs: run in-context prompts, read each attention head's output at the last
   token and average over prompts: ``mean_out [n_layers, n_heads, d_model]`` (what the head
   adds to the residual stream) and ``mean_z [n_layers, n_heads, d_head]`` (its input to
   ``o_proj``).
2. Causal ranking: on prompts whose demonstration labels are shuffled, replace one head's
   last-token ``z`` by its mean and measure the gain in probability of the correct answer;
   the average over prompts is the head's average indirect effect (AIE).
3. The function vector is the sum of the mean outputs of the top-k heads by AIE; it is
   *added* to the residual stream (``blocks.{l}.hook_resid_post``) at the last token of a
   zero-shot query at a layer around L/3.

A head's contribution to the residual is exact, not approximated: ``o_proj`` is linear, so
``attn_out = sum_h z_h @ W_O[:, h]^T``; Gemma 2/3 then apply a post-attention RMSNorm, which
multiplies every coordinate by one per-token factor ``gamma / rms(attn_out)``, so each head's
share is its ``o_proj`` slice times that factor (Llama/Qwen: factor 1). The ``o_proj`` bias,
if any, belongs to no head and is left out (as in Todd et al.).

Routes: TransformerLens hooks (``blocks.{l}.attn.hook_z``, ``blocks.{l}.hook_resid_post``) and
nnsight over ``vlm.nnsight_model`` (``model.layers[l].self_attn.o_proj.input`` and
``model.layers[l].output``, a plain tensor in transformers 5). Both give the same numbers
(tests check it, and that the intervention changes the output).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from interp.analysis.task_vectors import batches, check_layers, last_token_index
from interp.models.hooked import unwrap
from interp.sequence import Segment
from interp.vlm import HookedVLM, capture


def _layer(vlm: HookedVLM, l: int):
    return unwrap(vlm.lm.hf.model.layers[l])


def head_shape(vlm: HookedVLM) -> tuple[int, int]:
    """(n_heads, d_head) of the LM's attention."""
    cfg = vlm.lm.hf.config
    n_heads = int(cfg.num_attention_heads)
    d_head = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // n_heads)
    return n_heads, d_head


def _post_attention_norm(vlm: HookedVLM, l: int):
    """The RMSNorm applied to the attention output before it joins the residual (Gemma 2/3's
    sandwich norm), or None (Llama's ``post_attention_layernorm`` is the pre-MLP norm)."""
    layer = _layer(vlm, l)
    if hasattr(layer, "pre_feedforward_layernorm") and hasattr(layer, "post_attention_layernorm"):
        return unwrap(layer.post_attention_layernorm)
    return None


@torch.no_grad()
def head_contributions(vlm: HookedVLM, layer: int, z: torch.Tensor) -> torch.Tensor:
    """What each head adds to the residual: ``z [n, n_heads, d_head] -> [n, n_heads, d_model]``.

    Exact: the contributions sum to the attention block's output (minus any ``o_proj`` bias).
    """
    n_heads, d_head = head_shape(vlm)
    if z.ndim != 3 or z.shape[1:] != (n_heads, d_head):
        raise ValueError(f"z must be [n, {n_heads}, {d_head}] for layer {layer}; got {tuple(z.shape)}")
    w_o = unwrap(_layer(vlm, layer).self_attn.o_proj).weight  # [d_model, n_heads * d_head]
    w = w_o.view(w_o.shape[0], n_heads, d_head).to(z.device, z.dtype)
    per_head = torch.einsum("nhk,dhk->nhd", z, w)
    norm = _post_attention_norm(vlm, layer)
    if norm is None:
        return per_head
    eps = float(getattr(norm, "eps", getattr(norm, "variance_epsilon", 1e-6)))
    d = per_head.shape[-1]
    gamma = norm(torch.ones(d, device=z.device, dtype=z.dtype)) * math.sqrt(1.0 + eps)  # (1 + w) or w
    total = per_head.sum(1)
    factor = torch.rsqrt(total.float().pow(2).mean(-1, keepdim=True) + eps).to(z.dtype) * gamma  # [n, d]
    return per_head * factor[:, None, :]


# ------------------------------------------------------------ mean activations
@torch.no_grad()
def last_token_z(vlm: HookedVLM, prompts: Sequence[list[Segment]], features: torch.Tensor | None = None, *,
                 layers: Sequence[int] | None = None, batch_size: int = 16, route: str = "tl") -> torch.Tensor:
    """Each head's ``z`` at the last token: ``[n_prompts, n_layers, n_heads, d_head]``."""
    layers = check_layers(vlm, layers)
    n_heads, d_head = head_shape(vlm)
    out = []
    for batch, feats in batches(vlm, prompts, features, batch_size):
        rows, last = torch.arange(len(batch)), last_token_index(batch)
        if route == "tl":
            got: dict[str, torch.Tensor] = {}
            names = [f"blocks.{l}.attn.hook_z" for l in layers]
            vlm.run_with_hooks(batch, feats, fwd_hooks=capture(got, names, at=last, device="cpu"), logits_at=None)
            zs = [got[n].float() for n in names]
        elif route == "nnsight":
            nm = vlm.nnsight_model
            saved = []
            with nm.trace(**vlm.nnsight_inputs(batch, feats)):
                for l in layers:
                    saved.append(nm.model.layers[l].self_attn.o_proj.input.save())
            zs = [s[rows, last].detach().float().cpu().view(len(batch), n_heads, d_head) for s in saved]
        else:
            raise ValueError(f"route={route!r}: use 'tl' or 'nnsight'")
        out.append(torch.stack(zs, 1))
    return torch.cat(out)


def mean_head_outputs(vlm: HookedVLM, prompts: Sequence[list[Segment]], features: torch.Tensor | None = None, *,
                      layers: Sequence[int] | None = None, batch_size: int = 16,
                      route: str = "tl") -> tuple[torch.Tensor, torch.Tensor]:
    """(mean_z ``[n_layers, n_heads, d_head]``, mean_out ``[n_layers, n_heads, d_model]``) at the
    last token over ``prompts``; ``mean_out`` is the mean of each prompt's exact head contribution."""
    layers = check_layers(vlm, layers)
    z = last_token_z(vlm, prompts, features, layers=layers, batch_size=batch_size, route=route)
    outs = torch.stack([head_contributions(vlm, l, z[:, i].to(vlm.lm.dtype)).float().mean(0)
                        for i, l in enumerate(layers)])
    return z.mean(0), outs


# ------------------------------------------------------------ indirect effect
@torch.no_grad()
def head_indirect_effects(vlm: HookedVLM, prompts: Sequence[list[Segment]], features: torch.Tensor | None,
                          answer_ids: Sequence[int], mean_z: torch.Tensor, *, layers: Sequence[int] | None = None,
                          batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Average indirect effect of each head on corrupted (label-shuffled) ``prompts``.

    For every head, its last-token ``z`` is replaced by ``mean_z`` and the probability of the
    prompt's answer token (``answer_ids[i]``) is read; AIE = mean over prompts of
    ``p(patched) - p(corrupted)``.

    Only the last token changes, and attention is causal, so nothing before it does: each
    prompt's prefix runs once into a KV cache, then its last token alone runs once per
    (layer, head) in one batch (``batch_size`` rows per pass; layers are chunked to fit). This
    is exact and about ``prompt length`` times cheaper than re-running whole prompts.

    Returns (aie ``[n_layers, n_heads]``, corrupted probabilities ``[n_prompts]``).
    """
    layers = check_layers(vlm, layers)
    n_heads, d_head = head_shape(vlm)
    if mean_z.shape != (len(layers), n_heads, d_head):
        raise ValueError(f"mean_z must be [{len(layers)}, {n_heads}, {d_head}]; got {tuple(mean_z.shape)}")
    if len(answer_ids) != len(prompts):
        raise ValueError(f"{len(answer_ids)} answer ids for {len(prompts)} prompts")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    lm = vlm.lm
    mz = mean_z.to(lm.device, lm.dtype)
    per_chunk = max(1, batch_size // n_heads)  # layers per pass
    chunks = [list(range(s, min(s + per_chunk, len(layers)))) for s in range(0, len(layers), per_chunk)]
    heads = torch.arange(n_heads)
    total = torch.zeros(len(layers), n_heads)
    base_all = []
    for i, prompt in enumerate(prompts):
        (batch, feats), = batches(vlm, [prompt], features, 1)
        emb = vlm.embed(batch, feats)  # [1, T, d_model], no padding
        T = emb.shape[1]
        if T < 2:
            raise ValueError(f"prompt {i} has {T} token(s): the indirect effect needs a prefix before the last token")
        ans = torch.tensor([int(answer_ids[i])])
        _, prefix = vlm.forward_with_kv(None, embeds=emb[:, :-1])  # once per prompt, shared by every chunk
        base = None
        for ci, chunk in enumerate(chunks):
            n_rows = len(chunk) * n_heads + (1 if ci == 0 else 0)  # + one unpatched row (the corrupted run)
            hooks = []
            for r, li in enumerate(chunk):
                sel = torch.arange(r * n_heads, (r + 1) * n_heads)

                def patch(t, hook, sel=sel, li=li):
                    t = t.clone()
                    t[sel.to(t.device), -1, heads.to(t.device)] = mz[li]
                    return t

                hooks.append((f"blocks.{layers[li]}.attn.hook_z", patch))
            out = vlm.forward(None, embeds=emb[:, -1:].expand(n_rows, -1, -1), past=prefix, fwd_hooks=hooks,
                              logits_at=None).resid[:, -1]
            p = _prob(vlm, out, ans.expand(n_rows))
            if ci == 0:
                base = p[-1]
                p = p[:-1]
            total[chunk] += (p - base).view(len(chunk), n_heads)
        base_all.append(base.view(1))
    return total / len(prompts), torch.cat(base_all)


def _prob(vlm: HookedVLM, resid: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Softmax probability of ``ids`` over the full vocabulary: ``[n, d] -> [n]``."""
    logits = vlm.lm.unembed(resid).float()
    return (logits.gather(1, ids.view(-1, 1).to(logits.device)).squeeze(1) - logits.logsumexp(-1)).exp().cpu()


def top_heads(aie: torch.Tensor, k: int, layers: Sequence[int] | None = None) -> list[tuple[int, int]]:
    """The ``k`` (layer, head) pairs with the largest AIE, best first."""
    n_l, n_h = aie.shape
    if not 1 <= k <= n_l * n_h:
        raise ValueError(f"k={k} must be in 1..{n_l * n_h} (layers x heads)")
    layers = list(layers) if layers is not None else list(range(n_l))
    idx = aie.flatten().argsort(descending=True)[:k]
    return [(layers[int(i) // n_h], int(i) % n_h) for i in idx]


def function_vector(mean_out: torch.Tensor, heads: Sequence[tuple[int, int]],
                    layers: Sequence[int] | None = None) -> torch.Tensor:
    """Sum of the mean outputs of ``heads``: ``[d_model]``."""
    layers = list(layers) if layers is not None else list(range(mean_out.shape[0]))
    pos = {l: i for i, l in enumerate(layers)}
    return torch.stack([mean_out[pos[l], h] for l, h in heads]).sum(0)


# ------------------------------------------------------------ adding the FV
@torch.no_grad()
def run_with_vector(vlm: HookedVLM, prompts: Sequence[list[Segment]], features: torch.Tensor | None,
                    vector: torch.Tensor, layer: int, *, route: str = "tl", batch_size: int = 32) -> torch.Tensor:
    """Add ``vector`` to the residual (output of block ``layer``) at each prompt's last token;
    return the normalised final residual there: ``[n_prompts, d_model]``.

    ``route="tl"``: a hook on ``blocks.{layer}.hook_resid_post``; ``route="nnsight"``: an
    in-place edit of ``model.layers[layer].output`` inside an nnsight trace.
    """
    vlm.lm.check_layer(layer)
    if vector.shape != (vlm.lm.d_model,):
        raise ValueError(f"vector must be [{vlm.lm.d_model}]; got {tuple(vector.shape)}")
    out = []
    for batch, feats in batches(vlm, prompts, features, batch_size):
        rows, last = torch.arange(len(batch)), last_token_index(batch)
        v = vector.to(vlm.lm.device, vlm.lm.dtype)
        if route == "tl":
            def hook(t, hook):
                t = t.clone()
                t[rows, last.to(t.device)] += v
                return t

            final = vlm.run_with_hooks(batch, feats, fwd_hooks=[(f"blocks.{layer}.hook_resid_post", hook)],
                                       logits_at=None).resid
            out.append(final[rows, last].float().cpu())
        elif route == "nnsight":
            nm = vlm.nnsight_model
            with nm.trace(**vlm.nnsight_inputs(batch, feats)):
                h = nm.model.layers[layer].output
                h[rows, last] += v
                final = nm.model.norm.output.save()
            out.append(final[rows, last].detach().float().cpu())
        else:
            raise ValueError(f"route={route!r}: use 'tl' or 'nnsight'")
    return torch.cat(out)


def default_layer(n_layers: int) -> int:
    """Todd et al.'s choice: the layer at about a third of the depth."""
    if n_layers < 1:
        raise ValueError(f"n_layers={n_layers} must be >= 1")
    return n_layers // 3
