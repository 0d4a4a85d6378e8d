"""Logit lens on any positions: decode each layer's residual through the final norm and
the unembedding (``[layers, n, d_model] -> top tokens, ranks of chosen tokens``)."""

from __future__ import annotations

from typing import Sequence

import torch

from interp.models.hooked import HookedLM


@torch.no_grad()
def logit_lens(lm: HookedLM, resid: torch.Tensor, *, top_k: int = 5, targets: Sequence[int] = (),
               chunk: int = 256) -> dict[str, torch.Tensor]:
    """``resid``: ``[layers, n, d_model]`` residuals (e.g. ``cache.stack()`` at image positions).

    Returns ``top_ids`` / ``top_logits`` ``[layers, n, top_k]`` and, for ``targets``, their
    ``ranks`` ``[layers, n, len(targets)]`` (0 = top) and ``logprobs``. Logits are computed in
    chunks of positions so memory stays ``chunk x d_vocab``.
    """
    n_layers, n, _ = resid.shape
    tgt = torch.tensor(list(targets), dtype=torch.long)
    top_ids = torch.empty(n_layers, n, top_k, dtype=torch.long)
    top_logits = torch.empty(n_layers, n, top_k)
    ranks = torch.empty(n_layers, n, len(tgt), dtype=torch.long)
    logprobs = torch.empty(n_layers, n, len(tgt))
    flat = resid.reshape(n_layers * n, -1)
    for s in range(0, flat.shape[0], chunk):
        logits = lm.unembed(lm.final_norm(flat[s:s + chunk].to(lm.device))).float()
        v, i = logits.topk(top_k, dim=-1)
        idx = torch.arange(s, min(s + chunk, flat.shape[0]))
        top_ids.view(-1, top_k)[idx] = i.cpu()
        top_logits.view(-1, top_k)[idx] = v.cpu()
        if len(tgt):
            t = logits[:, tgt.to(logits.device)]
            ranks.view(-1, len(tgt))[idx] = count_above(logits, t).cpu()
            logprobs.view(-1, len(tgt))[idx] = (t - logits.logsumexp(-1, keepdim=True)).cpu()
    return {"top_ids": top_ids, "top_logits": top_logits, "ranks": ranks, "logprobs": logprobs}


def count_above(logits: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``[rows, d_vocab]``, ``[rows, k]`` -> ``[rows, k]``: how many logits of each row are
    strictly greater than each value (the rank, 0 = top). One pass over the vocabulary:
    each logit is bucketed among the row's sorted values (``searchsorted``), the buckets are
    counted and summed from the top, so memory is ``[rows, d_vocab]`` indices and time does
    not grow with ``k`` (a broadcast comparison is ``[rows, k, d_vocab]``: 3 GB at 256 x 50)."""
    sorted_v, order = values.sort(dim=-1)
    bucket = torch.searchsorted(sorted_v.contiguous(), logits.contiguous())  # [rows, d_vocab]: #values below
    counts = torch.zeros(values.shape[0], values.shape[1] + 1, dtype=torch.long, device=logits.device)
    counts.scatter_add_(1, bucket, torch.ones((), dtype=torch.long, device=logits.device).expand_as(bucket))
    above_sorted = counts.flip(1).cumsum(1).flip(1)[:, 1:]  # sorted value j: logits in buckets > j
    return torch.empty_like(above_sorted).scatter_(1, order, above_sorted)
