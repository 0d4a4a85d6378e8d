"""Build the embedded image set once: ``python -m interp.data.build``.

Idempotent: when ``<INTERP_CACHE>/images/embedded-v1/manifest.json`` exists and verifies
(manifest hash, build recipe, every file's sha256) nothing is rebuilt and the command exits
in about a second. ``--force`` rebuilds; ``--check`` only verifies (exit 1 if invalid);
``--summary`` prints the counts of the manifest (the numbers in DATA.md).

Needs the npm image packages in ``<INTERP_CACHE>/npm`` and the Debian packages
``wordnet-base`` and ``tuxpaint-stamps-default``: ``bash scripts/setup.sh`` installs them.
"""

from __future__ import annotations

import argparse
import sys
import time
from interp.data.images import build_embedded_images, embedded_image_root, read_manifest, verify


def _summary(root) -> str:
    m = read_manifest(root)
    c = m["counts"]
    lines = [f"root: {root}",
             f"manifest_hash: {m['manifest_hash'][:16]}",
             f"concepts: {c['concepts']}  images: {c['images']}  hypernyms: {c['hypernyms']}  pairs: {c['pairs']}",
             "renderings per source: " + ", ".join(f"{k} {v}" for k, v in c["renderings_per_source"].items()),
             "concepts by number of renderings: " + ", ".join(f"{k}: {v}" for k, v in c["concepts_by_n_renderings"].items()),
             "hypernyms per depth: " + ", ".join(f"{k}: {v}" for k, v in c["hypernyms_per_depth"].items()),
             "concepts per top-level hypernym: " + ", ".join(f"{k} {v}" for k, v in c["concepts_per_top_hypernym"].items()),
             "concepts per CLDR subcategory: " + ", ".join(f"{k} {v}" for k, v in c["concepts_per_subcategory"].items()),
             "leaves per hypernym: " + ", ".join(f"{k} {v}" for k, v in c["leaves_per_hypernym"].items()),
             "dropped (< 4 renderings): " + (", ".join(f"{k} ({'/'.join(v)})" for k, v in m["dropped"].items()) or "-")]
    for name, r in m.get("wordnet_reports", {}).items():
        lines.append(f"wordnet check {name}: " + ", ".join(f"{k} {v}" for k, v in r.items() if not k.endswith("examples")))
    return "\n".join(lines)


def _workers(text: str) -> int:
    """``--workers`` as a count of processes >= 1 (argparse names the bad value, exit code 2)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number of processes >= 1") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n}: expected a whole number of processes >= 1")
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m interp.data.build", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--force", action="store_true", help="rebuild even if the set verifies")
    ap.add_argument("--check", action="store_true", help="only verify the built set (exit 1 if invalid)")
    ap.add_argument("--summary", action="store_true", help="print the counts of the built set")
    ap.add_argument("--workers", type=_workers, default=None, help="rendering processes (default: min(2, cores))")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    root = embedded_image_root()
    if args.check:
        ok, why = verify(root)
        print(f"[images] {root}: {why}")
        return 0 if ok else 1
    ok, why = (False, "forced") if args.force else verify(root)
    if ok:
        if not args.quiet:
            print(f"[images] {root} verified ({time.perf_counter() - t0:.1f}s); nothing to do")
    else:
        if not args.quiet:
            print(f"[images] building {root} ({why})")
        try:
            build_embedded_images(force=args.force, progress=not args.quiet, workers=args.workers)
        except (FileNotFoundError, RuntimeError) as e:
            print(f"[images] error: {e}", file=sys.stderr)
            return 2
        if not args.quiet:
            print(f"[images] done in {time.perf_counter() - t0:.1f}s")
    if args.summary or (not ok and not args.quiet):
        print(_summary(root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
