"""Section C of the brief: binding shortcuts and visual data (the synthetic retrieval study).

- :mod:`~interp.binding.task`: the two-hop retrieval task, its vocabulary and layouts;
- :mod:`~interp.binding.render`: contexts drawn as coloured shapes on a canvas;
- :mod:`~interp.binding.bank`: cached frozen-encoder features of rendered contexts and noise;
- :mod:`~interp.binding.model`: the decoder trained from scratch (HF Llama) and its hooked view;
- :mod:`~interp.binding.train`: the curriculum, resumable;
- :mod:`~interp.binding.evaluate`: accuracy in and out of distribution;
- :mod:`~interp.binding.interventions`: interchange interventions, attention knockout, probes;
- :mod:`~interp.binding.study` / :mod:`~interp.binding.report`: config, run, tables, figures.

``python -m interp.binding CONFIG`` runs the study.
"""
