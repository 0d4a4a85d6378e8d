"""A study grid on a Ray cluster: one Ray task per run, each keyed by its config hash.

    pip install "ray[default]"                     # not a dependency of interp
    ray start --head                               # or an existing cluster (RAY_ADDRESS)
    python examples/ray_sweep.py experiments/paper.toml --gpus-per-run 1
    python examples/ray_sweep.py experiments/paper.toml --dry-run     # the plan, without Ray

It calls the same function as ``python -m interp.sweep --run-index I`` (a SLURM array
task): :func:`interp.sweep.execute`, so finished runs are skipped, interrupted ones resume,
and a run folder of another configuration is refused. Ray places the tasks (``num_gpus``
each) and retries a task whose worker died (``--retries``); the run folder (``out_dir``)
must be on storage every node shares. After all tasks succeed it aggregates (LM-only
test, table, report, figures) on the driver unless ``--no-aggregate``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def run_one(cfg, index: int, evaluate: bool = True) -> dict[str, Any]:
    """One run of the grid, inside a Ray worker (or anywhere): what a SLURM array task does."""
    from interp.sweep import execute, list_runs

    return execute(cfg, list_runs(cfg)[index], evaluate=evaluate, progress=False)


def plan(cfg, evaluate: bool = True) -> list[dict[str, Any]]:
    """The runs still to do: index, key, run id, status."""
    from interp.sweep import list_runs, status

    rows = [{"index": r.index, "key": r.key, "run_id": r.run_id, "status": status(cfg, r, evaluate=evaluate)}
            for r in list_runs(cfg)]
    return [r for r in rows if r["status"] != "done"]


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    ap.add_argument("--out")
    ap.add_argument("--gpus-per-run", type=float, default=1.0)
    ap.add_argument("--cpus-per-run", type=float, default=4.0)
    ap.add_argument("--retries", type=int, default=2, help="re-run a task whose worker died (it resumes)")
    ap.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS or a local Ray)")
    ap.add_argument("--no-eval", action="store_true")
    ap.add_argument("--no-aggregate", action="store_true")
    ap.add_argument("--dry-run", action="store_true", help="print the runs that would be submitted; no Ray needed")
    args = ap.parse_args(argv)

    from interp.studies.taxonomy.config import load_config
    from interp.sweep import aggregate, parse_overrides

    cfg = load_config(args.config, parse_overrides(args.set, args.out))
    todo = plan(cfg, evaluate=not args.no_eval)
    if args.dry_run:
        for r in todo:
            print(f"would submit {r['index']:4d} {r['key']} {r['run_id']} ({r['status']})")
        return todo
    try:
        import ray
    except ImportError:
        sys.exit('ray is not installed: pip install "ray[default]" (or use examples/slurm_array.sh / interp.sweep)')

    ray.init(address=args.address)
    task = ray.remote(num_gpus=args.gpus_per_run, num_cpus=args.cpus_per_run, max_retries=args.retries)(run_one)
    refs = [task.remote(cfg, r["index"], not args.no_eval) for r in todo]
    records = []
    for ref in refs:
        rec = ray.get(ref)
        records.append(rec)
        print(f"[ray] {rec['index']:4d} {rec['run_id']}: {rec['status']}")
    if not args.no_aggregate and not args.no_eval:
        aggregate(cfg, source=args.config)
    return records


if __name__ == "__main__":
    main()
