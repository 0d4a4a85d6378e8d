"""How well do the frozen features see held-out renderings? (the vision limit of the quick study)

A multinomial logistic regression (``interp.warmstart.fit_classifier``, L2 1e-4, the quick
study's warm start) is fitted on the pooled features of the train renderings and scored top-1
on the val and test renderings (whole source families held out: another artist's emoji, or a
Tux Paint photo). The quick study's projector is this classifier followed by a map onto the LM's
concept prototypes, so its held-out leaf recall cannot exceed this top-1 (docs/training.md).

Encoders: EfficientNet-Lite0 (the embedded default), Lite1 at 224 px (same 7x7 grid) and both
concatenated per token (the quick study's encoder); max and mean pooling over the grid.
Results: ``benchmarks/results/vision[_quick].json``.

    .venv/bin/python benchmarks/bench_vision.py [--quick]
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import parser, save  # noqa: E402

from interp.data import images as img  # noqa: E402
from interp.features import encode_cached  # noqa: E402
from interp.models.encoders import load_encoder  # noqa: E402
from interp.projector import pool_tokens  # noqa: E402
from interp.warmstart import fit_classifier  # noqa: E402

ENCODERS = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite0+lite1")


def main() -> None:
    args = parser(__doc__).parse_args()
    t0 = time.perf_counter()
    image_set = img.load_image_set(img.build_embedded_images(progress=False))
    concepts = sorted(set(image_set.concepts) & set(img.embedded_taxonomy().leaves))
    if args.quick:
        concepts = sorted(random.Random(0).sample(concepts, 40))
    image_set = image_set.restrict(concepts)
    splits = img.split_images(image_set, "renderings", seed=0)
    records = [r for s in ("train", "val", "test") for r in splits[s]]
    index = {c: i for i, c in enumerate(concepts)}
    labels = {s: torch.tensor([index[r.concept] for r in splits[s]]) for s in splits}
    where, at = {}, 0
    for s in ("train", "val", "test"):
        where[s] = slice(at, at + len(splits[s]))
        at += len(splits[s])
    rows = []
    for name in ENCODERS[-1:] if args.quick else ENCODERS:
        enc = load_encoder(name)
        feats = encode_cached(enc, [r.path for r in records], [r.key for r in records], progress=False).features
        for pool in ("max", "mean"):
            x = pool_tokens(feats.float(), 1, pool)[:, 0]  # [images, d]
            W, b = fit_classifier(x[where["train"]], labels["train"], len(concepts), l2=1e-4)
            top1 = {s: 100.0 * float(((x[where[s]] @ W.T + b).argmax(1) == labels[s]).float().mean())
                    for s in ("train", "val", "test")}
            rows.append({"encoder": name, "d": enc.d_model, "pool": pool, **{f"top1_{s}": v for s, v in top1.items()}})
            print(f"{name:26s} {pool:4s} top-1 train {top1['train']:5.1f}  val {top1['val']:5.1f}  "
                  f"test {top1['test']:5.1f}", flush=True)
    if args.quick:  # the classifier must fit its train renderings and see held-out ones far above chance
        best = max(r["top1_val"] for r in rows)
        assert min(r["top1_train"] for r in rows) > 95.0 and best > 5 * 100.0 / len(concepts), rows
    save("vision_quick" if args.quick else "vision",
         {"n_concepts": len(concepts), "n_images": {s: len(v) for s, v in splits.items()}, "l2": 1e-4,
          "rows": rows, "seconds": time.perf_counter() - t0})


if __name__ == "__main__":
    main()
