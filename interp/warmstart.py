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
- ``mlp2x_relmax`` (Linear, relmax, Linear): the same init, but the hidden layer is
  ``exp(z - max z)``, so the token is ``u + sum_c (p_c / max p) D_c``: the top concept's
  prototype at full strength plus the other plausible concepts' at their probability relative
  to the top (a superposition: on a held-out image the true concept is often second or third);
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

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from einops import rearrange
from torch import nn

from interp.projector import MIXTURE_KINDS, Projector, ProjectorConfig, hidden_activation, pool_tokens
from interp.train_projector import Examples, Monitor, TrainConfig, train_projector
from interp.vlm import HookedVLM


KINDS = ("none", "prototypes")
PRECISIONS = ("float32", "float64")


@dataclass(frozen=True)
class WarmStartConfig:
    """``kind``: "none" (the projector's random init) or "prototypes" (this module's init onto
    the LM's concept prototypes, :mod:`interp.studies.taxonomy.prototypes`). ``l2``: penalty of the
    logistic regression (on standardised features). ``mlp2x_softmax``: ``temperature``
    divides the logits. ``mlp2x_gelu``: ``active``: the logits are shifted by the median
    ``active``-th largest logit of the training images; ``gain`` multiplies the concept part of
    the mapped token. ``precision``: the dtype of the classifier fits (:func:`fit_classifier`).

    The readout stage (``mlp2x_softmax`` or ``mlp2x_relmax``; off when ``mixture_epochs`` is 0): the second
    Linear is trained with the LM loss on the run's own training questions, each image's token
    built from its *out-of-fold* mixture ``act(L_oof / temperature)`` (the hidden activation; ``folds``
    classifiers, each fitted without one rendering of every concept), so the readout learns the
    spread mixtures that held-out images produce, not the one-hot ones of images the classifier
    was fitted on (:func:`refine_readout`); ``mixture_epochs`` epochs of ``mixture_batch``
    examples at ``mixture_lr`` (Adam's step on the scale of the LM's input tokens: the weights
    are divided by the LM's ``embed_scale``, so is the learning rate)."""

    kind: str = "none"
    l2: float = 1e-3
    active: int = 3
    gain: float = 1.67
    temperature: float = 0.25
    max_iter: int = 200
    mixture_epochs: float = 0.0
    mixture_lr: float = 0.01
    mixture_batch: int = 64
    folds: int = 3
    precision: str = "float32"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"warm_start.kind {self.kind!r}: valid kinds are {list(KINDS)}")
        if self.l2 < 0 or self.active < 1 or self.gain <= 0 or self.max_iter < 1 or not self.temperature > 0:
            raise ValueError(f"invalid WarmStartConfig {self}: l2 >= 0, active >= 1, gain > 0, temperature > 0, "
                             "max_iter >= 1")
        if self.precision not in PRECISIONS:
            raise ValueError(f"warm_start.precision {self.precision!r}: valid are {list(PRECISIONS)}")
        if self.mixture_epochs < 0 or not self.mixture_lr > 0 or self.mixture_batch < 1 or self.folds < 2:
            raise ValueError(f"invalid WarmStartConfig {self}: mixture_epochs >= 0 (0 = off), mixture_lr > 0, "
                             "mixture_batch >= 1, folds >= 2")


def _tokens(projector: Projector, features: torch.Tensor) -> torch.Tensor:
    """``[n * tokens_out, d_in]`` float features as the projector's first layer sees them."""
    x = features.float()
    if projector.config.pool_to is not None:
        x = pool_tokens(x, projector.config.pool_to, projector.config.pool)
    return rearrange(x, "n t d -> (n t) d")


