"""Collect per-layer concept representations in both modalities, for probes, directions,
similarity and the logit lens.

For each concept:
- ``text``: mean residual over the concept word's tokens in "This is a picture of a robin."
- ``image``: mean residual over the image positions of [BOS, image tokens, "What is in the image?"]
- ``last``: the residual at the last question token of that image prompt.
Each is ``[layers, n_concepts, d_model]`` of ``blocks.{i}.hook_resid_post``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from interp.sequence import Segment, build_batch
from interp.vlm import HookedVLM


@dataclass
class ConceptActs:
    concepts: list[str]
    text: torch.Tensor
    image: torch.Tensor
    last: torch.Tensor


def word_span(tokenizer, prompt_ids: list[int], word: str) -> list[int]:
    """The positions of ``word``'s tokens (with or without a leading space) in ``prompt_ids``."""
    for variant in (" " + word, word):
        w = tokenizer(variant, add_special_tokens=False)["input_ids"]
        for i in range(len(prompt_ids) - len(w) + 1):
            if prompt_ids[i:i + len(w)] == w:
                return list(range(i, i + len(w)))
    raise ValueError(f"the tokens of {word!r} are not in the prompt")


@torch.no_grad()
def concept_activations(vlm: HookedVLM, concepts: Sequence[str], phrases: Sequence[str], features: torch.Tensor,
                        *, batch_size: int = 32, question: str = "What is in the image?") -> ConceptActs:
    """``features [n_concepts, tokens, d_img]``: one image per concept (same order as ``concepts``);
    ``phrases``: "a robin" ... (the word after the article is located in the text prompt)."""
    lm, tok = vlm.lm, vlm.tokenizer
    names = [f"blocks.{i}.hook_resid_post" for i in range(lm.n_layers)]
    text, image, last = [], [], []
    for s in range(0, len(concepts), batch_size):
        ph = list(phrases[s:s + batch_size])
        tb = build_batch(tok, [[Segment("bos"), Segment("text", f"This is a picture of {p}.")] for p in ph], 0)
        _, tc = vlm.run_with_cache(tb.to(lm.device), None, names=names, logits_at=None, device="cpu")
        stack = tc.stack()  # [layers, b, pos, d]
        for j, p in enumerate(ph):
            word = p.split(" ", 1)[1] if " " in p else p
            span = word_span(tok, tb.input_ids[j].tolist(), word)
            text.append(stack[:, j, span].mean(1))
        ib = vlm.build([[Segment("bos"), Segment("image", image=j), Segment("text", question)] for j in range(len(ph))])
        _, ic = vlm.run_with_cache(ib, features[s:s + batch_size], names=names, logits_at=None, device="cpu")
        istack = ic.stack()
        mask = ib.mask("image").cpu()
        lastpos = ib.last("text").cpu()
        for j in range(len(ph)):
            image.append(istack[:, j, mask[j]].mean(1))
            last.append(istack[:, j, lastpos[j]])
    return ConceptActs(list(concepts), torch.stack(text, 1), torch.stack(image, 1), torch.stack(last, 1))


def one_image_per_concept(records, rows: Sequence[int]) -> tuple[list[str], list[int]]:
    """The first (by key) of ``rows`` for each concept: (concepts sorted, their rows)."""
    first: dict[str, tuple[str, int]] = {}
    for i in rows:
        r = records[i]
        if r.concept not in first or r.key < first[r.concept][0]:
            first[r.concept] = (r.key, i)
    concepts = sorted(first)
    return concepts, [first[c][1] for c in concepts]
