"""Measuring a trained SAE: reconstruction (explained variance), sparsity (L0, dead latents)
and the answer loss with the reconstruction spliced into the residual stream at its layer
(through :meth:`HookedVLM.run_with_hooks`, replacing ``blocks.{l}.hook_resid_post``)."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from interp.sequence import Batch
from interp.studies.sae.data import trained_mask
from interp.studies.sae.export import SaeLensSAE


def explained_variance(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """``1 - sum ||x - x_hat||^2 / sum ||x - mean(x)||^2`` over ``x, x_hat [n, d]``."""
    x, x_hat = x.double(), x_hat.double()
    total = (x - x.mean(0)).pow(2).sum()
    return float(1.0 - (x - x_hat).pow(2).sum() / total) if total > 0 else float("nan")


@torch.no_grad()
def encode_chunks(sae: SaeLensSAE, x: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """(values ``[n, k]``, latent indices ``[n, k]``) of ``x [n, d_in]``, chunk by chunk."""
    vals, idx = [], []
    for s in range(0, x.shape[0], chunk):
        v, i = sae.encode_topk(x[s:s + chunk])
        vals.append(v)
        idx.append(i)
    return torch.cat(vals), torch.cat(idx)


def firing_counts(vals: torch.Tensor, idx: torch.Tensor, d_sae: int) -> torch.Tensor:
    """``[d_sae]``: on how many tokens each latent is active (value > 0)."""
    return torch.bincount(idx[vals > 0], minlength=d_sae)


@torch.no_grad()
def quality(sae: SaeLensSAE, x: torch.Tensor) -> dict[str, float]:
    """Explained variance, L0 (mean active latents per token) and the share of latents never
    active, over ``x [n, d_in]``."""
    vals, idx = encode_chunks(sae, x)
    x_hat = sae.decode_topk(vals, idx)
    counts = firing_counts(vals, idx, sae.d_sae)
    return {"explained_variance": explained_variance(x, x_hat), "mse": float((x - x_hat).pow(2).sum(-1).mean()),
            "l0": float((vals > 0).sum(-1).float().mean()), "dead_frac": float((counts == 0).float().mean()),
            "n_tokens": int(x.shape[0])}


def replace_hook(fn: Callable[[torch.Tensor], torch.Tensor], mask: torch.Tensor) -> Callable:
    """A forward hook that sets the residual ``[batch, pos, d_model]`` at ``mask [batch, pos]``
    to ``fn(residual[mask])``; other positions pass through."""

    def hook(resid: torch.Tensor, hook=None) -> torch.Tensor:
        m = mask.to(resid.device)
        out = resid.clone()
        out[m] = fn(resid[m]).to(resid.dtype)
        return out

    return hook


def answer_loss(vlm, batch: Batch, features: torch.Tensor | None, fwd_hooks=()) -> tuple[float, int]:
    """(summed cross-entropy over the answer tokens, their count) with ``fwd_hooks`` active."""
    predicts, targets = batch.answer_targets()
    out = vlm.run_with_hooks(batch, features, fwd_hooks=list(fwd_hooks), logits_at=predicts)
    ce = nn.functional.cross_entropy(out.logits.float(), targets.to(out.logits.device), reduction="sum")
    return float(ce), int(targets.numel())


@torch.no_grad()
def splice_losses(vlm, batches: Sequence[tuple[Batch, torch.Tensor | None]], sae: SaeLensSAE, layer: int,
                  mean: torch.Tensor) -> dict[str, float]:
    """Mean answer loss clean, with the SAE's reconstruction spliced in at
    ``blocks.{layer}.hook_resid_post`` (image, text and answer positions: where it was
    trained) and with those positions mean-ablated (``mean [d_model]``); the share of the
    ablation's loss increase the SAE recovers."""
    name = f"blocks.{layer}.hook_resid_post"
    sums = {"clean": 0.0, "spliced": 0.0, "ablated": 0.0}
    n = 0
    for batch, feats in batches:
        batch = batch.to(vlm.lm.device)
        mask = trained_mask(batch.modality)
        ce, k = answer_loss(vlm, batch, feats)
        sums["clean"] += ce
        sums["spliced"] += answer_loss(vlm, batch, feats, [(name, replace_hook(sae.reconstruct, mask))])[0]
        sums["ablated"] += answer_loss(vlm, batch, feats, [(name, replace_hook(lambda r: mean.expand_as(r), mask))])[0]
        n += k
    out = {f"loss_{k}": v / max(n, 1) for k, v in sums.items()}
    out["loss_delta"] = out["loss_spliced"] - out["loss_clean"]
    gap = out["loss_ablated"] - out["loss_clean"]
    out["loss_recovered"] = (out["loss_ablated"] - out["loss_spliced"]) / gap if abs(gap) > 1e-9 else float("nan")
    out["n_answer_tokens"] = n
    return out
