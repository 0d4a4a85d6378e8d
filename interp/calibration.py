"""Answer calibration: the projector's output bias moved so that its answers are balanced.

The study scores "Yes" when log P(" Yes") - log P(" No") > 0 at the answer position. The
training loss (cross-entropy of answer and EOS over the whole vocabulary) calibrates that
threshold only where the LM puts its mass on the two answers. A random-init LM does not:
p(" Yes") + p(" No") = 0.001 at the answer of gemma-3-270m's random twin, so the loss is
blind to the Yes/No balance; its projector ranked the true leaf above the distractor in 79% of
held-out pairs and still said Yes to 95% of them (leaf F1 40, below chance).

:func:`calibrate_answer_bias` fixes the threshold the way the data ask for: on a set of
training questions with balanced answers (the study passes training-image leaf questions:
each image asked about its own leaf and one distractor leaf, never a hypernym), the last
Linear's bias moves along the mean gradient of the margin until the median margin is 0.
One vector is added to every image token; nothing else changes.

It runs only where the loss could not set the threshold: when the LM's answer mass is below
:data:`MASS_FLOOR`. A pretrained LM puts 0.99 of its mass on the two answers and its
cross-entropy sets the threshold; moving it anyway hurts (gemma-3-270m's quick original-world
projector: test leaf F1 76.3 -> 75.3, unseen-hypernym F1 51.7 -> 43.6 after a median shift,
because its margins are bimodal and the median of training leaf margins sits in the gap).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from interp.examples import Example, QuestionTokens, example_batch
from interp.scoring import score_examples, yes_no_ids
from interp.vlm import HookedVLM, as_positions

MASS_FLOOR = 0.5  # below this mean p(" Yes") + p(" No") the loss cannot set the Yes/No threshold


def output_bias(projector: nn.Module) -> torch.Tensor:
    """``[d_out]``: the bias of the projector's last Linear (what the calibration moves)."""
    last = [m for m in projector.modules() if isinstance(m, nn.Linear)]
    if not last or last[-1].bias is None:
        raise ValueError("answer calibration needs a projector whose last layer is a Linear with a bias")
    return last[-1].bias


def _last_logprobs(vlm: HookedVLM, features: torch.Tensor, examples: Sequence[Example]) -> torch.Tensor:
    """``[n, vocab]`` log-probabilities at the last question token (the answer position)."""
    batch, feats = example_batch(QuestionTokens(vlm.tokenizer), list(examples), features, vlm.n_image_tokens,
                                 with_answer=False)
    batch = batch.to(vlm.lm.device)
    resid = vlm.lm(vlm.embed(batch, feats), batch.attention_mask)
    return torch.log_softmax(vlm.lm.unembed(resid[as_positions(batch, "last").to(resid.device)]).float(), -1)


@torch.no_grad()
def answer_mass(vlm: HookedVLM, features: torch.Tensor, examples: Sequence[Example], *, batch_size: int = 64) -> float:
    """Mean p(" Yes") + p(" No") at the answer position of ``examples``: how much the LM's
    cross-entropy on the answer can see of the Yes/No balance."""
    ids = yes_no_ids(vlm.tokenizer).to(vlm.lm.device)
    total = 0.0
    for s in range(0, len(examples), batch_size):
        total += float(_last_logprobs(vlm, features, examples[s:s + batch_size])[:, ids].exp().sum())
    return total / len(examples)


def margin_gradient(vlm: HookedVLM, features: torch.Tensor, examples: Sequence[Example], *,
                    batch_size: int = 64) -> torch.Tensor:
    """``[d_out]``: the gradient of the summed Yes-minus-No margins of ``examples`` with respect
    to the projector's output bias (the direction that adds the same amount to every image token)."""
    bias = output_bias(vlm.projector)
    ids = yes_no_ids(vlm.tokenizer).to(vlm.lm.device)
    g = torch.zeros_like(bias)
    for s in range(0, len(examples), batch_size):
        logp = _last_logprobs(vlm, features, examples[s:s + batch_size])
        (grad,) = torch.autograd.grad((logp[:, ids[0]] - logp[:, ids[1]]).sum(), bias)
        g += grad
    return g


def calibrate_answer_bias(vlm: HookedVLM, features: torch.Tensor, examples: Sequence[Example], *,
                          batch_size: int = 64, tol: float = 0.01, max_evals: int = 6,
                          mass_floor: float = MASS_FLOOR) -> dict:
    """Move ``vlm.projector``'s output bias (in place) by ``alpha * g`` (``g`` the unit
    :func:`margin_gradient`, ``alpha`` by the secant method from a linearised first step) so
    that the median margin over ``examples`` is 0 within ``tol``. ``examples`` should have
    balanced answers.

    Only where the loss could not set the threshold: when the LM's mean answer mass on
    ``examples`` is at least ``mass_floor`` the cross-entropy has calibrated the answers, and
    nothing changes (``applied`` False). Keeps the bias unchanged, too, when no step improves
    on it. Returns the answer mass, the shift's size (on the projector's output scale), the
    median margin and Yes rate before and after, and the number of scoring passes."""
    if not examples:
        raise ValueError("answer calibration needs at least one question")
    bias = output_bias(vlm.projector)
    was = vlm.projector.training
    vlm.projector.eval()

    def score() -> torch.Tensor:
        return score_examples(vlm, features, examples, batch_size=batch_size, progress=False)

    mass = answer_mass(vlm, features, examples, batch_size=batch_size)
    m0 = score()
    before = float(m0.median())
    out = {"answer_mass": mass, "mass_floor": mass_floor, "applied": mass < mass_floor, "n_questions": len(examples),
           "median_margin_before": before, "yes_rate_before": 100.0 * float((m0 > 0).float().mean())}
    if not out["applied"]:
        vlm.projector.train(was)
        return {**out, "shift_norm": 0.0, "median_margin_after": before, "yes_rate_after": out["yes_rate_before"],
                "evaluations": 1}
    g = margin_gradient(vlm, features, examples, batch_size=batch_size)
    slope = float(g.norm()) / len(examples)  # d(mean margin)/d alpha along the unit gradient
    g = g / g.norm().clamp_min(1e-12)
    start = bias.detach().clone()
    a0, f0 = 0.0, before
    a1, evals = -f0 / max(slope, 1e-6), 1
    m1 = m0
    while evals < max_evals:
        with torch.no_grad():
            bias.copy_(start + a1 * g)
        m1, evals = score(), evals + 1
        f1 = float(m1.median())
        if abs(f1) <= tol or f1 == f0:
            break
        a0, f0, a1 = a1, f1, a1 - f1 * (a1 - a0) / (f1 - f0)
    keep = abs(float(m1.median())) < abs(before)
    alpha, m = (a1, m1) if keep else (0.0, m0)
    with torch.no_grad():
        bias.copy_(start + alpha * g)
    vlm.projector.train(was)
    return {**out, "shift_norm": abs(alpha), "median_margin_after": float(m.median()),
            "yes_rate_after": 100.0 * float((m > 0).float().mean()), "evaluations": evals}
