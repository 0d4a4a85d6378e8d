"""`python -m interp.alignment CONFIG`: visual alignment of language models (brief, section D).

For every LM of the config (each registered LM available here by default, plus its
random-init controls) and every requested layer: the frozen LM's last-token residual of
"A photo of a {class}" (cached once per LM as safetensors), frozen pooled image features
(the taxonomic study's cache), a small contrastive head trained on some classes, and
zero-shot top-1/top-5 on classes never seen in training (strict split by concept and/or
by whole top-level hypernym), over seeds with 95% intervals. Then the LM-only hypernym
test of the taxonomic study per LM and the correlation of the two. Writes results.csv,
summary.csv, scores.csv, lm_only.csv, correlation.json, report.md and figures (HTML + PNG)
to the config's out_dir and prints the report. Finished units are skipped on a re-run.

Examples:
    python -m interp.alignment experiments/alignment_quick.toml
    python -m interp.alignment experiments/alignment_quick.toml --set models.lms=['smollm2-135m'] \\
        --set split.seeds=[0] --out runs/alignment-smollm
"""

from __future__ import annotations

import argparse

from interp.configfile import add_study_args, load_study_config, run_source
from interp.pages import open_hint
from interp.studies.alignment.config import load_config
from interp.studies.alignment.report import headline_text
from interp.studies.alignment.run import run


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m interp.alignment", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_study_args(ap, "alignment TOML (experiments/alignment_quick.toml, alignment_full.toml)",
                   "--set split.seeds=[0,1] --set models.layers='every:4'")
    args = ap.parse_args(argv)
    cfg = load_study_config(ap, args, load_config)
    result = run(cfg, progress=not args.no_progress, source=run_source(args))
    print(f"[alignment] done in {result['seconds'] / 60:.1f} min; results in {cfg.out_dir}")
    print(headline_text(result["scores"]))
    print("\n".join(open_hint(result["page"], cfg.out_dir)))


if __name__ == "__main__":
    main()
