"""`python -m interp.report RUN_DIR [--open]`: rebuild a study run's results page, report.html.

The page is made from the run folder's own tables (CSV and JSON): nothing is recomputed and no
model is loaded. The study is recognised from the folder (the taxonomic study: results.csv and
config.json; look inside: summary.json naming a checkpoint; task vectors: results.csv and
sweep.csv; alignment: results.csv and config.json with split and head sections; binding:
accuracy.csv and config.json with a task section; SAEs: summary.csv and sharing.csv beside
config.json with the SAE train and eval sections); the page lands in RUN_DIR/report.html.
--open opens it in the default browser when one can show it.

Examples:
    python -m interp.report runs/quick
    python -m interp.report runs/inside/lm-original-100pct-s42 --open
    python -m interp.report runs/binding-quick
    python -m interp.report runs/sae-quick
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from interp.configfile import add_dry_run, dry_run_exit
from interp.pages import open_hint, open_page
from interp.studies.alignment import page as alignment_page
from interp.studies.binding import page as binding_page
from interp.studies.inside import page as inside_page
from interp.studies.sae import page as sae_page
from interp.studies.task_vectors import page as task_vectors_page
from interp.studies.taxonomy import page as taxonomy_page


@dataclass(frozen=True)
class StudyPage:
    """How one study's run folder is recognised and its page written."""

    name: str
    is_run_dir: Callable[[Path], bool]
    write: Callable[..., Path]


STUDIES = (
    StudyPage("taxonomy", taxonomy_page.is_run_dir, taxonomy_page.write_report_page),
    StudyPage("inside", inside_page.is_run_dir, inside_page.write_report_page),
    StudyPage("task_vectors", task_vectors_page.is_run_dir, task_vectors_page.write_report_page),
    StudyPage("alignment", alignment_page.is_run_dir, alignment_page.write_report_page),
    StudyPage("binding", binding_page.is_run_dir, binding_page.write_report_page),
    StudyPage("sae", sae_page.is_run_dir, sae_page.write_report_page),
)


def detect(run_dir: Path) -> StudyPage | None:
    """The study whose run folder ``run_dir`` is, or None."""
    return next((s for s in STUDIES if s.is_run_dir(run_dir)), None)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m interp.report", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path, help="a study's output folder (e.g. runs/quick)")
    ap.add_argument("--open", action="store_true", help="open the page in the default browser")
    ap.add_argument("--no-progress", action="store_true")
    add_dry_run(ap)
    args = ap.parse_args(argv)
    run_dir: Path = args.run_dir

    def fail(why: str) -> None:
        ap.exit(2, f"{ap.prog}: error: {why}\n")

    if not run_dir.exists():
        fail(f"RUN_DIR {run_dir}: no such folder")
    if not run_dir.is_dir():
        fail(f"RUN_DIR {run_dir}: is a file, not a run folder")
    try:
        study = detect(run_dir)
    except (OSError, ValueError) as e:  # a config.json or summary.json that is not JSON
        fail(f"RUN_DIR {run_dir}: unreadable run files ({e})")
    if study is None:
        names = ", ".join(s.name for s in STUDIES)
        fail(f"RUN_DIR {run_dir}: not a study run folder (no results.csv + config.json of the taxonomic study, no "
             f"summary.json of a look-inside run, no results.csv + sweep.csv of task vectors, no alignment "
             f"config.json, no accuracy.csv + config.json of the binding study, no summary.csv + sharing.csv + "
             f"config.json of the SAE study; pages exist for: {names})")
    if args.dry_run:
        dry_run_exit(ap, f"{run_dir} (a {study.name} run folder; the page would be {run_dir / 'report.html'})")
    try:
        page = study.write(run_dir, progress=not args.no_progress)
    except (OSError, ValueError, KeyError, IndexError) as e:
        fail(f"RUN_DIR {run_dir}: the {study.name} tables are incomplete or damaged ({type(e).__name__}: {e})")
    print(f"[report] {study.name} page written: {page} ({page.stat().st_size / 1e6:.1f} MB)")
    print(open_page(page) if args.open else "\n".join(open_hint(page, run_dir)[1:]))


if __name__ == "__main__":
    main()
