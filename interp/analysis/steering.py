"""Steering with a hypernym direction at the image positions, read as a change in P(Yes).

``P(Yes)`` is the two-way probability ``softmax([logit(Yes), logit(No)])[0]`` at the last
question token (two unembedding rows, no full-vocabulary product): the quantity the yes/no
evaluation of the taxonomic study thresholds at 0.5.

The experiment (:func:`steering_table`): for a hypernym H with direction d_H at layer l,
take images of concepts outside H (true answer "No"), ask "Is there a(n) H in the image?"
and add ``scale * |resid| * d_H/|d_H|`` to the residual at every image position. Controls:
the same steering read on questions about *other* hypernyms (specificity), and a random
direction of the same norm (is any push enough?).
"""

from __future__ import annotations

from typing import Sequence

import torch

from interp.analysis.directions import steering_hook
from interp.sequence import single_token_id, vlm_item


def article(phrase: str) -> str:
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


def hypernym_question(hypernym: str) -> str:
    return f"Is there {article(hypernym)} in the image?"


@torch.no_grad()
def yes_probability(vlm, features: torch.Tensor, questions: Sequence[str], *, direction: torch.Tensor | None = None,
                    layer: int = 0, alpha: float = 0.0, hook: str = "hook_resid_post", batch_size: int = 64,
                    yes: str = " Yes", no: str = " No", margin: bool = False) -> torch.Tensor:
    """P(Yes) for every (image, question): ``features [n_images, tokens, d_img]`` -> ``[n_images, n_questions]``.

    With ``direction [d_model]`` and ``alpha != 0`` the hook ``blocks.{layer}.{hook}`` gets
    ``alpha * unit(direction)`` added at the image positions. ``margin=True`` returns
    logit(Yes) - logit(No) instead of P(Yes).
    """
    lm = vlm.lm
    name = lm.check_hook(f"blocks.{lm.check_layer(layer)}.{hook}")
    ids = torch.tensor([single_token_id(vlm.tokenizer, yes), single_token_id(vlm.tokenizer, no)])
    pairs = [(i, q) for i in range(features.shape[0]) for q in range(len(questions))]
    out = torch.empty(len(pairs))
    for s in range(0, len(pairs), batch_size):
        chunk = pairs[s:s + batch_size]
        imgs = sorted({i for i, _ in chunk})
        slot = {i: j for j, i in enumerate(imgs)}
        batch = vlm.build([vlm_item(slot[i], questions[q]) for i, q in chunk])
        hooks = []
        if direction is not None and alpha != 0.0:
            hooks = [(name, steering_hook(direction, batch.mask("image"), alpha))]
        logits = vlm.token_logits(batch, features[imgs], ids, fwd_hooks=hooks).float()
        out[s:s + len(chunk)] = (logits[:, 0] - logits[:, 1] if margin else logits.softmax(-1)[:, 0]).cpu()
    return out.view(features.shape[0], len(questions))


def steering_table(vlm, features: torch.Tensor, concepts: Sequence[str], members: dict[str, set[str]],
                   directions: dict[str, torch.Tensor], *, layer: int, scales: Sequence[float],
                   resid_norm: float, hook: str = "hook_resid_post", n_controls: int = 3, seed: int = 0,
                   max_images: int = 48, question=hypernym_question) -> list[dict]:
    """Tidy rows (hypernym, scale, condition, mean P(Yes), mean change, n) for each hypernym in
    ``directions`` (``[d_model]`` at ``layer``). ``features``: one image per concept of
    ``concepts``; ``members[h]``: the concepts under h. Conditions: ``target`` (h's question,
    h's direction), ``other-question`` (h's direction, questions about ``n_controls`` other
    hypernyms), ``random-direction`` (h's question, a random direction). ``question(h)`` poses
    the yes/no question (e.g. the study's ``image_question(taxonomy.phrase(h))``)."""
    g = torch.Generator().manual_seed(seed)
    hyps = sorted(directions)
    rows: list[dict] = []
    for h in hyps:
        outside = [i for i, c in enumerate(concepts) if c not in members[h]]
        pick = torch.randperm(len(outside), generator=g)[:max_images]
        idx = [outside[int(j)] for j in pick]
        others = [o for o in hyps if o != h]
        others = [others[int(j)] for j in torch.randperm(len(others), generator=g)[:n_controls]]
        # other-question controls only on images outside those hypernyms too
        qs = [question(h)] + [question(o) for o in others]
        feats = features[idx]
        rand = torch.randn(directions[h].shape, generator=g)
        base = yes_probability(vlm, feats, qs, layer=layer, hook=hook)
        for scale in scales:
            alpha = scale * resid_norm
            pushed = yes_probability(vlm, feats, qs, direction=directions[h], layer=layer, alpha=alpha, hook=hook)
            randp = yes_probability(vlm, feats, qs[:1], direction=rand, layer=layer, alpha=alpha, hook=hook)
            valid_other = torch.tensor([[concepts[i] not in members[o] for o in others] for i in idx])
            d_other = (pushed[:, 1:] - base[:, 1:])[valid_other] if others else torch.tensor([])
            for cond, p, d in (("target", pushed[:, 0], pushed[:, 0] - base[:, 0]),
                               ("other-question", pushed[:, 1:][valid_other] if others else torch.tensor([]), d_other),
                               ("random-direction", randp[:, 0], randp[:, 0] - base[:, 0])):
                if d.numel() == 0:
                    continue
                rows.append({"hypernym": h, "layer": layer, "scale": float(scale), "alpha": float(alpha),
                             "condition": cond, "p_yes": float(p.mean()), "delta_p_yes": float(d.mean()),
                             "delta_sem": float(d.std() / max(d.numel(), 1) ** 0.5) if d.numel() > 1 else 0.0,
                             "n": int(d.numel())})
    return rows