def fit_classifier(x: torch.Tensor, labels: torch.Tensor, n_classes: int, *, l2: float = 1e-3,
                   max_iter: int = 200, precision: str = "float32") -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression on ``x [n, d]`` (raw features; standardised inside):
    returns ``(W [n_classes, d], b [n_classes])`` acting on the raw features, in ``x``'s dtype.
    ``precision``: the dtype L-BFGS runs in; "float64" makes the fit insensitive to the order of
    float32 reductions (with 2560-d features a DDP rank and one process differed by 0.013 in a
    margin under float32)."""
    if precision not in PRECISIONS:
        raise ValueError(f"classifier precision {precision!r}: valid are {list(PRECISIONS)}")
    dtype, work = x.dtype, getattr(torch, precision)
    x = x.to(work)
    mu, sd = x.mean(0), x.std(0) + 1e-6
    z = (x - mu) / sd
    W = torch.zeros(n_classes, x.shape[1], dtype=work, requires_grad=True)
    b = torch.zeros(n_classes, dtype=work, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(z @ W.T + b, labels) + l2 * W.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    W_raw = W.detach() / sd
    return W_raw.to(dtype), (b.detach() - W_raw @ mu).to(dtype)


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
    if cfg_p.kind not in ("mlp2x_gelu", *MIXTURE_KINDS):
        raise ValueError(f"the prototype warm start needs an mlp2x_gelu, mlp2x_softmax or mlp2x_relmax projector, not {cfg_p.kind!r} "
                         "(set warm_start.kind = 'none' for other kinds)")
    if n_classes > cfg_p.d_out:
        raise ValueError(f"the prototype warm start needs at most d_model={cfg_p.d_out} concepts (one hidden unit each); "
                         f"got {n_classes}: set warm_start.kind = 'none' or use an LM with a wider residual stream")
    n_tok = cfg_p.n_tokens_out
    x = _tokens(projector, features)
    y = labels.repeat_interleave(n_tok)
    with torch.enable_grad():
        W, b = fit_classifier(x, y, n_classes, l2=cfg.l2, max_iter=cfg.max_iter, precision=cfg.precision)
    logits = x @ W.T + b
    first, second = projector.net[0], projector.net[2]
    dt = first.weight.dtype
    if cfg_p.kind in MIXTURE_KINDS:
        first.weight.zero_()
        first.bias.fill_(-1e4)  # silent: no probability mass
        first.weight[:n_classes] = (W / cfg.temperature).to(dt)
        first.bias[:n_classes] = (b / cfg.temperature).to(dt)
        second.weight.zero_()
        second.weight[:, :n_classes] = (D / embed_scale).T.to(dt)
        second.bias.copy_((u / embed_scale).to(dt))
        p = torch.softmax(logits / cfg.temperature, dim=1)
        mass = projector.net[1](logits / cfg.temperature).sum(1)  # 1 for softmax; concepts superposed for relmax
        return {"classifier_train_acc": 100.0 * float((logits.argmax(1) == y).float().mean()),
                "top_probability": float(p.max(1).values.median()), "hidden_mass": float(mass.median())}
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


def fold_of(labels: torch.Tensor, folds: int) -> torch.Tensor:
    """``[n]`` fold of each item: its rank among the items of its label, modulo ``folds`` (so
    every fold holds out at most one rendering of a concept that has ``folds`` of them)."""
    seen: dict[int, int] = {}
    out = []
    for c in labels.tolist():
        out.append(seen.get(c, 0) % folds)
        seen[c] = seen.get(c, 0) + 1
    return torch.tensor(out, dtype=torch.long)


def out_of_fold_logits(x: torch.Tensor, labels: torch.Tensor, n_classes: int, *, folds: int = 3, l2: float = 1e-3,
                       max_iter: int = 200, precision: str = "float32") -> torch.Tensor:
    """``[n, n_classes]`` logits of each row of ``x [n, d]`` from a classifier fitted without
    its fold (:func:`fold_of`): what a classifier says about an image it has not seen."""
    fold = fold_of(labels, folds)
    out = torch.zeros(len(x), n_classes, dtype=x.dtype)
    for k in range(folds):
        held = fold == k
        if held.any():
            W, b = fit_classifier(x[~held], labels[~held], n_classes, l2=l2, max_iter=max_iter, precision=precision)
            out[held] = x[held] @ W.T + b
    return out


def mixture_inputs(projector: Projector, features: torch.Tensor, labels: torch.Tensor, n_classes: int,
                   cfg: WarmStartConfig) -> torch.Tensor:
    """``[n_images, tokens_out, n_classes]`` out-of-fold mixtures ``act(L_oof / T)`` of the
    training images (``features [n_images, tokens_in, d_in]``, ``labels [n_images]``), ``act``
    the projector's hidden activation (softmax, or relmax)."""
    n_tok = projector.config.n_tokens_out
    x = _tokens(projector, features)
    with torch.enable_grad():
        logits = out_of_fold_logits(x, labels.repeat_interleave(n_tok), n_classes, folds=cfg.folds, l2=cfg.l2,
                                    max_iter=cfg.max_iter, precision=cfg.precision)
    act = hidden_activation(projector.config.kind)
    return rearrange(act(logits / cfg.temperature), "(n t) c -> n t c", t=n_tok)


