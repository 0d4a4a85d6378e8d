"""Projector training throughput on the embedded default (gemma-3-270m, EfficientNet-Lite0 shapes).

Reports training examples/s and the achieved FLOP/s of the LM forward+backward (FLOPs
counted by torch's FlopCounterMode on the real step) as a fraction of an fp32 matmul peak
measured in the same process; and the same for the usual full-logits loss, for contrast.
Target (issue 3): >= 50% of peak at batch 16 with 49 image tokens.

    .venv/bin/python benchmarks/bench_train.py [--quick]
"""

from __future__ import annotations

import sys

import torch

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from common import count_flops, matmul_peak, parser, save, timed  # noqa: E402

from interp.examples import Example, QuestionTokens, example_batch  # noqa: E402
from interp.models.hooked import HookedLM  # noqa: E402
from interp.models.lm import load_lm  # noqa: E402
from interp.vlm import HookedVLM  # noqa: E402


def main() -> None:
    args = parser(__doc__).parse_args()
    torch.manual_seed(0)
    lm = HookedLM(load_lm("smollm2-135m" if args.quick else "gemma-3-270m"))
    bs, n_tok = (4, 16) if args.quick else (16, 49)
    proj = HookedVLM.new_projector(lm, "efficientnet-lite0", 1280, n_tok)
    vlm = HookedVLM(lm, proj)
    feats = torch.randn(bs, n_tok, 1280)
    words = ["bird", "fish", "musical instrument", "vegetable", "item of clothing", "tool", "vehicle", "fruit"]
    exs = [Example(i, f"Is there a {words[i % 8]} in the image?", "Yes" if i % 2 else "No", "hypernym", "c", words[i % 8])
           for i in range(bs)]
    batch, f = example_batch(QuestionTokens(lm.tokenizer), exs, feats, n_tok, with_answer=True)
    opt = torch.optim.AdamW(proj.parameters(), lr=1e-3)

    def step_answer_only():
        opt.zero_grad()
        vlm.answer_loss(batch, f).backward()
        opt.step()

    def step_full_logits():
        opt.zero_grad()
        out = vlm(batch, f, logits_at=None)
        predicts, targets = batch.answer_targets()
        logits = lm.unembed(out.resid)[predicts]  # the usual way: every position, few used
        torch.nn.functional.cross_entropy(logits, targets).backward()
        opt.step()

    peak = matmul_peak()
    reps = 2 if args.quick else 5
    res = {"lm": lm.name, "batch": bs, "image_tokens": n_tok, "seq_len": batch.shape[1], "matmul_peak_gflops": peak / 1e9}
    for name, fn in [("answer_only", step_answer_only), ("full_logits", step_full_logits)]:
        flops = count_flops(fn)
        sec = timed(fn, reps)
        res[f"{name}_examples_per_s"] = bs / sec
        res[f"{name}_gflop_per_step"] = flops / 1e9
        res[f"{name}_fraction_of_peak"] = flops / sec / peak
    res["speedup_answer_only_vs_full"] = res["answer_only_examples_per_s"] / res["full_logits_examples_per_s"]
    save("train_quick" if args.quick else "train", res)


if __name__ == "__main__":
    main()
