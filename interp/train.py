"""``python -m interp.train CONFIG --world W --ablation A --seed S``: train (and evaluate) one run
of a taxonomy study config, in one process or under ``torchrun`` (the trainer itself is
:mod:`interp.train_projector`, which knows no study)::

    python -m interp.train experiments/paper.toml --world within --seed 42
    torchrun --nproc_per_node 4 -m interp.train experiments/paper.toml --world within --seed 42
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from dataclasses import replace
from pathlib import Path

from interp import distributed as D
from interp.conditions import WORLDS
from interp.configfile import add_dry_run, dry_run_exit, load_or_exit
from interp.io import read_json
from interp.runlock import RunLocked, run_lock
from interp.models.encoders import load_encoder
from interp.studies import taxonomy as study
from interp.studies.config import load_config, parse_ablation
from interp.studies.taxonomy import RunSpec


def warm_caches(cfg, progress: bool = True) -> None:
    """Build the image set, cache the encoder features and learn the LMs' concept prototypes
    (when the warm start uses them: the pretrained LM and each random-init control LM of the
    grid) once, so that parallel ranks or jobs started afterwards only read the caches."""
    data = study.load_data(cfg, load_encoder(cfg.model.encoder, device=cfg.model.device), progress=progress)
    if cfg.warm_start.kind != "prototypes":
        return
    lms = sorted({(r.random_init, r.seed if r.random_init else 0) for r in study.grid_runs(cfg)})
    for random_init, seed in lms:
        lm = study.load_study_lm(cfg, random_init, seed)
        study.study_prototypes(lm, data, cfg, progress)
        del lm


def run_spec(cfg, spec, *, evaluate: bool = True, progress: bool = True, shard_lm: bool = False) -> list[dict]:
    """Train (and evaluate) one run of a study config, in one process or under torchrun.

    One process: :func:`interp.studies.taxonomy.single_run`. Under torchrun: rank 0 warms
    the caches while the others wait, every rank loads the LM (``cfg.model.device="cuda"``
    puts rank r on ``cuda:LOCAL_RANK``) and trains (DDP on the projector); with
    ``shard_lm`` the LM's blocks are sharded across ranks (FSDP2) and every rank takes part
    in scoring the test questions, else rank 0 scores them alone. Rank 0 writes.
    Returns the result rows (empty on ranks > 0 or with ``evaluate=False``).
    """
    info = D.setup(cfg.model.device)
    if not info.enabled:
        if shard_lm:
            raise ValueError("shard_lm needs several processes: launch with torchrun --nproc_per_node N")
        return study.single_run(cfg, spec, evaluate=evaluate, progress=progress)
    cfg = replace(cfg, model=replace(cfg.model, device=str(D.local_device(cfg.model.device, info))))
    out, show = Path(cfg.out_dir), progress and info.is_main
    rows_path = out / "runs" / spec.run_id / "rows.json"
    encoder = load_encoder(cfg.model.encoder, device=cfg.model.device)
    data = D.main_first(lambda: study.load_data(cfg, encoder, progress=show), info)  # rank 0 builds the caches
    lm = study.load_study_lm(cfg, spec.random_init, spec.seed)
    if shard_lm:
        D.shard_lm(lm, info)
    vlm = study.new_study_vlm(lm, encoder, cfg, spec.seed)
    summary = study.train_run(vlm, data, spec, cfg, out, show)
    if not evaluate or rows_path.exists() or not (info.is_main or shard_lm):
        return read_json(rows_path)["rows"] if evaluate and info.is_main and rows_path.exists() else []
    if shard_lm and not info.is_main:  # a sharded LM scores collectively: same forwards, scratch files
        with tempfile.TemporaryDirectory() as scratch:
            study.evaluate_run(vlm, data, spec, cfg, Path(scratch), False, summary)
        return []
    return study.evaluate_run(vlm, data, spec, cfg, out, show, summary)


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
