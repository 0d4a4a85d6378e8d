"""``python -m interp.train CONFIG --world W --ablation A --seed S``: train (and evaluate) one run
of a taxonomy study config, in one process or under ``torchrun`` (the job is
:func:`interp.studies.taxonomy.jobs.run_spec`; the trainer itself is
:mod:`interp.train_projector`, which knows no study)::

    python -m interp.train experiments/paper.toml --world within --seed 42
    torchrun --nproc_per_node 4 -m interp.train experiments/paper.toml --world within --seed 42
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from interp import distributed as D
from interp.configfile import add_dry_run, dry_run_exit, load_or_exit
from interp.runlock import RunLocked, run_lock
from interp.studies.taxonomy.conditions import WORLDS
from interp.studies.taxonomy.config import load_config, parse_ablation
from interp.studies.taxonomy.jobs import run_spec
from interp.studies.taxonomy.run import RunSpec


def main(argv: list[str] | None = None) -> None:
    """`python -m interp.train CONFIG --world W --ablation A --seed S [--random-init]`: one run
    (also under `torchrun --nproc_per_node N -m interp.train ...`)."""
    ap = argparse.ArgumentParser(prog="python -m interp.train",
                                 description="Train one projector run of a study config (one process or torchrun/DDP).")
    ap.add_argument("config", help="study TOML, e.g. experiments/quick.toml")
    ap.add_argument("--world", default="original", choices=WORLDS)
    ap.add_argument("--ablation", default="random:1.0", help="random:<rate> | systematic:<n>")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--random-init", action="store_true", help="the random-init LM control")
    ap.add_argument("--no-eval", action="store_true", help="train only")
    ap.add_argument("--device", help="override model.device (cpu | cuda); under torchrun cuda means cuda:LOCAL_RANK")
    ap.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help="override model.dtype (the frozen LM's)")
    ap.add_argument("--out", help="output folder (default: the config's out_dir)")
    ap.add_argument("--shard-lm", action="store_true",
                    help="under torchrun: shard the frozen LM's blocks across ranks (FSDP2) when it does not fit on one device")
    add_dry_run(ap)
    args = ap.parse_args(argv)
    try:
        parse_ablation(args.ablation)
    except ValueError as e:
        ap.error(f"--ablation {args.ablation!r}: {e}")
    overrides = {k: v for k, v in {"model.device": args.device, "model.dtype": args.dtype, "out_dir": args.out}.items()
                 if v is not None}
    cfg = load_or_exit(ap, load_config, args.config, overrides)
    spec = RunSpec(args.world, args.ablation, args.seed, args.random_init)
    run_dir = Path(cfg.out_dir) / "runs" / spec.run_id
    if args.dry_run:
        dry_run_exit(ap, f"{args.config}, run {spec.run_id}", cfg)
    try:  # one writer per run folder, checked before any model loads (rank 0 writes under torchrun)
        with run_lock(run_dir) if D.is_main() else contextlib.nullcontext():
            rows = run_spec(cfg, spec, evaluate=not args.no_eval, shard_lm=args.shard_lm)
        if D.is_main():
            print(f"[train] {spec.run_id}: {len(rows)} result rows in {run_dir}")
    except RunLocked as e:
        ap.exit(2, f"python -m interp.train: error: {e}\n")
    finally:
        D.teardown()


if __name__ == "__main__":
    main()
