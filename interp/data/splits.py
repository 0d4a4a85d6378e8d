"""Deterministic train/val/test splits of an image set."""

from __future__ import annotations

import random

from interp.data.image_records import ImageRecord, ImageSet
from interp.data.image_sources import source_family
from interp.io import stable_hash

SPLITS = ("train", "val", "test")


def split_images(image_set: ImageSet, scheme: str = "renderings", seed: int = 0,
                 fractions: tuple[float, float] = (0.70, 0.05)) -> dict[str, list[ImageRecord]]:
    """Deterministic per-concept splits -> {"train", "val", "test"} lists of records.

    - ``"renderings"`` (embedded set): whole source families are held out, so a test image is
      never a resize or restyle of a training image. Per concept the families (google,
      twitter, openmoji, fluent = flat + modern, tuxpaint) are sorted and shuffled with a
      seed derived from (seed, concept); the first goes to test, the second to val (when the
      concept has >= 3 families), the rest to train.
    - ``"things"``: per concept the file list sorted by key; the first 70% train, the next
      5% val, the rest test (``int`` of the cumulative fractions; no randomness, seed unused).
    """
    by_c = image_set.by_concept()
    out: dict[str, list[ImageRecord]] = {s: [] for s in SPLITS}
    if scheme == "renderings":
        for concept in sorted(by_c):
            recs = by_c[concept]
            fams = sorted({source_family(r.source) for r in recs})
            random.Random(stable_hash(["split", seed, concept])).shuffle(fams)
            if len(fams) >= 3:
                role = {fams[0]: "test", fams[1]: "val", **{f: "train" for f in fams[2:]}}
            elif len(fams) == 2:
                role = {fams[0]: "test", fams[1]: "train"}
            else:
                role = {f: "train" for f in fams}
            for r in sorted(recs, key=lambda r: r.key):
                out[role[source_family(r.source)]].append(r)
    elif scheme == "things":
        p_train, p_val = round(fractions[0] * 1000), round(fractions[1] * 1000)  # integer arithmetic
        for concept in sorted(by_c):
            recs = sorted(by_c[concept], key=lambda r: r.key)
            n = len(recs)
            a, b = n * p_train // 1000, n * (p_train + p_val) // 1000
            out["train"] += recs[:a]
            out["val"] += recs[a:b]
            out["test"] += recs[b:]
    else:
        raise ValueError(f"unknown split scheme {scheme!r}: use 'renderings' (embedded set) or 'things'")
    return out
