"""Cross-modal task vectors and function vectors (brief, section B), end to end.

``run_study(config)``: load the VLM from a trained projector checkpoint, cache the image
features once, then per task (resumable: a finished task is skipped):

1. task vectors from four sources - text examples, an instruction, image examples, and the
   average of instruction and text-example vectors - plus text examples in the VLM's own
   format (an image first: "LM-only vs VLM" prompts), each the mean last-delimiter residual
   of ``n_prompts`` prompts at every layer;
2. a validation sweep: every vector patched at every layer into zero-shot text and image
   queries; the layer of each (source, target) is chosen on validation;
3. the test split at the chosen layers, next to the baselines: no context, prompting (the
   examples in the same prompt), a random vector of the same norm;
4. function vectors (Todd et al.): mean head outputs on text ICL prompts, heads ranked by
   average indirect effect on label-shuffled prompts, the top-k sum added at L/3 and at the
   layer chosen on validation;
5. accuracy against the number of examples (several seeds) at the chosen layers;
6. cosines between the vectors of every pair of sources at every layer.

Outputs in ``config.out_dir``: ``tasks/<task>.json`` (+ ``.safetensors`` vectors), tidy
tables ``results.csv`` (test), ``sweep.csv``, ``curve.csv``, ``cosine.csv``, ``heads.csv``,
``report.md`` (the brief's table: rows no context / prompting / patch from each source,
columns tasks x query modality), ``summary.json`` and figures (HTML + PNG).
Exact match = the argmax over the whole vocabulary at the last position is the first token
of an accepted answer (the brief's metric); ``set`` = argmax over the task's answers only.

Modules: ``config`` (:class:`TaskVectorConfig`, TOML), ``context`` (the VLM and features),
``prompts``, ``run`` (the resumable driver, ``run.run_study(cfg)``), ``tables``, ``report``,
``figures`` and ``python -m interp.studies.task_vectors CONFIG`` (also
``python -m interp.task_vectors``).
"""

from interp.studies.task_vectors.config import (SECTIONS, DataConfig, FunctionVectorConfig, MethodConfig, ModelConfig,
                                                TaskVectorConfig, load_config)
from interp.studies.task_vectors.context import load_study_vlm, resolve_projector
from interp.studies.task_vectors.figures import write_figures
from interp.studies.task_vectors.run import run_study
from interp.studies.task_vectors.tables import CSV_FILES, cosine_summary, read_tables, table_markdown


