"""`python -m interp.models`: list every registered model and whether it is available here.

`--prepare` dequantizes and caches the embedded LMs (what set-up runs once).
"""

from __future__ import annotations

import argparse
import time

from interp.models.registry import ALL, LMS


def table() -> str:
    head = f"{'name':24} {'kind':8} {'source':9} {'family':13} {'params':>7} {'layers':>6} {'d_model':>7} {'tokens':>6}  available"
    rows = [head, "-" * len(head)]
    for s in ALL:
        ok, why = s.available()
        rows.append(
            f"{s.name:24} {s.kind:8} {s.source:9} {s.family:13} {s.n_params:>7} {s.n_layers or '':>6} "
            f"{s.d_model:>7} {s.n_tokens or '':>6}  {'yes' if ok else 'no '} ({why})"
        )
    return "\n".join(rows)


def prepare() -> None:
    from interp.models.lm import embedded_folder

    for spec in LMS:
        if spec.source == "embedded" and spec.available()[0]:
            t = time.perf_counter()
            folder = embedded_folder(spec)
            print(f"[models] {spec.name}: cached fp32 model at {folder} ({time.perf_counter() - t:.1f} s)")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m interp.models", description=__doc__)
    ap.add_argument("--prepare", action="store_true", help="dequantize and cache the embedded LMs")
    args = ap.parse_args(argv)
    if args.prepare:
        prepare()
    else:
        print(table())


if __name__ == "__main__":
    main()
