"""The visual-alignment study (brief, section D), end to end: ``config`` (TOML), ``run`` (the
resumable driver), ``splits`` and ``head`` (strict class splits; the contrastive head),
``tables``, ``report``, ``figures``, and ``python -m interp.studies.alignment`` (also
``python -m interp.alignment``). The driver is ``interp.studies.alignment.run.run(cfg)``.


``run(config)``: cache pooled image features once (the taxonomic study's feature cache),
then for every LM variant (each requested LM and its random-init controls) cache the
last-token residual of every class prompt at every layer, and for every unit
(LM variant x layer x split mode x seed) train an alignment head on the training classes
and score zero-shot classification on the held-out classes. Units are resumable: a unit
whose result file exists with the same key is skipped (an LM whose units are all done is
not even loaded). Then the LM-only hypernym test of the taxonomic study per LM variant,
the correlation of the alignment score with it, a tidy results table, a summary, a
markdown report and plotly figures. Everything lands in ``config.out_dir``::

    results.csv       one row per unit (top-1/top-5 on held-out classes, chance, fit, ...)
    summary.csv       per LM variant x split x layer: mean and 95% t-interval over seeds
    lm_only.csv       the LM-only test per LM variant; correlation.json: score vs LM-only
    report.md         scores per LM, per layer, correlation; figures/*.html|png
    units/<lm>/<split>-L<layer>-s<seed>.json   per unit: row, held-out classes, predictions
    lm_only/<lm>.json, config.json, summary.json

LM availability: ``models.lms = "available"`` takes every registered (non-tiny) LM that
can be loaded here and skips the others with a logged message; an explicit list fails at
once, before any work, if one of its LMs cannot be loaded (the message says what to do).
"""

from interp.studies.alignment.config import (SECTIONS, AlignDataConfig, AlignEvalConfig, AlignmentConfig,  # noqa: F401
                                             AlignModelsConfig, AlignSplitConfig, apply_overrides, config_from_dict,
                                             load_config, parse_layers)
from interp.studies.alignment.report import load_outputs, write_outputs  # noqa: F401
from interp.studies.alignment.run import AlignData, LMVariant, load_align_data, resolve_lms  # noqa: F401
from interp.studies.alignment.tables import SUMMARY_NUMERIC, read_csv, summarize  # noqa: F401
