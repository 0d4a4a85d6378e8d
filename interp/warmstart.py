"""Projector warm start from a classifier and a table of target tokens (leaf labels only).

:func:`prototype_init` sets a two-layer projector so that it maps an image of concept ``c``
onto the table row ``u + D_c`` (e.g. the LM's concept prototypes,
:mod:`interp.studies.taxonomy.prototypes`). The first Linear is a multinomial logistic regression of
the (pooled) image features on the concept labels, fitted by L-BFGS with an L2 penalty, with
the standardisation of the features folded in. Then, by projector kind:

- ``mlp2x_softmax`` (Linear, softmax, Linear): the logits are divided by ``temperature``, the
  second Linear's column ``c`` is ``D_c`` and its bias ``u``, so the token is
  ``u + sum_c p_c D_c`` with ``p`` the classifier's (sharpened) probabilities: a convex
  combination of prototypes whatever the classifier's confidence;
- ``mlp2x_gelu`` (LLaVA's Linear, GELU, Linear): the logits are shifted so that only the top
  few (about ``active``) are positive on a typical training image, GELU keeps those, and the
  second Linear maps hidden unit ``c`` to ``D_c`` (scaled so the typical top activation gives
  ``gain * D_c``). On held-out images, where the classifier is less sure than on the images it
  was fitted on, the tokens come out smaller and the LM answers No more often
  (docs/training.md).

Hidden units beyond the number of concepts start silent. Everything stays an ordinary
projector afterwards: LM-loss training goes on from there as from any init. The world's
mapping is respected by passing the labels of the concept each image's questions are about.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from interp.projector import Projector, pool_tokens


KINDS = ("none", "prototypes")


@dataclass(frozen=True)
class WarmStartConfig:
    """``kind``: "none" (the projector's random init) or "prototypes" (this module's init onto
    the LM's concept prototypes, :mod:`interp.studies.taxonomy.prototypes`). ``l2``: penalty of the
    logistic regression (on standardised features). ``mlp2x_softmax``: ``temperature``
    divides the logits. ``mlp2x_gelu``: ``active``: the logits are shifted by the median
    ``active``-th largest logit of the training images; ``gain`` multiplies the concept part of
    the mapped token."""

    kind: str = "none"
    l2: float = 1e-3
    active: int = 3
    gain: float = 1.67
    temperature: float = 0.25
    max_iter: int = 200

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"warm_start.kind {self.kind!r}: valid kinds are {list(KINDS)}")
        if self.l2 < 0 or self.active < 1 or self.gain <= 0 or self.max_iter < 1 or not self.temperature > 0:
            raise ValueError(f"invalid WarmStartConfig {self}: l2 >= 0, active >= 1, gain > 0, temperature > 0, "
                             "max_iter >= 1")


def _tokens(projector: Projector, features: torch.Tensor) -> torch.Tensor:
    """``[n * tokens_out, d_in]`` float features as the projector's first layer sees them."""
    x = features.float()
    if projector.config.pool_to is not None:
        x = pool_tokens(x, projector.config.pool_to, projector.config.pool)
    return rearrange(x, "n t d -> (n t) d")


def fit_classifier(x: torch.Tensor, labels: torch.Tensor, n_classes: int, *, l2: float = 1e-3,
                   max_iter: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression on ``x [n, d]`` (raw features; standardised inside):
    returns ``(W [n_classes, d], b [n_classes])`` acting on the raw features."""
    mu, sd = x.mean(0), x.std(0) + 1e-6
    z = (x - mu) / sd
    W = torch.zeros(n_classes, x.shape[1], requires_grad=True)
    b = torch.zeros(n_classes, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(z @ W.T + b, labels) + l2 * W.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    W_raw = W.detach() / sd
    return W_raw, b.detach() - W_raw @ mu


@torch.no_grad()
def prototype_init(projector: Projector, features: torch.Tensor, labels: torch.Tensor, u: torch.Tensor,
                   D: torch.Tensor, embed_scale: float, cfg: WarmStartConfig = WarmStartConfig()) -> dict:
    """Initialise ``projector`` in place (see the module doc).

    Args:
        features: ``[n_images, tokens_in, d_in]`` training features.
        labels: ``[n_images]`` row of ``D`` each image should map to.
        u: ``[d_model]``, D: ``[n_classes, d_model]`` target tokens on the residual scale (the
            projector output is multiplied by ``embed_scale`` in the VLM).
    Returns the classifier's training accuracy and the activation statistics.
    """
    cfg_p = projector.config
    n_classes = D.shape[0]
    if cfg_p.kind not in ("mlp2x_gelu", "mlp2x_softmax"):
        raise ValueError(f"the prototype warm start needs an mlp2x_gelu or mlp2x_softmax projector, not {cfg_p.kind!r} "
                         "(set warm_start.kind = 'none' for other kinds)")
    if n_classes > cfg_p.d_out:
        raise ValueError(f"the prototype warm start needs at most d_model={cfg_p.d_out} concepts (one hidden unit each); "
                         f"got {n_classes}: set warm_start.kind = 'none' or use an LM with a wider residual stream")
    n_tok = cfg_p.n_tokens_out
    x = _tokens(projector, features)
    y = labels.repeat_interleave(n_tok)
    with torch.enable_grad():
        W, b = fit_classifier(x, y, n_classes, l2=cfg.l2, max_iter=cfg.max_iter)
    logits = x @ W.T + b
    first, second = projector.net[0], projector.net[2]
    dt = first.weight.dtype
    if cfg_p.kind == "mlp2x_softmax":
        first.weight.zero_()
        first.bias.fill_(-1e4)  # silent: no probability mass
        first.weight[:n_classes] = (W / cfg.temperature).to(dt)
        first.bias[:n_classes] = (b / cfg.temperature).to(dt)
        second.weight.zero_()
        second.weight[:, :n_classes] = (D / embed_scale).T.to(dt)
        second.bias.copy_((u / embed_scale).to(dt))
        p = torch.softmax(logits / cfg.temperature, dim=1)
        return {"classifier_train_acc": 100.0 * float((logits.argmax(1) == y).float().mean()),
                "top_probability": float(p.max(1).values.median())}
    k = min(cfg.active + 1, n_classes)
    shift = float(logits.topk(k, dim=1).values[:, k - 1].median())
    logits = logits - shift
    top = float(nn.functional.gelu(logits.max(1).values).median())
    if not top > 0:
        raise ValueError(f"warm start: the classifier's top logit is not above the shift on a typical image (top "
                         f"activation {top:.3g}); fewer classes than active={cfg.active}+1?")
    first.weight.zero_()
    first.bias.fill_(-10.0)
    first.weight[:n_classes] = W.to(dt)
    first.bias[:n_classes] = (b - shift).to(dt)
    second.weight.zero_()
    second.weight[:, :n_classes] = (cfg.gain / (top * embed_scale) * D).T.to(dt)
    second.bias.copy_((u / embed_scale).to(dt))
    return {"classifier_train_acc": 100.0 * float((logits.argmax(1) == y).float().mean()),
            "active_per_token": float((logits > 0).float().sum(1).mean()), "logit_shift": shift, "top_activation": top}
