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
            ranks.view(-1, len(tgt))[idx] = (logits.unsqueeze(1) > t.unsqueeze(-1)).sum(-1).cpu()
            logprobs.view(-1, len(tgt))[idx] = (t - logits.logsumexp(-1, keepdim=True)).cpu()
    return {"top_ids": top_ids, "top_logits": top_logits, "ranks": ranks, "logprobs": logprobs}
