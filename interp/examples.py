"""Yes/no examples over cached image features, and their batching for the VLM.

An :class:`Example` points at a row of a feature tensor and carries a question, its
answer and the labels that metrics group by (kind, concept, hypernym, depth, seen).
Questions are tokenized once per distinct string (:class:`QuestionTokens`), not per batch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import torch

from interp.sequence import Batch, Segment, build_batch

ANSWER_PREFIX = " "
"""What goes before an answer word in the trained format (" Yes", then EOS)."""


@dataclass(frozen=True)
class Example:
    """One question about one image.

    ``image``: row in the feature tensor; ``kind``: "leaf" or "hypernym"; ``concept``: the
    concept whose question is asked of this image (after a counterfactual world mapping);
    ``target``: the leaf or hypernym named in the question; ``hypernym``: the hypernym the
    pair belongs to (for distractor questions, the true hypernym it was paired with).
    """

    image: int
    question: str
    answer: str
    kind: str
    concept: str
    target: str
    hypernym: str = ""
    depth: int = 0
    seen: bool = True

    def to_row(self) -> dict:
        return asdict(self)


class QuestionTokens:
    """Tokenize each distinct question/answer string once."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self._ids: dict[str, tuple[int, ...]] = {}

    def __call__(self, text: str) -> tuple[int, ...]:
        ids = self._ids.get(text)
        if ids is None:
            ids = tuple(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            if not ids:
                raise ValueError(f"empty text {text!r}")
            self._ids[text] = ids
        return ids


def example_batch(
    tokens: QuestionTokens,
    examples: Sequence[Example],
    features: torch.Tensor,
    n_image_tokens: int,
    *,
    with_answer: bool,
    answer_prefix: str = ANSWER_PREFIX,
) -> tuple[Batch, torch.Tensor]:
    """(batch, the features of its images ``[n, tokens, d_img]``) for a list of examples.

    Each distinct image in the chunk is projected once.
    """
    rows = sorted({ex.image for ex in examples})
    local = {img: i for i, img in enumerate(rows)}
    items = []
    for ex in examples:
        segs = [Segment("bos"), Segment("image", image=local[ex.image]), Segment("text", ids=tokens(ex.question))]
        if with_answer:
            segs.append(Segment("answer", ids=tokens(answer_prefix + ex.answer)))
        items.append(segs)
    batch = build_batch(tokens.tokenizer, items, n_image_tokens)
    return batch, features[torch.tensor(rows)]
