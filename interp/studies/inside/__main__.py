"""`python -m interp.analyze CHECKPOINT`: look inside a trained VLM (probes, directions,
steering, logit lens, image-token readouts, similarity, patching + attribution), tables +
figures + report.md.

Examples:
    python -m interp.analyze runs/quick/runs/lm-original-100pct-s42/projector.safetensors
    python -m interp.analyze CKPT --only probes,lens --out runs/inside-smollm
    python -m interp.analyze CKPT --only image_lens --set image_lens_top_k=10
    python -m interp.analyze CKPT --set steering_layer=9 --set patch_clean=robin
"""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path

from interp.configfile import add_dry_run, dry_run_exit, parse_value
from interp.pages import open_hint
from interp.projector import Projector
from interp.studies.inside.config import ANALYSES, InsideConfig, parse_analyses
from interp.studies.inside.report import headline_text
from interp.studies.inside.run import run


def _setting(field_type, text: str):
    """A ``--set`` value (TOML, else Python literal, ``none``, else text); a tuple setting takes a
    comma list or one value (``steering_scales=0,2`` or ``steering_scales=2``)."""
    value = None if text.strip().lower() in ("none", "null") else parse_value(text)
    if "tuple" in str(field_type) and not isinstance(value, tuple):
        value = (value,)
    return value


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m interp.analyze", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path, help="projector.safetensors of a study run")
    ap.add_argument("--only", default="all", help=f"comma-separated subset of {', '.join(ANALYSES)}")
    ap.add_argument("--out", type=Path, default=None, help="output folder (default: runs/inside/<run id>)")
    ap.add_argument("--config", default="experiments/quick.toml", help="the study config the checkpoint came from")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any InsideConfig field")
    add_dry_run(ap)
    args = ap.parse_args(argv)
    known = {f.name: f for f in fields(InsideConfig)}
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in known:
            ap.error(f"--set {key}: unknown setting; known: {sorted(known)}")
        overrides[key] = _setting(known[key].type, value)

    try:  # from the header alone, before any model loads
        Projector.read_config(args.checkpoint)
    except (ValueError, FileNotFoundError) as e:
        ap.error(str(e))
    out = args.out or Path("runs/inside") / args.checkpoint.parent.name
    try:
        cfg = InsideConfig(checkpoint=str(args.checkpoint), out_dir=str(out), study_config=args.config,
                           analyses=parse_analyses(args.only), **overrides)
    except (ValueError, TypeError) as e:
        ap.error(str(e))
    if not Path(args.config).exists():
        ap.error(f"--config {args.config}: no such study config")
    if args.dry_run:
        dry_run_exit(ap, f"checkpoint {args.checkpoint} ({', '.join(cfg.analyses)})", cfg)
    summary = run(cfg)
    print((out / "report.md").read_text())
    print(json.dumps({"out": str(out), "seconds": round(summary["seconds"], 1)}))
    print(headline_text(out))
    print("\n".join(open_hint(summary["page"], out)))


if __name__ == "__main__":
    main()
