"""Helpers shared by the benchmarks: matmul peak, FLOP counting, timing, result files, the
leaf readout score of image tokens."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Callable

import torch

from interp.io import environment, write_json
from interp.metrics import macro_f1

OUT = Path(__file__).resolve().parent / "results"


def matmul_peak(n: int = 2048, repeats: int = 5, dtype: torch.dtype = torch.float32) -> float:
    """Achieved FLOP/s of a square fp32 matmul, best of ``repeats`` (the peak we compare to)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs executed by ``fn`` (matmuls, convolutions, attention), counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def timed(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median seconds per call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


def parser(doc: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=doc)
    ap.add_argument("--quick", action="store_true", help="small sizes for CI")
    return ap


def save(name: str, result: dict) -> Path:
    path = OUT / f"{name}.json"
    write_json(path, {**result, "environment": environment(), "threads": torch.get_num_threads()})
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, list)}, indent=2))
    return path


@torch.no_grad()
def leaf_readout(ask, V: torch.Tensor, own: list[str], dist: list[str], batch_size: int = 64) -> dict:
    """Leaf questions read from image tokens ``V [n, d_model]`` (or ``[n, k, d_model]``): image
    ``i`` asked about its own leaf ``own[i]`` (Yes) and a distractor ``dist[i]`` (No), by
    ``ask`` (:class:`~interp.studies.taxonomy.prototypes.ImageTokenQuestions`); the margin
    log P(" Yes") - log P(" No") thresholded at 0. Returns leaf macro F1, pairwise accuracy
    (own margin above distractor margin), yes rate and the F1 at the best threshold."""
    def margins(asked):
        return torch.cat([ask.margins(V[s:s + batch_size], asked[s:s + batch_size])
                          for s in range(0, len(asked), batch_size)])

    pos, neg = margins(own), margins(dist)
    m, truth = torch.cat([pos, neg]), ["Yes"] * len(pos) + ["No"] * len(neg)
    f1 = lambda t: macro_f1(truth, ["Yes" if v > t else "No" for v in m.tolist()])
    return {"leaf_f1": f1(0.0), "pairwise": 100.0 * float((pos > neg).float().mean()),
            "yes_rate": 100.0 * float((m > 0).float().mean()),
            "best_f1": max(f1(t) for t in torch.quantile(m, torch.linspace(0.05, 0.95, 37)).tolist())}


def yes_no_step(ask, opt: torch.optim.Optimizer, V: torch.Tensor, yes: list[str], no: list[str], curve: list[dict],
                step: int, t0: float) -> float:
    """One optimiser step of the LM loss on image tokens ``V [n, d_model]`` (or ``[n, k,
    d_model]``): row ``i`` asked about ``yes[i]`` (answer Yes) and ``no[i]`` (No), by ``ask``
    (:class:`~interp.studies.taxonomy.prototypes.ImageTokenQuestions`). Appends the loss and the
    seconds since ``t0`` to ``curve`` and prints every 10 steps; returns the loss."""
    loss = ask.loss(torch.cat([V, V]), list(yes) + list(no), ["Yes"] * len(yes) + ["No"] * len(no))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    value = loss.item()
    curve.append({"step": step, "loss": value, "seconds": time.perf_counter() - t0})
    if step % 10 == 0:
        print(f"step {step} loss {value:.4f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return value

