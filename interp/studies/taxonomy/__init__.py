"""The taxonomic-generalization study (brief, section A): can the VLM say "there is a bird" in
an image of a robin when it never saw "bird" paired with an image?

Modules:

- ``config``: :class:`~interp.studies.taxonomy.config.StudyConfig` (dataclasses, TOML);
- ``conditions``: worlds (original, within, across) and deprivation (ablations);
- ``questions``: the yes/no questions of training, test and the LM-only text test;
- ``prototypes``: the LM's concept prototypes (the warm start's targets), cached per LM;
- ``run``: the driver, resumable (``run.run_study(cfg)``; one run: ``run.single_run``);
- ``jobs``: one run as a job, in one process or under torchrun, and the cache warm-up;
- ``tables``, ``report``, ``figures``: the tidy tables, ``report.md`` and the plots;
- ``python -m interp.studies.taxonomy CONFIG`` (also ``python -m interp.run``); one run:
  ``python -m interp.train``; the grid as jobs: ``python -m interp.sweep``.
"""
