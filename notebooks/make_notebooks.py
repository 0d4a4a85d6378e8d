"""Write the analysis notebooks (code cells call the library; nothing is copied from it).

    .venv/bin/python notebooks/make_notebooks.py
"""

from pathlib import Path

import nbformat as nbf

HERE = Path(__file__).resolve().parent

SETUP = '''import os
from pathlib import Path
import torch
from interp.studies.config import load_config
from interp.studies.taxonomy import single_run, RunSpec
# The small embedded LM keeps this notebook fast (CI runs it); set INTERP_NB_LM=gemma-3-270m for the default.
LM = os.environ.get("INTERP_NB_LM", "smollm2-135m")
OUT = Path(os.environ.get("INTERP_NB_OUT", "../runs/notebooks"))
ROOT = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()
cfg = load_config(ROOT / "experiments" / "quick.toml", {
    "out_dir": str(OUT), "model.lm": LM, "data.max_concepts": 40, "train.epochs": 2.0, "eval.lm_only": False})
spec = RunSpec("original", "random:1.0", 42)
rows = single_run(cfg, spec, progress=False)   # trains once; later runs reuse the checkpoint
ckpt = OUT / "runs" / spec.run_id / "projector.safetensors"
print(ckpt, ckpt.exists())'''

PATCHING = [
    nbf.v4.new_markdown_cell("# Activation patching: where does an image of an eagle become 'a bird'?\n\n"
                             "Clean = an eagle image, corrupted = a shark image, same question "
                             "\"Is there a bird in the image?\"; the metric is logit(Yes) - logit(No) at the last "
                             "question token, normalised to 0 (corrupted) .. 1 (clean)."),
    nbf.v4.new_code_cell(SETUP),
    nbf.v4.new_code_cell('''from PIL import Image
from interp.analysis.patching import PatchInput, logit_diff_metric, patch_grid
from interp.data.images import load_image_set
from interp.models.encoders import load_encoder
from interp.models.hooked import HookedLM
from interp.models.lm import load_lm
from interp.projector import Projector
from interp.sequence import single_token_id, vlm_item
from interp.vlm import HookedVLM

lm = HookedLM(load_lm(LM))
proj, _ = Projector.load(ckpt, lm=lm.name)
vlm = HookedVLM(lm, proj, load_encoder(proj.config.encoder))
images = {r.concept: r.path for r in sorted(load_image_set().images, key=lambda r: r.key)}
def inp(concept):
    return PatchInput(vlm.build([vlm_item(0, "Is there a bird in the image?")]), vlm.encode([Image.open(images[concept])]))
clean, corrupted = inp("eagle"), inp("shark")
metric = logit_diff_metric(vlm, single_token_id(vlm.tokenizer, " Yes"), single_token_id(vlm.tokenizer, " No"))
grid = patch_grid(vlm, clean, corrupted, metric, normalise=True)
grid.shape'''),
    nbf.v4.new_code_cell('''from interp.plots import heatmap
labels = clean.batch.labels(0)
xl = [f"{i}:{m}" for i, m in enumerate(labels)]
fig = heatmap(grid.numpy(), xl, [str(l) for l in range(lm.n_layers)], title="resid_pre patching, eagle -> shark",
              xlabel="position (modality)", ylabel="layer")
fig.show()'''),
]


def main() -> None:
    nb = nbf.v4.new_notebook(cells=PATCHING, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                      "language": "python"}})
    nbf.write(nb, HERE / "01_patching.ipynb")
    print("wrote", HERE / "01_patching.ipynb")


if __name__ == "__main__":
    main()
