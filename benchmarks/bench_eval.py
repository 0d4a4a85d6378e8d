"""Batched yes/no scoring vs one question per forward pass (the original's way), same questions.

Target (issue 3): >= 20x faster with identical predictions.

    .venv/bin/python benchmarks/bench_eval.py [--quick]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import parser, save  # noqa: E402

from interp.scoring import score_examples, score_one_at_a_time  # noqa: E402
from interp.examples import Example  # noqa: E402
from interp.models.hooked import HookedLM  # noqa: E402
from interp.models.lm import load_lm  # noqa: E402
from interp.vlm import HookedVLM  # noqa: E402

WORDS = ["bird", "fish", "musical instrument", "vegetable", "item of clothing", "tool", "vehicle", "fruit", "insect",
         "kitchen tool", "sports equipment", "dessert"]


def main() -> None:
    args = parser(__doc__).parse_args()
    lm = HookedLM(load_lm("gemma-3-270m"))
    n, n_tok = (48, 16) if args.quick else (256, 49)
    vlm = HookedVLM(lm, HookedVLM.new_projector(lm, "efficientnet-lite0", 1280, n_tok))
    per_image = 8  # as in the study: 2 leaf + 2 x ~3 hypernym questions per test image
    feats = torch.randn(n // per_image, n_tok, 1280, generator=torch.Generator().manual_seed(0))
    exs = [Example(i // per_image, f"Is there {'an' if WORDS[i % 12][0] in 'aeiou' else 'a'} {WORDS[i % 12]} in the image?",
                   "Yes", "hypernym", "c", WORDS[i % 12]) for i in range(n)]
    t = time.perf_counter()
    batched = score_examples(vlm, feats, exs, batch_size=64, progress=False)
    t_batched = time.perf_counter() - t
    t = time.perf_counter()
    single = score_one_at_a_time(vlm, feats, exs)
    t_single = time.perf_counter() - t
    save("eval_quick" if args.quick else "eval", {
        "lm": lm.name, "n_questions": n, "image_tokens": n_tok,
        "batched_questions_per_s": n / t_batched, "single_questions_per_s": n / t_single,
        "speedup": t_single / t_batched,
        "identical_predictions": bool(torch.equal(batched > 0, single > 0)),
        "max_abs_margin_diff": float((batched - single).abs().max()),
    })


if __name__ == "__main__":
    main()
