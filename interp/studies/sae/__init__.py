"""Sparse autoencoders on VLM residuals (issue 16, item 2).

One TopK SAE per chosen layer, trained with a maintained library's sparse coder (EleutherAI
``sparsify``: ``SparseCoder``) on ``blocks.{l}.hook_resid_post`` at the image, text and answer
positions of the taxonomic study's sequences (image questions; text prompts naming each
concept and its hypernym), from the activation store. Each SAE is exported in SAELens's
on-disk format (``saes/<hook>/cfg.json`` + ``sae_weights.safetensors``). Tables (CSV) and
``report.md``: explained variance, L0, dead latents, the answer loss with the reconstruction
spliced in (vs mean ablation), latents shared across modalities vs a shuffled-concept
baseline, and each top latent's top images and text tokens; plotly figures (HTML + PNG);
the results page ``report.html`` (``python -m interp.report OUT_DIR`` rebuilds it).

Modules: ``config`` (:class:`SaeConfig`), ``data`` (sequences, batches, store tokens),
``train`` (the library coder's training loop, resumable), ``export`` (SAELens format and
loader), ``evaluate`` (reconstruction, sparsity, splicing), ``latents`` (modality sharing,
top examples), ``run`` (the driver), ``report``, ``figures``, ``page`` (report.html from the
tables) and ``python -m interp.sae CONFIG``.
"""

from interp.studies.sae.config import SaeConfig, load_config  # noqa: F401
