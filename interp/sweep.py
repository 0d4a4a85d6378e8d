"""Sweeps over a study grid as independent jobs, for a SLURM array, a Ray cluster or a shell loop.

Every run of a study config's grid (:func:`interp.studies.taxonomy.run.grid_runs`, in that
order) is one job, keyed by a hash of everything that determines its result: the
``data``, ``model`` and ``train`` sections (less ``model.device`` and
``train.checkpoint_every``, which change where and how often, not what) and the run's own
spec (world, ablation, seed, LM init). A job writes its results to
``<out_dir>/runs/<run_id>/`` (the layout ``python -m interp.run`` uses) plus
``sweep.json`` with its key; a finished run is skipped, an interrupted one resumes from
its checkpoint, and a run folder holding another configuration's results is refused.

    python -m interp.sweep CONFIG --list                  # index, key, run id, status
    python -m interp.sweep CONFIG --count                 # number of runs (for --array=0-(N-1))
    python -m interp.sweep CONFIG --prepare               # build images + cache features once
    python -m interp.sweep CONFIG --run-index I           # one run (I, or "env": $SLURM_ARRAY_TASK_ID)
    python -m interp.sweep CONFIG --shard i/n             # runs i, i+n, i+2n... one after the other
    python -m interp.sweep CONFIG --aggregate             # all done: LM-only test, table, report, figures
    torchrun --nproc_per_node 4 -m interp.sweep CONFIG --run-index I   # one run on 4 GPUs (DDP)

``examples/slurm_array.sh`` and ``examples/ray_sweep.py`` call these functions;
``docs/scaling.md`` says which to use when.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from interp import distributed as D
from interp.configfile import add_dry_run, dry_run_exit, load_or_exit, parse_sets
from interp.io import environment, read_json, stable_hash, write_json
from interp.studies.taxonomy.config import StudyConfig, load_config
from interp.studies.taxonomy.jobs import run_spec, warm_caches
from interp.studies.taxonomy.run import RunSpec, grid_runs, run_study

STATUSES = ("done", "partial", "pending")


class SweepConflictError(RuntimeError):
    """A run folder holds the results of another configuration."""


@dataclass(frozen=True)
class SweepRun:
    """One job of a sweep: its position in the grid, its spec and its key."""

    index: int
    spec: RunSpec
    key: str

    @property
    def run_id(self) -> str:
        return self.spec.run_id


def run_key(cfg: StudyConfig, spec: RunSpec) -> str:
    """Hash of what determines a run's result (see the module doc)."""
    d = cfg.to_dict()
    model = {k: v for k, v in d["model"].items() if k != "device"}
    train = {k: v for k, v in d["train"].items() if k not in ("checkpoint_every", "eval_every")}
    return stable_hash({"data": d["data"], "model": model, "train": train, "spec": asdict(spec),
                        "warm_start": d["warm_start"], "prototypes": d["prototypes"]})


def list_runs(cfg: StudyConfig) -> list[SweepRun]:
    """Every run of the grid, in :func:`grid_runs` order, with its key."""
    return [SweepRun(i, spec, run_key(cfg, spec)) for i, spec in enumerate(grid_runs(cfg))]


def run_dir(cfg: StudyConfig, run: SweepRun) -> Path:
    return Path(cfg.out_dir) / "runs" / run.run_id


def _recorded_key(cfg: StudyConfig, run: SweepRun) -> str | None:
    path = run_dir(cfg, run) / "sweep.json"
    return read_json(path)["key"] if path.exists() else None


def check_key(cfg: StudyConfig, run: SweepRun) -> None:
    """Raise :class:`SweepConflictError` if the run folder belongs to another configuration."""
    key = _recorded_key(cfg, run)
    if key is not None and key != run.key:
        raise SweepConflictError(
            f"{run_dir(cfg, run)} holds run {run.run_id!r} of another configuration (key {key}, this config's "
            f"key {run.key}); use another out_dir (--out) or remove that folder")


def status(cfg: StudyConfig, run: SweepRun, *, evaluate: bool = True) -> str:
    """"done" (results written), "partial" (a checkpoint or a trained projector awaiting
    evaluation) or "pending"."""
    d = run_dir(cfg, run)
    trained = (d / "projector.safetensors").exists() and (d / "train.json").exists()
    if (d / "rows.json").exists() or (trained and not evaluate):
        return "done"
    return "partial" if trained or (d / "checkpoint.pt").exists() else "pending"


