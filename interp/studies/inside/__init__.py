"""Look inside a trained VLM (issue 4): where does an image of a robin start to look like "bird"?

One run over a projector checkpoint of the taxonomic study (any LM) writes tidy CSV
tables, plotly figures (HTML + PNG) and ``report.md`` into ``out_dir``:

- ``probes``     per-layer linear probes for each hypernym (balanced accuracy, k-fold, seeded)
                 on the concept word's text tokens, the pooled image tokens and the last
                 question token; text -> image and image -> text transfer;
- ``directions`` difference-of-means hypernym directions per modality and layer, cosine
                 between the text- and the image-derived direction;
- ``steering``   the image-derived and the text-derived direction added at the image
                 positions: change in P(Yes) for that hypernym's question vs other hypernyms'
                 questions and a random direction;
- ``lens``       logit lens at the image positions: top tokens per layer and the rank of each
                 concept's hypernym words per layer;
- ``image_lens`` readouts made for image tokens (logit lens, nearest input embedding, Patchscope
                 on an identity prompt) of the image states and, as a positive control, the
                 concept word's text states: per layer the rank of the concept word and of its
                 most specific hypernym's word, and the first layer each readout names them;
- ``similarity`` linear CKA and RSA between modalities per layer; UMAP of both modalities;
- ``patching``   exact resid_pre patching grid (clean image vs corrupted image), attribution
                 patching of the same grid, and their agreement;
- ``causal``     over (member, non-member) image pairs of the largest hypernyms: the member's
                 image states, its word's text state, or the non-member's word (control) written
                 at the non-member's image position per layer: share of the answer restored.

``report.md`` opens with the study's answer, computed from whichever tables exist.

Concept activations are computed once per (checkpoint, concept list) and cached as
safetensors in ``out_dir``. Experiments write tables; ``figures.figures`` redraws from them.

Modules: ``config`` (:class:`InsideConfig`), ``analyses`` (the context and one function per
analysis), ``run`` (the driver, ``run.run(cfg)``), ``tables``, ``figures``, ``report`` and
``python -m interp.studies.inside CHECKPOINT`` (also ``python -m interp.analyze``).
"""

from interp.studies.inside.config import ANALYSES, InsideConfig, parse_analyses  # noqa: F401
