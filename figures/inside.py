"""Redraw the figures and report of a look-inside run from its tables (no model needed).

    .venv/bin/python figures/inside.py runs/inside/lm-original-100pct-s42
"""

import sys
from pathlib import Path

from interp.io import write_text
from interp.studies.inside.figures import figures
from interp.studies.inside.report import findings

if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/inside/lm-original-100pct-s42")
    if not (out / "summary.json").exists():
        raise SystemExit(f"no look-inside results in {out}: run `python -m interp.analyze CHECKPOINT --out {out}`")
    written = figures(out)
    write_text(out / "report.md", findings(out))
    print("\n".join(str(p) for p in written))
