"""`python -m interp.sae CONFIG`: sparse autoencoders on a VLM's residual stream (issue 16).

Collects ``blocks.{l}.hook_resid_post`` over the taxonomic study's image questions and
concept/hypernym text prompts into an activation store, trains one TopK SAE per layer
(EleutherAI sparsify's SparseCoder), exports each in SAELens's format (``saes/``), and writes
summary.csv, sharing.csv, latents.csv, top_images.csv, top_tokens.csv, train_curve.csv,
report.md, figures and the results page (report.html; ``python -m interp.report OUT_DIR``
rebuilds it) to the config's out_dir. Finished pieces are skipped on a re-run.

Examples:
    python -m interp.sae experiments/sae_quick.toml
    python -m interp.sae experiments/sae_quick.toml --set data.lm=smollm2-135m --set model.layers=[4,8] \\
        --set data.checkpoint=runs/quick/runs/lm-original-100pct-s42/projector.safetensors --out runs/sae-smollm
"""

from __future__ import annotations

import argparse

from interp.configfile import add_study_args, load_study_config, run_source
from interp.pages import open_hint
from interp.studies.sae.config import load_config
from interp.studies.sae.report import headline_text
from interp.studies.sae.run import check_checkpoint, run


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m interp.sae", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_study_args(ap, "SAE TOML (experiments/sae_quick.toml)", "--set model.layers=[2,3] --set train.k=8")
    args = ap.parse_args(argv)
    cfg = load_study_config(ap, args, load_config, check=check_checkpoint,
                            what=lambda c: f"{args.config} (layers {c.model.layers}, k={c.train.k})")
    result = run(cfg, progress=not args.no_progress, source=run_source(args))
    print(f"[sae] done in {result['seconds'] / 60:.1f} min; results in {cfg.out_dir}")
    print(headline_text(result["summary"], result["sharing"]))
    print(f"report: {result['report']}")
    print("\n".join(open_hint(result["page"], cfg.out_dir)))


if __name__ == "__main__":
    main()
