"""SAE training throughput: tokens/s of the SAE study's training loop (EleutherAI sparsify's
TopK ``SparseCoder``, Adam, decoder-norm constraint, AuxK) on synthetic sparse activations of
a residual stream's width.

Full: d_model 576 (SmolLM2-135M), 8x expansion (4608 latents), k 32, batches of 1024 tokens,
65,536 tokens for 2 epochs, at 1 and at all torch threads. ``--quick`` (CI): d_model 64,
512 latents, k 8, 8,192 tokens, 1 epoch, 1 thread. Reported: tokens/s and the final
fraction of variance unexplained (to see the loop learns).

    .venv/bin/python benchmarks/bench_sae.py [--quick]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import parser, save  # noqa: E402

from interp.studies.sae.config import SaeTrainConfig  # noqa: E402
from interp.studies.sae.train import train_sae  # noqa: E402


def sparse_acts(n: int, d: int, n_dirs: int, active: int, seed: int = 0) -> torch.Tensor:
    """``[n, d]``: per token ~``active`` of ``n_dirs`` random unit directions, positive weights."""
    g = torch.Generator().manual_seed(seed)
    dirs = torch.nn.functional.normalize(torch.randn(n_dirs, d, generator=g), dim=-1)
    codes = (torch.rand(n, n_dirs, generator=g) < active / n_dirs) * torch.rand(n, n_dirs, generator=g)
    return codes @ dirs


def measure(x: torch.Tensor, cfg: SaeTrainConfig, threads: int) -> dict:
    torch.set_num_threads(threads)
    res = train_sae(x, cfg)
    return {"threads": threads, "tokens": res.tokens_seen, "seconds": res.seconds,
            "tokens_per_s": res.tokens_seen / res.seconds, "final_fvu": res.epoch_fvu[-1]}


def main() -> None:
    args = parser(__doc__).parse_args()
    if args.quick:
        d, n, cfg, threads = 64, 8192, SaeTrainConfig(n_latents=512, k=8, batch_size=512, epochs=1), [1]
    else:
        d, n, cfg = 576, 65536, SaeTrainConfig(expansion_factor=8, k=32, batch_size=1024, epochs=2)
        threads = sorted({1, torch.get_num_threads()})
    x = sparse_acts(n, d, n_dirs=4 * d, active=16)
    rows = [measure(x, cfg, t) for t in threads]
    save("sae_quick" if args.quick else "sae", {
        "d_model": d, "n_latents": cfg.latents(d), "k": cfg.k, "batch_size": cfg.batch_size, "epochs": cfg.epochs,
        "rows": rows, "tokens_per_s": max(r["tokens_per_s"] for r in rows), "library": "eai-sparsify SparseCoder"})


if __name__ == "__main__":
    main()
