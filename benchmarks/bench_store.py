"""Peak memory of a full-layer activation cache over the embedded image set: held in memory
vs streamed to disk with :class:`interp.analysis.store.ActivationStore`.

Every image of the embedded set (the quick study's 2389 renderings; ``--quick``: 256) goes
through gemma-3-270m as [BOS, image tokens, "What is in the image?"] and
``blocks.{0..17}.hook_resid_post`` is cached at every position. Each mode runs in its own
subprocess so the peak resident set (``ru_maxrss``) is that mode's alone. Reported: peak
RSS per mode, the cache's size in bytes, the ratio, and that both give the same pooled
image-token activations.

    .venv/bin/python benchmarks/bench_store.py [--quick] [--tokens 49]
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import parser, save  # noqa: E402


def _batches(n_images: int, pool_to: int | None, batch_size: int = 32):
    from interp.models.hooked import HookedLM
    from interp.models.lm import load_lm
    from interp.sequence import vlm_item
    from interp.studies.taxonomy.config import load_config
    from interp.studies.taxonomy.run import load_data
    from interp.vlm import HookedVLM

    cfg = load_config(Path(__file__).resolve().parents[1] / "experiments" / "quick.toml")
    from interp.models.encoders import load_encoder

    data = load_data(cfg, load_encoder(cfg.model.encoder), progress=False)
    feats = data.features[:n_images]
    lm = HookedLM(load_lm("gemma-3-270m"))
    vlm = HookedVLM(lm, HookedVLM.new_projector(lm, cfg.model.encoder, feats.shape[-1], feats.shape[1], pool_to=pool_to))
    out = []
    for s in range(0, len(feats), batch_size):
        f = feats[s:s + batch_size]
        out.append((vlm.build([vlm_item(j, "What is in the image?") for j in range(len(f))]), f))
    return vlm, out


def worker(mode: str, n_images: int, pool_to: int | None, root: str) -> dict:
    from interp.analysis.store import ActivationStore, collect_to_store

    vlm, batches = _batches(n_images, pool_to)
    names = [f"blocks.{i}.hook_resid_post" for i in range(vlm.lm.n_layers)]
    last = names[-1]
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t = time.perf_counter()
    if mode == "memory":
        caches = []
        with torch.no_grad():
            for b, f in batches:
                _, c = vlm.run_with_cache(b, f, names=names, logits_at=None, device="cpu")
                caches.append(c)
        nbytes = sum(v.numel() * v.element_size() for c in caches for v in c.values())
        pooled = torch.cat([c.mean_over(last, "image") for c in caches])
    else:
        store = ActivationStore.create(root, names, meta={"bench": True})
        collect_to_store(vlm, batches, store, progress=False)
        nbytes = store.nbytes()
        pooled = store.reduce(last, "image")
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"mode": mode, "peak_rss_bytes": peak, "rss_before_bytes": base, "cache_bytes": nbytes,
            "seconds": seconds, "pooled_checksum": float(pooled.double().sum()), "rows": int(pooled.shape[0])}


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--tokens", type=int, default=1, help="image tokens per image (1 = the quick study's pooling; 49)")
    ap.add_argument("--worker", default=None, help=argparse_hidden())
    ap.add_argument("--root", default=None, help=argparse_hidden())
    args = ap.parse_args()
    n_images = 256 if args.quick else 100_000
    pool = None if args.tokens == 49 else args.tokens
    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker, n_images, pool, args.root)))
        return
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("memory", "store"):
            cmd = [sys.executable, __file__, "--worker", mode, "--root", str(Path(tmp) / "store"),
                   "--tokens", str(args.tokens)] + (["--quick"] if args.quick else [])
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ})
            line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
            if proc.returncode != 0 or line is None:
                raise SystemExit(f"{mode} worker failed:\n{proc.stderr[-3000:]}")
            results[mode] = json.loads(line[len("RESULT "):])
    mem, st = results["memory"], results["store"]
    save("store_quick" if args.quick else "store", {
        "lm": "gemma-3-270m", "images": mem["rows"], "image_tokens": args.tokens, "layers": 18,
        "cache_gib": mem["cache_bytes"] / 2**30, "store_on_disk_gib": st["cache_bytes"] / 2**30,
        "peak_rss_memory_gib": mem["peak_rss_bytes"] / 2**30, "peak_rss_store_gib": st["peak_rss_bytes"] / 2**30,
        "rss_before_caching_gib": mem["rss_before_bytes"] / 2**30,
        "peak_ratio_memory_over_store": mem["peak_rss_bytes"] / st["peak_rss_bytes"],
        "seconds_memory": mem["seconds"], "seconds_store": st["seconds"],
        "same_pooled_activations": abs(mem["pooled_checksum"] - st["pooled_checksum"]) <= 1e-6 * abs(mem["pooled_checksum"]) + 1e-3,
    })


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
