"""Questions of the taxonomic study, exactly as in the brief.

- Leaf questions, every image: "Is there a robin in the image?" (Yes) and the same with a
  distractor leaf (No).
- Hypernym questions, for every (leaf, hypernym) pair: "Is there a bird in the image?"
  (Yes) and the pair's distractor hypernym, never a true hypernym of that leaf (No).
- The LM-only text test: "Is it true that a robin is a bird?" and its cloze variant
  "A robin is a kind of" + " bird" vs " fish".

Phrases come from the taxonomy (article and natural phrase, "a musical instrument",
"an item of clothing"); multi-word names are never cut.
"""

from __future__ import annotations

import random
from typing import Mapping, Sequence

from interp.examples import Example


def image_question(phrase: str) -> str:
    return f"Is there {phrase} in the image?"


def examples_for_images(
    images: Sequence[tuple[int, str]],
    taxonomy,
    mapping: Mapping[str, str],
    removed: Mapping[str, frozenset[str]],
    *,
    train: bool,
    seed: int,
    epoch: int = 0,
) -> list[Example]:
    """Examples for ``images`` = [(feature row, image concept)].

    ``mapping`` (the world) gives the concept the questions are about; in training, the
    hypernym questions of removed (leaf, hypernym) pairs are dropped; at test they are
    kept and marked ``seen=False``. ``epoch > 0`` draws fresh distractor leaves (the same
    questions otherwise, so every epoch has the same number of examples).
    """
    rng = random.Random(f"questions-{seed}-{train}" + (f"-epoch{epoch}" if epoch else ""))
    leaves = sorted(taxonomy.leaves)
    out: list[Example] = []
    for row, concept in images:
        q = mapping[concept]
        out.append(Example(row, image_question(taxonomy.phrase(q)), "Yes", "leaf", q, q))
        d = rng.choice(leaves)
        while d == q:
            d = rng.choice(leaves)
        out.append(Example(row, image_question(taxonomy.phrase(d)), "No", "leaf", q, d))
        for h in sorted(taxonomy.hypernyms_of(q)):
            unseen = q in removed.get(h, frozenset())
            if train and unseen:
                continue
            depth = taxonomy.depth(h)
            out.append(Example(row, image_question(taxonomy.phrase(h)), "Yes", "hypernym", q, h, h, depth, not unseen))
            dh = taxonomy.distractor(q, h)
            out.append(Example(row, image_question(taxonomy.phrase(dh)), "No", "hypernym", q, dh, h, depth, not unseen))
    return out


def text_test_items(taxonomy) -> list[dict]:
    """One item per (leaf, hypernym) pair with its distractor, for the LM-only test."""
    items = []
    for leaf in sorted(taxonomy.leaves):
        for h in sorted(taxonomy.hypernyms_of(leaf)):
            items.append({"leaf": leaf, "hypernym": h, "distractor": taxonomy.distractor(leaf, h), "depth": taxonomy.depth(h)})
    return items


def truth_question(leaf_phrase: str, hyp_phrase: str) -> str:
    return f"Is it true that {leaf_phrase} is {hyp_phrase}?"


def cloze_prompt(leaf_phrase: str) -> str:
    return f"{leaf_phrase[0].upper()}{leaf_phrase[1:]} is a kind of"
