"""Section C of the brief: binding shortcuts and visual data (the synthetic retrieval study).

- :mod:`~interp.studies.binding.task`: the two-hop retrieval task, its vocabulary and layouts;
- :mod:`~interp.studies.binding.render`: contexts drawn as coloured shapes on a canvas;
- :mod:`~interp.studies.binding.bank`: cached frozen-encoder features of rendered contexts and noise;
- :mod:`~interp.studies.binding.model`: the decoder trained from scratch (HF Llama) and its hooked view;
- :mod:`~interp.studies.binding.train`: the curriculum, resumable;
- :mod:`~interp.studies.binding.evaluate`: accuracy in and out of distribution;
- :mod:`~interp.studies.binding.interventions`: interchange interventions, attention knockout, probes;
- :mod:`~interp.studies.binding.config`: :class:`BindingConfig` (dataclasses, TOML);
- :mod:`~interp.studies.binding.run`: the driver, resumable (``run.run_study(cfg)``);
- :mod:`~interp.studies.binding.tables`, :mod:`~interp.studies.binding.report`,
  :mod:`~interp.studies.binding.figures`: the tidy tables, ``report.md`` and the plots;
- :mod:`~interp.studies.binding.page`: the results page ``report.html``, from the tables alone.

``python -m interp.studies.binding CONFIG`` (also ``python -m interp.binding``) runs the study.
"""
