"""`python -m interp.binding CONFIG`: the binding study (section C of the brief), end to end.

Trains the decoder from scratch (text-only segment once per seed, then each regime's
curriculum), evaluates text accuracy in and out of distribution and the image / noise
versions, runs the interchange interventions, attention knockout and probes, and writes
the tables, report, figures and results page (report.html) to the config's ``out_dir``.
Finished units are skipped on a re-run; an interrupted training segment resumes from its
last checkpoint. The console ends with the headline and how to open the page.

Examples:
    python -m interp.binding experiments/binding_quick.toml
    python -m interp.binding experiments/binding_full.toml --set device=cuda --set seeds=[0,1,2]
    python -m interp.binding experiments/binding_quick.toml --set train.text_steps=200 --out runs/b-smoke
"""

from __future__ import annotations

import argparse
from pathlib import Path

from interp.configfile import add_study_args, load_study_config, run_source
from interp.pages import open_hint
from interp.studies.binding.config import load_config
from interp.studies.binding.report import headline_text
from interp.studies.binding.run import run_study


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m interp.binding", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_study_args(ap, "study TOML (experiments/binding_quick.toml, binding_full.toml)",
                   "--set train.text_steps=500 --set seeds=[0,1] (threads: --set threads=N)", threads=False)
    args = ap.parse_args(argv)
    cfg = load_study_config(ap, args, load_config)  # threads: the config's
    summary = run_study(cfg, progress=not args.no_progress, source=run_source(args))
    print(f"[binding] done in {summary['seconds'] / 60:.1f} min; results in {cfg.out_dir}")
    print(headline_text(summary, cfg.to_dict()))
    print(f"report: {Path(cfg.out_dir) / 'report.md'}")
    print("\n".join(open_hint(summary["page"], cfg.out_dir)))


if __name__ == "__main__":
    main()
