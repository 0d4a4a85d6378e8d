"""LM class features for the alignment study: every block in one pass + safetensors cache,
vs one truncated forward per block (stop_at_layer, the cheapest per-layer way), same prompts.

Measures, in one run on gemma-3-270m: the speed-up of the single pass over the per-layer
passes (identical features required), and of a cache hit over computing.

    .venv/bin/python benchmarks/bench_alignment.py [--quick]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import parser, save  # noqa: E402

from interp.analysis.class_features import cached_lm_class_features, class_prompts, lm_class_features  # noqa: E402
from interp.data.images import embedded_taxonomy  # noqa: E402
from interp.models.hooked import HookedLM  # noqa: E402
from interp.models.lm import load_lm  # noqa: E402
from interp.sequence import Modality, Segment, build_batch  # noqa: E402


@torch.no_grad()
def per_layer(lm, prompts: list[str], batch_size: int) -> torch.Tensor:
    """``[layers, n, d]`` by one forward per block, truncated after that block."""
    out = torch.empty(lm.n_layers, len(prompts), lm.d_model)
    for s in range(0, len(prompts), batch_size):
        chunk = prompts[s:s + batch_size]
        b = build_batch(lm.tokenizer, [[Segment("bos"), Segment("text", p)] for p in chunk], 0)
        emb, last, rows = lm.embed_tokens(b.input_ids), b.last(Modality.TEXT), torch.arange(len(chunk))
        for i in range(lm.n_layers):
            h = lm(emb, b.attention_mask, stop_at_layer=i + 1)  # resid_pre of block i+1 = resid_post of i
            out[i, s:s + len(chunk)] = h[rows, last].float()
    return out


def main() -> None:
    args = parser(__doc__).parse_args()
    lm = HookedLM(load_lm("gemma-3-270m"))
    tax = embedded_taxonomy()
    classes = tax.leaves[:48] if args.quick else tax.leaves
    prompts = class_prompts(classes, tax.phrase)
    t = time.perf_counter()
    one = lm_class_features(lm, prompts, batch_size=64)
    t_one = time.perf_counter() - t
    t = time.perf_counter()
    many = per_layer(lm, prompts, 64)
    t_many = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as d:
        cached_lm_class_features(lm, prompts, cache_dir=Path(d))
        t = time.perf_counter()
        hit, _ = cached_lm_class_features(lm, prompts, cache_dir=Path(d))
        t_hit = time.perf_counter() - t
    save("alignment_quick" if args.quick else "alignment", {
        "lm": lm.name, "n_prompts": len(prompts), "n_layers": lm.n_layers,
        "one_pass_s": t_one, "per_layer_s": t_many, "speedup_one_pass": t_many / t_one,
        "cache_hit_s": t_hit, "speedup_cache_hit": t_one / t_hit,
        "max_abs_diff": float((one - many).abs().max()), "identical_cache": bool(torch.equal(hit, one)),
    })


if __name__ == "__main__":
    main()
