"""Section C of the brief: binding shortcuts and visual data (the synthetic retrieval study).

- :mod:`~interp.studies.binding.task`: the two-hop retrieval task, its vocabulary and layouts;
- :mod:`~interp.studies.binding.render`: contexts drawn as coloured shapes on a canvas;
- :mod:`~interp.studies.binding.bank`: cached frozen-encoder features of rendered contexts and noise;
- :mod:`~interp.studies.binding.model`: the decoder trained from scratch (HF Llama) and its hooked view;
- :mod:`~interp.studies.binding.train`: the curriculum, resumable;
- :mod:`~interp.studies.binding.evaluate`: accuracy in and out of distribution;
- :mod:`~interp.studies.binding.interventions`: interchange interventions, attention knockout, probes;
- :mod:`~interp.studies.binding.study` / :mod:`~interp.studies.binding.report`: config, run, tables, figures.

``python -m interp.binding CONFIG`` runs the study.
"""
