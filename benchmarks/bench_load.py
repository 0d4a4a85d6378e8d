"""Load times (first = dequantize GGUF + cache; cached = reload) and peak memory of the
embedded models. The first load is measured in a fresh cache folder. Also the time to parse
WordNet's noun files (Debian wordnet-base), read at the start of every study.

    .venv/bin/python benchmarks/bench_load.py [--quick]
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import parser, save  # noqa: E402

CHILD = """
import time, resource, sys
t = time.perf_counter()
from interp.models.lm import load_lm
from interp.models.hooked import HookedLM
lm = HookedLM(load_lm(sys.argv[1]))
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def _load(name: str, cache: str) -> tuple[float, float]:
    env = {**os.environ, "INTERP_CACHE": cache, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", CHILD, name], env=env, capture_output=True, text=True, check=True)
    sec, mib = out.stdout.strip().splitlines()[-1].split()
    return float(sec), float(mib)


def main() -> None:
    args = parser(__doc__).parse_args()
    names = ["smollm2-135m"] if args.quick else ["gemma-3-270m", "smollm2-135m"]
    res = {}
    with tempfile.TemporaryDirectory() as fresh:
        for name in names:
            first, mem1 = _load(name, fresh)
            cached, mem2 = _load(name, fresh)
            res[name] = {"first_load_s": first, "cached_load_s": cached, "first_over_cached": first / cached,
                         "peak_rss_mib_first": mem1, "peak_rss_mib_cached": mem2}
    res["wordnet_parse_s"] = _wordnet_parse_seconds()
    save("load_quick" if args.quick else "load", res)


def _wordnet_parse_seconds() -> float | None:
    """Seconds to parse data.noun and index.noun (None when wordnet-base is not installed)."""
    from interp.data import wordnet as wn

    if not (wn.DEFAULT_DIR / "data.noun").exists():
        return None
    t = time.perf_counter()
    wn._parse_data(wn.DEFAULT_DIR / "data.noun")
    wn._parse_index(wn.DEFAULT_DIR / "index.noun")
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
