"""`python -m interp.task_vectors CONFIG`: cross-modal task vectors and function vectors.

Loads the VLM of a trained projector checkpoint, extracts task vectors from text examples,
instructions and image examples, patches them into zero-shot text and image queries
(layer chosen on validation, reported on test), adds function vectors, and writes the
results table (report.md, results.csv ...) and figures to the config's out_dir. Finished
tasks are skipped on a re-run.

Examples:
    python -m interp.task_vectors experiments/task_vectors_quick.toml
    python -m interp.task_vectors experiments/task_vectors_full.toml --set data.tasks=["hypernym"]
    python -m interp.task_vectors experiments/task_vectors_quick.toml --set model.checkpoint=path/projector.safetensors
"""

from __future__ import annotations

import argparse
import ast
import os

import torch


def _value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m interp.task_vectors", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", help="TOML config (experiments/task_vectors_quick.toml, task_vectors_full.toml)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override a config value, e.g. --set method.n_prompts=8 --set data.tasks=['antonym']")
    ap.add_argument("--out", help="output folder (default: the config's out_dir)")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--figures", choices=("png", "html", "none"), default="png",
                    help="png: HTML and PNG (needs Chromium); html: HTML only; none")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: $OMP_NUM_THREADS if set, else all cores)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads or int(os.environ.get("OMP_NUM_THREADS") or 0) or os.cpu_count() or 1)

    from interp.studies.task_vectors import load_config, run_study

    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            ap.error(f"--set {item!r}: expected SECTION.KEY=VALUE")
        overrides[key] = _value(value)
    if args.out:
        overrides["out_dir"] = args.out
    cfg = load_config(args.config, overrides)
    summary = run_study(cfg, progress=not args.no_progress, source=args.config, figures=args.figures)
    print(summary["table"])
    print(f"[task vectors] done in {summary['seconds'] / 60:.1f} min; results in {cfg.out_dir}")


if __name__ == "__main__":
    main()