def readout_projector(projector: Projector, n_classes: int) -> Projector:
    """A ``linear`` projector from ``n_classes`` mixture weights to tokens: a copy of
    ``projector``'s second Linear restricted to its first ``n_classes`` hidden units."""
    c = projector.config
    if c.kind not in MIXTURE_KINDS:
        raise ValueError(f"the readout stage needs an mlp2x_softmax or mlp2x_relmax projector, not {c.kind!r} "
                         "(set warm_start.mixture_epochs = 0)")
    out = Projector(ProjectorConfig(kind="linear", d_in=n_classes, d_out=c.d_out, n_tokens_in=c.n_tokens_out,
                                    encoder=f"{c.encoder}:mixture", lm=c.lm))
    second = projector.net[2]
    with torch.no_grad():
        out.net[0].weight.copy_(second.weight[:, :n_classes])
        out.net[0].bias.copy_(second.bias)
    return out.to(second.weight.device)


@torch.no_grad()
def write_readout(projector: Projector, readout: Projector) -> None:
    """Copy a trained :func:`readout_projector` back into ``projector``'s second Linear."""
    second, lin = projector.net[2], readout.net[0]
    second.weight[:, :lin.in_features] = lin.weight
    second.bias.copy_(lin.bias)


def refine_readout(vlm: HookedVLM, features: torch.Tensor, rows: torch.Tensor, labels: torch.Tensor, n_classes: int,
                   examples: Examples, cfg: WarmStartConfig, train: TrainConfig, run_dir: Path, *,
                   progress: bool = True, monitor: Monitor | None = None) -> dict:
    """The readout stage (see :class:`WarmStartConfig`): after :func:`prototype_init`, train
    ``vlm.projector``'s second Linear with the LM loss on ``examples`` (questions about the
    images ``rows`` of ``features [n_images, tokens_in, d_in]``, of concepts ``labels``, rows
    of the ``n_classes``-row table :func:`prototype_init` used),
    every image read through its out-of-fold mixture; the result is written back in place.
    Resumable in ``run_dir`` (the trainer's files). ``monitor`` (the study's held-out monitor
    over ``vlm``) runs every ``train.eval_every`` steps of the stage, on ``vlm`` with the readout
    trained so far written back. Returns the trainer's summary (steps, loss, timing, losses and
    diagnostics)."""
    mix = mixture_inputs(vlm.projector, features[rows], labels, n_classes, cfg)
    inputs = torch.zeros(features.shape[0], *mix.shape[1:], dtype=mix.dtype)
    inputs[rows] = mix
    readout = readout_projector(vlm.projector, n_classes)
    stage = HookedVLM(vlm.lm, readout)
    # mixture_lr is on the scale of the LM's input tokens; the weights are that divided by embed_scale
    tcfg = replace(train, epochs=cfg.mixture_epochs, lr=cfg.mixture_lr / vlm.lm.embed_scale,
                   batch_size=cfg.mixture_batch, eval_every=train.eval_every if monitor else 0, max_steps=None)

    def stage_monitor() -> dict:
        write_readout(vlm.projector, readout)  # the full projector as the stage has it now
        return monitor()

    summary = train_projector(stage, inputs.to(vlm.lm.device), examples, tcfg, run_dir, progress=progress,
                              monitor=stage_monitor if monitor else None)
    write_readout(vlm.projector, readout)
    keep = ("steps", "final_loss", "train_seconds", "n_examples", "losses", "diagnostics")
    return {k: v for k, v in summary.items() if k in keep}
