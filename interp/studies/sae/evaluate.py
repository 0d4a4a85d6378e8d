"""Measuring a trained SAE: reconstruction (explained variance), sparsity (L0, dead latents)
and the answer loss with the reconstruction spliced into the residual stream at its layer
(through :meth:`HookedVLM.run_with_hooks`, replacing ``blocks.{l}.hook_resid_post``)."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from interp.sequence import Batch, Modality
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


@torch.no_grad()
def group_quality(sae: SaeLensSAE, x: torch.Tensor, groups: dict[str, torch.Tensor]) -> dict[str, float]:
    """Per token group (bool masks ``[n]`` over ``x [n, d_in]``): explained variance about the
    group's own mean (``ev_<group>``), the reconstruction error relative to the tokens' squared
    norm (``relerr_<group>``, which does not depend on how spread the group is) and its token
    count (``n_<group>``); NaN for an empty group."""
    out: dict[str, float] = {}
    for name, m in groups.items():
        xg = x[m]
        if not len(xg):
            out |= {f"ev_{name}": float("nan"), f"relerr_{name}": float("nan"), f"n_{name}": 0}
            continue
        x_hat = sae.decode_topk(*encode_chunks(sae, xg))
        err = (xg.double() - x_hat.double()).pow(2).sum()
        out |= {f"ev_{name}": explained_variance(xg, x_hat), f"relerr_{name}": float(err / xg.double().pow(2).sum()),
                f"n_{name}": int(len(xg))}
    return out


def replace_hook(fn: Callable[[torch.Tensor], torch.Tensor], mask: torch.Tensor) -> Callable:
    """A forward hook that sets the residual ``[batch, pos, d_model]`` at ``mask [batch, pos]``
    to ``fn(residual[mask])``; other positions pass through."""

    def hook(resid: torch.Tensor, hook=None) -> torch.Tensor:
        m = mask.to(resid.device)
        out = resid.clone()
        out[m] = fn(resid[m]).to(resid.dtype)
        return out

    return hook


def answer_loss(vlm, batch: Batch, features: torch.Tensor | None, fwd_hooks=(),
                rows: torch.Tensor | None = None) -> tuple[float, int]:
    """(summed cross-entropy over the answer tokens, their count) with ``fwd_hooks`` active;
    ``rows`` (bool ``[batch]``) restricts the sum to those sequences."""
    predicts, targets = batch.answer_targets(rows)
    out = vlm.run_with_hooks(batch, features, fwd_hooks=list(fwd_hooks), logits_at=predicts)
    ce = nn.functional.cross_entropy(out.logits.float(), targets.to(out.logits.device), reduction="sum")
    return float(ce.detach()), int(targets.numel())


#: below this rise of the answer loss (nats) under mean-ablation the positions barely matter to
#: the answer, and the share of it a reconstruction recovers is not reported (NaN)
MIN_ABLATION_GAP = 0.05


def recovered_share(clean: float, spliced: float, ablated: float, min_gap: float = MIN_ABLATION_GAP) -> float:
    """``(ablated - spliced) / (ablated - clean)``: 1 = the reconstruction keeps the answer, 0 =
    no better than the mean; NaN when mean-ablation raises the loss by less than ``min_gap``."""
    gap = ablated - clean
    return (ablated - spliced) / gap if gap >= min_gap else float("nan")


@torch.no_grad()
def splice_losses(vlm, batches: Sequence[tuple[Batch, torch.Tensor | None]], sae: SaeLensSAE, layer: int,
                  mean: torch.Tensor, *, image_only: bool = False) -> dict[str, float]:
    """Mean answer loss clean, with the SAE's reconstruction spliced in at
    ``blocks.{layer}.hook_resid_post`` (image, text and answer positions: where it was
    trained) and with those positions mean-ablated (``mean [d_model]``); the share of the
    ablation's loss increase the SAE recovers. ``image_only``: splice and ablate the image
    positions alone, and score the answers of the sequences that have an image."""
    name = f"blocks.{layer}.hook_resid_post"
    sums = {"clean": 0.0, "spliced": 0.0, "ablated": 0.0}
    n = 0
    for batch, feats in batches:
        batch = batch.to(vlm.lm.device)
        if image_only:
            mask = batch.modality == int(Modality.IMAGE)
            rows = mask.any(-1)
            if not bool(rows.any()):
                continue
        else:
            mask, rows = trained_mask(batch.modality), None
        ce, k = answer_loss(vlm, batch, feats, rows=rows)
        sums["clean"] += ce
        sums["spliced"] += answer_loss(vlm, batch, feats, [(name, replace_hook(sae.reconstruct, mask))], rows)[0]
        sums["ablated"] += answer_loss(vlm, batch, feats, [(name, replace_hook(lambda r: mean.expand_as(r), mask))],
                                       rows)[0]
        n += k
    out = {f"loss_{k}": v / max(n, 1) for k, v in sums.items()}
    out["loss_delta"] = out["loss_spliced"] - out["loss_clean"]
    out["loss_recovered"] = recovered_share(out["loss_clean"], out["loss_spliced"], out["loss_ablated"])
    out["n_answer_tokens"] = n
    return out
