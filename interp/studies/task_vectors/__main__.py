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

from interp.configfile import add_study_args, load_study_config, run_source
from interp.pages import open_hint
from interp.studies.task_vectors.config import load_config
from interp.studies.task_vectors.run import run_study


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m interp.task_vectors", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_study_args(ap, "TOML config (experiments/task_vectors_quick.toml, task_vectors_full.toml)",
                   "--set method.n_prompts=8 --set data.tasks=['antonym']")
    ap.add_argument("--figures", choices=("png", "html", "none"), default="png",
                    help="png: HTML and PNG (needs Chromium); html: HTML only; none")
    args = ap.parse_args(argv)
    cfg = load_study_config(ap, args, load_config)
    summary = run_study(cfg, progress=not args.no_progress, source=run_source(args), figures=args.figures)
    print(f"[task vectors] done in {summary['seconds'] / 60:.1f} min; results in {cfg.out_dir}")
    print(summary["table"])
    print("\n".join(open_hint(summary["page"], cfg.out_dir)))


if __name__ == "__main__":
    main()
