"""Binding study: cost of a training step of each preset, and what a whole study costs.

For ``experiments/binding_cpu.toml`` and ``experiments/binding_full.toml`` (the brief's 12 x
128 decoder, 216-symbol pools, 8 objects), with each preset's own training layout (dense
queries, lookups, the middle-block loss): the median seconds of one optimiser step of the
text segment (forward, backward, AdamW) on this CPU at one thread, its FLOPs (counted by
torch), the achieved fraction of this CPU's fp32 matmul peak, the aten ops per step, and
the projected wall time of one seed and of the whole study (every seed, the text segment
plus each regime's image and mix segments, costed at the text step: the image segments
are shorter sequences). The GPU projection is an estimate, not a measurement (no GPU
here): a step costs at least its FLOPs at ``--gpu-tflops`` achieved and at least its ops
at ``--launch-us`` each (small models on a GPU are bound by kernel launches).

    .venv/bin/python benchmarks/bench_binding.py [--quick]

``--quick`` (CI): the CPU preset only, 3 timed steps.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import count_flops, matmul_peak, parser, save  # noqa: E402

from interp.studies.binding.config import BindingConfig, load_config  # noqa: E402
from interp.studies.binding.model import BindingModel  # noqa: E402
from interp.studies.binding.task import Vocab  # noqa: E402
from interp.studies.binding.train import Sources, answer_loss  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def count_ops(fn) -> int:
    """aten operators dispatched by ``fn`` (forward and backward): a proxy for GPU kernel launches."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sum(1 for e in prof.events() if e.name.startswith("aten::") and e.cpu_parent is None)


def step_cost(cfg: BindingConfig, repeats: int) -> dict:
    """Seconds, FLOPs and ops of one text-segment training step of ``cfg`` (batch ``train.batch_size``)."""
    vocab = Vocab(cfg.task, lookups=cfg.train.lookups)
    src = Sources(cfg.task, vocab)
    model = BindingModel(cfg.model, vocab, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
    t = cfg.train
    batches = [src.batch("text", np.random.default_rng([0, i]), t.batch_size, dense=t.dense, queries=t.queries,
                         lookups=t.lookups) for i in range(repeats + 1)]

    def step(i: int = 0) -> None:
        lay, ext = batches[i]
        (answer_loss(model, lay, ext, t)["loss"] / t.batch_size).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # warm-up
    times = []
    for i in range(1, repeats + 1):
        t0 = time.perf_counter()
        step(i)
        times.append(time.perf_counter() - t0)
    flops = count_flops(step)
    return {"seconds_per_step": float(np.median(times)), "flops_per_step": flops, "ops_per_step": count_ops(step),
            "tokens_per_step": int(batches[0][0].ids.numel()), "seq_len": int(batches[0][0].ids.shape[1]),
            "params": sum(p.numel() for p in model.parameters())}


def study_steps(cfg: BindingConfig) -> tuple[int, int]:
    """(optimiser steps of one seed, of the whole study): the curriculum stages and the text segment,
    + every regime's segment 2. Stage steps are costed as text steps (an upper bound: a stage with
    fewer objects has shorter sequences)."""
    t = cfg.train
    per_seed = sum(st[2] for st in t.stages) + t.text_steps + len(cfg.regimes) * (t.image_steps + t.mix_steps)
    return per_seed, per_seed * len(cfg.seeds)


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--gpu-tflops", type=float, default=20.0,
                    help="assumed achieved GPU throughput for the projection (TFLOP/s; default 20)")
    ap.add_argument("--launch-us", type=float, default=10.0,
                    help="assumed GPU cost per op launch for the projection (microseconds; default 10)")
    args = ap.parse_args()
    if args.gpu_tflops <= 0 or args.launch_us <= 0:
        ap.error(f"--gpu-tflops={args.gpu_tflops} and --launch-us={args.launch_us} must be > 0")
    torch.set_num_threads(1)
    presets = ["binding_cpu"] if args.quick else ["binding_cpu", "binding_full"]
    repeats = 3 if args.quick else 10
    peak = matmul_peak(1024 if args.quick else 2048)
    rows = []
    for name in presets:
        cfg = load_config(ROOT / "experiments" / f"{name}.toml")
        cost = step_cost(cfg, repeats if name == "binding_cpu" else max(3, repeats // 3))
        per_seed, total = study_steps(cfg)
        s = cost["seconds_per_step"]
        gpu_s = max(cost["flops_per_step"] / (args.gpu_tflops * 1e12), cost["ops_per_step"] * args.launch_us * 1e-6)
        rows.append({"preset": name, **cost, "fraction_of_peak": cost["flops_per_step"] / s / peak,
                     "steps_per_seed": per_seed, "steps_total": total, "seeds": len(cfg.seeds),
                     "cpu_hours_per_seed": per_seed * s / 3600, "cpu_hours_total": total * s / 3600,
                     "gpu_seconds_per_step_projected": gpu_s, "gpu_hours_total_projected": total * gpu_s / 3600})
        print(f"{name}: {s * 1e3:.0f} ms/step on 1 thread ({cost['flops_per_step'] / 1e9:.2f} GFLOP, "
              f"{cost['ops_per_step']} ops, seq {cost['seq_len']}); one seed {per_seed} steps = "
              f"{per_seed * s / 3600:.1f} CPU-h; study {total} steps = {total * s / 3600:.1f} CPU-h; "
              f"projected GPU {gpu_s * 1e3:.1f} ms/step, {total * gpu_s / 3600:.2f} h")
    save("binding_quick" if args.quick else "binding", {
        "matmul_peak_flops": peak, "gpu_tflops_assumed": args.gpu_tflops, "launch_us_assumed": args.launch_us,
        "rows": rows})


if __name__ == "__main__":
    main()
