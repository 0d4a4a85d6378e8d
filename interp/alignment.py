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
import ast


def _value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m interp.alignment", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", help="alignment TOML (experiments/alignment_quick.toml, alignment_full.toml)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override a config value, e.g. --set split.seeds=[0,1] --set models.layers='every:4'")
    ap.add_argument("--out", help="output folder (default: the config's out_dir)")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: torch's, i.e. OMP_NUM_THREADS when set)")
    args = ap.parse_args(argv)
    import torch

    if args.threads is not None:
        if args.threads < 1:
            ap.error(f"--threads {args.threads}: must be >= 1")
        torch.set_num_threads(args.threads)

    from interp.studies.alignment import load_config, run

    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            ap.error(f"--set {item!r}: expected SECTION.KEY=VALUE")
        overrides[key] = _value(value)
    if args.out:
        overrides["out_dir"] = args.out
    try:
        cfg = load_config(args.config, overrides)
    except (FileNotFoundError, ValueError, TypeError) as e:
        ap.error(str(e))
    result = run(cfg, progress=not args.no_progress, source=args.config)
    print(f"[alignment] done in {result['seconds'] / 60:.1f} min; results in {cfg.out_dir}")


if __name__ == "__main__":
    main()