def parse_shard(text: str) -> tuple[int, int]:
    """"i/n" -> (i, n) with 0 <= i < n."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"shard {text!r}: expected i/n, e.g. 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"shard {text!r}: need n >= 1 and i in 0..n-1")
    return i, n


def select(runs: Sequence[SweepRun], *, index: int | None = None, shard: tuple[int, int] | None = None) -> list[SweepRun]:
    """The run at ``index``, or shard ``(i, n)`` of the runs (i, i+n, ...), or all."""
    if index is not None:
        if not 0 <= index < len(runs):
            raise IndexError(f"run index {index} is out of range: this grid has runs 0..{len(runs) - 1}")
        return [runs[index]]
    if shard is not None:
        i, n = shard
        return list(runs[i::n])
    return list(runs)


def execute(cfg: StudyConfig, run: SweepRun, *, evaluate: bool = True, progress: bool = True,
            shard_lm: bool = False) -> dict[str, Any]:
    """Run one job (skipped when done; resumed when partial); under torchrun every rank calls
    this and the run trains with DDP (``shard_lm``: the LM's blocks sharded with FSDP2).
    Returns a record (status, seconds, key)."""

    check_key(cfg, run)
    before = status(cfg, run, evaluate=evaluate)
    record = {"index": run.index, "run_id": run.run_id, "key": run.key, "before": before}
    if before == "done":
        return {**record, "status": "skipped"}
    t0 = time.perf_counter()
    if D.is_main(D.launched()):  # claim the folder for this key before any output lands there
        write_json(run_dir(cfg, run) / "sweep.json", {"key": run.key, "spec": asdict(run.spec), "state": "started"})
    run_spec(cfg, run.spec, evaluate=evaluate, progress=progress, shard_lm=shard_lm)
    record = {**record, "status": "ran", "seconds": time.perf_counter() - t0}
    if D.is_main():
        write_json(run_dir(cfg, run) / "sweep.json", {
            **record, "spec": asdict(run.spec), "state": "done" if evaluate else "trained", "config": cfg.to_dict(),
            "config_hash": cfg.hash, "host": socket.gethostname(), "world_size": D.current().world_size,
            "slurm": {k: v for k, v in os.environ.items() if k in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID",
                                                                   "SLURM_ARRAY_TASK_ID")},
            "environment": environment()})
    return record


def execute_many(cfg: StudyConfig, runs: Sequence[SweepRun], **kw) -> list[dict[str, Any]]:
    """Run jobs one after the other (a shard); each is skipped when already done."""
    return [execute(cfg, run, **kw) for run in runs]


def aggregate(cfg: StudyConfig, *, progress: bool = True, source: str = "CONFIG") -> dict[str, Any]:
    """Once every run is done: the LM-only test, the tidy table, report and figures
    (:func:`interp.studies.taxonomy.run.run_study`, which then skips every run)."""
    runs = list_runs(cfg)
    for run in runs:
        check_key(cfg, run)
    missing = [r.run_id for r in runs if status(cfg, r) != "done"]
    if missing:
        raise RuntimeError(f"{len(missing)} of {len(runs)} runs are not done: {missing[:10]}"
                           f"{' ...' if len(missing) > 10 else ''}; run them first (--run-index / --shard)")
    return run_study(cfg, progress=progress, source=source)


def parse_overrides(items: Sequence[str], out: str | None = None) -> dict[str, Any]:
    """``["train.lr=1e-4", ...]`` -> ``{"train.lr": 1e-4}`` (the ``--set`` syntax of ``interp.run``)."""
    return parse_sets(items, out)


def _index_arg(value: str) -> int:
    if value == "env":
        raw = os.environ.get("SLURM_ARRAY_TASK_ID")
        if raw is None:
            raise ValueError("--run-index env: SLURM_ARRAY_TASK_ID is not set (not inside a SLURM array job)")
        value = raw
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"--run-index {value!r}: expected an integer or 'env'") from None


def main(argv: list[str] | None = None) -> list[dict[str, Any]] | None:
    ap = argparse.ArgumentParser(prog="python -m interp.sweep", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", help="study TOML (experiments/quick.toml, full.toml, paper.toml)")
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--list", action="store_true", help="print index, key, run id and status of every run")
    what.add_argument("--count", action="store_true", help="print the number of runs")
    what.add_argument("--prepare", action="store_true", help="build the image set and cache encoder features")
    what.add_argument("--run-index", metavar="I", help="run one job: an index, or 'env' for $SLURM_ARRAY_TASK_ID")
    what.add_argument("--shard", metavar="i/n", help="run jobs i, i+n, i+2n, ... in turn")
    what.add_argument("--aggregate", action="store_true", help="all runs done: write the table, report, figures")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a config value")
    ap.add_argument("--out", help="output folder (default: the config's out_dir)")
    ap.add_argument("--no-eval", action="store_true", help="train only (status 'done' once trained)")
    ap.add_argument("--json", action="store_true", help="--list as JSON lines")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--shard-lm", action="store_true", help="under torchrun: shard the frozen LM's blocks (FSDP2)")
    add_dry_run(ap)
    args = ap.parse_args(argv)
    try:
        overrides = parse_overrides(args.set, args.out)
        index = _index_arg(args.run_index) if args.run_index is not None else None
        shard = parse_shard(args.shard) if args.shard else None
    except ValueError as e:
        ap.error(str(e))
    cfg = load_or_exit(ap, load_config, args.config, overrides)
    runs = list_runs(cfg)
    evaluate, progress = not args.no_eval, not args.no_progress
    try:  # a bad index or shard is a user error, named before anything runs
        chosen = select(runs, index=index, shard=shard) if index is not None or shard else runs
    except (ValueError, IndexError) as e:
        ap.error(str(e))
    if args.dry_run:
        dry_run_exit(ap, f"{args.config} ({len(chosen)} of {len(runs)} runs)", cfg)
    if args.count:
        print(len(runs))
        return None
    if args.list:
        for r in runs:
            row = {"index": r.index, "key": r.key, "run_id": r.run_id, "status": status(cfg, r, evaluate=evaluate)}
            print(json.dumps(row) if args.json else f"{r.index:4d}  {r.key}  {r.run_id:40s}  {row['status']}")
        return None
    if args.prepare:
        warm_caches(cfg, progress)
        print(f"[sweep] caches ready for {cfg.name}: {len(runs)} runs")
        return None
    if args.aggregate:
        result = aggregate(cfg, progress=progress, source=args.config)
        print(f"[sweep] aggregated {len(runs)} runs into {cfg.out_dir}")
        return [result]

    try:
        records = execute_many(cfg, chosen, evaluate=evaluate, progress=progress, shard_lm=args.shard_lm)
    finally:
        D.teardown()
    if D.is_main(D.launched()):
        for rec in records:
            print(f"[sweep] {rec['index']:4d} {rec['run_id']}: {rec['status']}"
                  + (f" in {rec['seconds'] / 60:.1f} min" if "seconds" in rec else ""))
    return records


if __name__ == "__main__":
    main()
