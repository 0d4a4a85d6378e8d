"""`python -m interp.binding CONFIG`: the binding study (section C of the brief), end to end.

Trains the decoder from scratch (text-only segment once per seed, then each regime's
curriculum), evaluates text accuracy in and out of distribution and the image / noise
versions, runs the interchange interventions, attention knockout and probes, and writes
the tables, report and figures to the config's ``out_dir``. Finished units are skipped on
a re-run; an interrupted training segment resumes from its last checkpoint.

Examples:
    python -m interp.binding experiments/binding_quick.toml
    python -m interp.binding experiments/binding_full.toml --set device=cuda --set seeds=[0,1,2]
    python -m interp.binding experiments/binding_quick.toml --set train.text_steps=200 --out runs/b-smoke
"""

from __future__ import annotations

import argparse
import ast
import os
import tomllib

import torch


def _value(text: str):
    """A --set value as TOML (``true``, ``[0, 1]``, ``1e-3``, ``'x'``), else a Python literal,
    else the plain string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m interp.binding", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", help="study TOML (experiments/binding_quick.toml, binding_full.toml)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a value: SECTION.KEY=VALUE or a top-level key, e.g. --set train.text_steps=500 "
                         "--set seeds=[0,1]")
    ap.add_argument("--out", help="output folder (default: the config's out_dir)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)

    from interp.binding.study import load_config, run_study

    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            ap.error(f"--set {item!r}: expected KEY=VALUE")
        overrides[key] = _value(value)
    if args.out:
        overrides["out_dir"] = args.out
    cfg = load_config(args.config, overrides)
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    summary = run_study(cfg, progress=not args.no_progress, source=args.config)
    print(open(os.path.join(cfg.out_dir, "report.md")).read())
    print(f"[binding] done in {summary['seconds'] / 60:.1f} min; results in {cfg.out_dir}")


if __name__ == "__main__":
    main()
