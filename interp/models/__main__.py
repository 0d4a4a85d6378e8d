"""`python -m interp.models`: list every registered model and whether it is available here.

`--prepare` dequantizes and caches the embedded LMs (what set-up runs once) and rebuilds a
damaged cache; `--verify` re-hashes every cached file instead of trusting unchanged mtimes.
"""

from __future__ import annotations

import argparse
import time

from interp.models.lm import cache_problems, embedded_folder
from interp.models.registry import ALL, LMS


def cache_state(spec, *, full: bool = False) -> str:
    """The state of an embedded LM's dequantized cache, for the table."""
    problems = cache_problems(spec, full=full)
    if problems is None:
        return "; not cached yet (built on first load, or by --prepare)"
    if problems:
        return f"; CACHE DAMAGED: {problems[0]} (rebuilt on the next load, or now by --prepare)"
    return "; cache verified" if full else "; cached (sizes checked; --verify hashes)"


def table(*, full: bool = False) -> str:
    head = f"{'name':24} {'kind':8} {'source':9} {'family':13} {'params':>7} {'layers':>6} {'d_model':>7} {'tokens':>6}  available"
    rows = [head, "-" * len(head)]
    for s in ALL:
        ok, why = s.available()
        if ok and s.kind == "lm" and s.source == "embedded":
            why += cache_state(s, full=full)
        rows.append(
            f"{s.name:24} {s.kind:8} {s.source:9} {s.family:13} {s.n_params:>7} {s.n_layers or '':>6} "
            f"{s.d_model:>7} {s.n_tokens or '':>6}  {'yes' if ok else 'no '} ({why})"
        )
    return "\n".join(rows)


def prepare() -> None:
    for spec in LMS:
        if spec.source == "embedded" and spec.available()[0]:
            t = time.perf_counter()
            folder = embedded_folder(spec)
            print(f"[models] {spec.name}: cached fp32 model at {folder} ({time.perf_counter() - t:.1f} s)")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m interp.models", description=__doc__)
    ap.add_argument("--prepare", action="store_true", help="dequantize and cache the embedded LMs (and rebuild a damaged cache)")
    ap.add_argument("--verify", action="store_true", help="hash every cached file (slower) instead of checking sizes and mtimes")
    args = ap.parse_args(argv)
    if args.prepare:
        prepare()
    else:
        print(table(full=args.verify))


if __name__ == "__main__":
    main()
