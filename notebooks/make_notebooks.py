"""Write the analysis notebooks (code cells call the library; nothing is copied from it).

    .venv/bin/python notebooks/make_notebooks.py
"""

from pathlib import Path

import nbformat as nbf

HERE = Path(__file__).resolve().parent

FINDINGS = '''from pathlib import Path
from IPython.display import Markdown, display
from interp.studies.inside.figures import build_figures
ROOT = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()
# the look-inside study on the default VLM (gemma-3-270m + the quick study's seeing projector), as
# committed: its tables, report.md and the command that regenerates them (first lines below)
FINDINGS = ROOT / "figures" / "out" / "inside-gemma"
report = (FINDINGS / "report.md").read_text()
sections = {s.split("\\n", 1)[0]: "## " + s for s in report.split("\\n## ")[1:]}
def section(start):
    return Markdown(next(v for k, v in sections.items() if k.startswith(start)))
figs = build_figures(FINDINGS)   # redrawn from the tables alone; no model is loaded
display(Markdown(report.split("\\n## ")[0]))
display(section("The answer"))'''

SETUP = '''import os
from pathlib import Path
import torch
from interp.studies.taxonomy.config import load_config
from interp.studies.taxonomy.run import single_run, RunSpec
# The small embedded LM keeps this notebook fast (CI runs it); set INTERP_NB_LM=gemma-3-270m for the default.
LM = os.environ.get("INTERP_NB_LM", "smollm2-135m")
OUT = Path(os.environ.get("INTERP_NB_OUT", "../runs/notebooks"))
ROOT = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()
cfg = load_config(ROOT / "experiments" / "quick.toml", {
    "out_dir": str(OUT), "model.lm": LM, "data.max_concepts": 40, "train.epochs": 2.0, "eval.lm_only": False,
    "prototypes.refine_steps": 60, "prototypes.batch_size": 32})  # the preset's table is for 456 concepts; 40 need far less (CI cell timeout)
spec = RunSpec("original", "random:1.0", 42)
rows = single_run(cfg, spec, progress=False)   # trains once; later runs reuse the checkpoint
ckpt = OUT / "runs" / spec.run_id / "projector.safetensors"
print(ckpt, ckpt.exists())'''

PATCHING = [
    nbf.v4.new_markdown_cell("# Activation patching: where does an image of a bird become 'a bird'?\n\n"
                             "First the findings on the default VLM (read from the committed look-inside run), then "
                             "the same machinery run live on a small VLM trained here."),
    nbf.v4.new_code_cell(FINDINGS),
    nbf.v4.new_markdown_cell("**Causal evidence.** At each layer, a state is written over the image position of a "
                             "non-member's run: the member image's own states, the member's word's text state, or the "
                             "non-member's own word (control). The curve is the share of the member's answer restored "
                             "(mean and 95% CI over pairs)."),
    nbf.v4.new_code_cell('''figs["causal"].show() if "causal" in figs else print("no causal table in", FINDINGS)
display(section("Causal"))'''),
    nbf.v4.new_code_cell('''figs["patching_exact"].show()
display(section("Patching"))'''),
    nbf.v4.new_markdown_cell("## The machinery, live on a small VLM\n\n"
                             "A pair the model answers the right way round, chosen by its own margins: the clean image "
                             "is the concept whose own question (\"Is there a robin in the image?\") it answers Yes most "
                             "firmly, the corrupted image the one it answers No to that question most firmly. The metric "
                             "is logit(Yes) - logit(No) at the last question token, normalised to 0 (corrupted) .. 1 "
                             "(clean): the share of the clean answer a patched state restores."),
    nbf.v4.new_code_cell(SETUP),
    nbf.v4.new_code_cell('''from PIL import Image
from interp.analysis.patching import PatchInput, logit_diff_metric, patch_grid
from interp.data.images import load_image_set
from interp.sequence import single_token_id, vlm_item
from interp.studies.taxonomy.questions import image_question
from interp.studies.taxonomy.run import load_data
from interp.vlm import load_vlm

vlm = load_vlm(ckpt)
lm = vlm.lm
tax = load_data(cfg, vlm.encoder, progress=False).taxonomy
concepts = sorted(tax.leaves)   # the concepts this projector was trained on
image_set = load_image_set()
feats = vlm.encode([Image.open(image_set.first_rendering(c).path) for c in concepts])   # [concepts, tokens, d_img]
metric = logit_diff_metric(vlm, single_token_id(vlm.tokenizer, " Yes"), single_token_id(vlm.tokenizer, " No"))
questions = [image_question(tax.phrase(c)) for c in concepts]
with torch.no_grad():   # margins[q, i]: question about concept q asked of concept i's image (one batch per question)
    margins = torch.stack([metric(vlm.forward(b, feats, logits_at=None).resid, b) for b in
                           (vlm.build([vlm_item(i, q) for i in range(len(concepts))]) for q in questions)])
own = margins.diagonal()
print(f"own question answered Yes for {int((own > 0).sum())} of {len(concepts)} images; "
      f"pairwise (own image above the median other image): {float((own > margins.median(1).values).float().mean()):.0%}")
q = int((own - margins.min(1).values).argmax())
clean_c, corrupt_c = concepts[q], concepts[int(margins[q].argmin())]
def inp(concept):
    return PatchInput(vlm.build([vlm_item(0, questions[q])]), feats[[concepts.index(concept)]])
clean, corrupted = inp(clean_c), inp(corrupt_c)
print(f"{questions[q]!r}: clean {clean_c} {float(margins[q, q]):+.2f}, corrupted {corrupt_c} {float(margins[q].min()):+.2f}")
grid = patch_grid(vlm, clean, corrupted, metric, normalise=True)
grid.shape'''),
    nbf.v4.new_code_cell('''from interp.plots import heatmap
labels = clean.batch.labels(0)
xl = [f"{i}:{m}" for i, m in enumerate(labels)]
fig = heatmap(grid.numpy(), xl, [str(l) for l in range(lm.n_layers)], title=f"resid_pre patching, {clean_c} -> {corrupt_c}",
              xlabel="position (modality)", ylabel="layer")
fig.show()'''),
    nbf.v4.new_markdown_cell("The grid above is exact, not approximate: the fast path (each patched copy computes only "
                             "the positions the patch can change, the copies packed in one row; cells where clean equals "
                             "corrupted are not run) gives the numbers of the plain one-forward-per-cell loop. Checked "
                             "here on two layers, with the time of each:"),
    nbf.v4.new_code_cell('''import time
from interp.analysis.patching import patch_grid_reference
some = [f"blocks.{layer}.hook_resid_pre" for layer in (0, lm.n_layers // 2)]
t = time.perf_counter(); fast = patch_grid(vlm, clean, corrupted, metric, hooks=some); t_fast = time.perf_counter() - t
t = time.perf_counter(); loop = patch_grid_reference(vlm, clean, corrupted, metric, hooks=some); t_loop = time.perf_counter() - t
assert torch.allclose(fast, loop, atol=1e-4)
print(f"max |fast - loop| = {float((fast - loop).abs().max()):.1e}; the loop took {t_loop / t_fast:.1f}x as long")'''),
]


COLLECT = '''from interp.analysis.collect import concept_activations, one_image_per_concept
from interp.studies.taxonomy.run import load_data
from interp.vlm import load_vlm

vlm = load_vlm(ckpt)
lm = vlm.lm
data = load_data(cfg, vlm.encoder, progress=False)
concepts, rows = one_image_per_concept(data.records, data.splits["test"])
tax = data.taxonomy
acts = concept_activations(vlm, concepts, [tax.phrase(c) for c in concepts], data.features[rows])
acts.text.shape'''

PROBES = [
    nbf.v4.new_markdown_cell("# Probes and hypernym directions across modalities\n\n"
                             "First the findings on the default VLM (the committed look-inside run), then the same "
                             "analyses live on a small VLM trained here."),
    nbf.v4.new_code_cell(FINDINGS),
    nbf.v4.new_code_cell('''for name in ("probes", "directions", "steering"):
    figs[name].show()
for start in ("Probes", "Hypernym directions", "Steering"):
    display(section(start))'''),
    nbf.v4.new_markdown_cell("## The analyses, live on a small VLM\n\n"
                             "Per layer: a linear probe for membership in the most frequent hypernym, trained on "
                             "each modality and transferred from text tokens to image tokens; the text- and "
                             "image-derived difference-of-means directions and their cosine."),
    nbf.v4.new_code_cell(SETUP),
    nbf.v4.new_code_cell(COLLECT),
    nbf.v4.new_code_cell('''import numpy as np
import torch
from interp.analysis.directions import cosine_per_layer, mean_difference
from interp.analysis.probes import probe_layers, transfer_layers
from interp.plots import line_with_ci
hyp = max(tax.hypernyms, key=lambda h: len([c for c in concepts if h in tax.hypernyms_of(c)]))
y = np.array([hyp in tax.hypernyms_of(c) for c in concepts])
layers = list(range(lm.n_layers))
nan = [float("nan")] * len(layers)
series = {f"probe on {m}": (layers, probe_layers(getattr(acts, m), y, folds=3).tolist(), nan) for m in ("text", "image", "last")}
series["text -> image transfer"] = (layers, transfer_layers(acts.text, y, acts.image, y).tolist(), nan)
cos = cosine_per_layer(mean_difference(acts.text, torch.tensor(y)), mean_difference(acts.image, torch.tensor(y)))
series["cos(text dir, image dir)"] = (layers, cos.tolist(), nan)
fig = line_with_ci(series, title=f"'{hyp}' by layer ({len(concepts)} concepts)", xlabel="layer", ylabel="accuracy / cosine")
fig.show()'''),
]

SIMILARITY = [
    nbf.v4.new_markdown_cell("# Representation similarity and readouts of text and image tokens, layer by layer\n\n"
                             "First the findings on the default VLM (the committed look-inside run), then the same "
                             "analyses live on a small VLM trained here."),
    nbf.v4.new_code_cell(FINDINGS),
    nbf.v4.new_code_cell('''for name in ("similarity", "umap", "image_lens_first"):
    if name in figs:
        figs[name].show()
for start in ("Similarity", "Readouts of the image token", "Logit lens"):
    display(section(start))'''),
    nbf.v4.new_markdown_cell("## The analyses, live on a small VLM\n\n"
                             "Linear CKA and RSA between the concept-word representations and the pooled "
                             "image-token representations, and a UMAP of both modalities at the last layer."),
    nbf.v4.new_code_cell(SETUP),
    nbf.v4.new_code_cell(COLLECT),
    nbf.v4.new_code_cell('''from interp.analysis.similarity import linear_cka, rsa
from interp.plots import line_with_ci
layers = list(range(lm.n_layers))
nan = [float("nan")] * len(layers)
cka = [linear_cka(acts.text[l], acts.image[l]) for l in layers]
rs = [rsa(acts.text[l], acts.image[l]) for l in layers]
line_with_ci({"linear CKA": (layers, cka, nan), "RSA (Spearman)": (layers, rs, nan)},
             title="text vs image representations of the same concepts", xlabel="layer", ylabel="similarity").show()'''),
    nbf.v4.new_code_cell('''import numpy as np
import plotly.graph_objects as go
import umap
top = [sorted(tax.hypernyms_of(c), key=tax.depth)[0] if tax.hypernyms_of(c) else "?" for c in concepts]
X = np.concatenate([acts.text[-1].numpy(), acts.image[-1].numpy()])
emb = umap.UMAP(n_neighbors=10, random_state=0).fit_transform(X)
n = len(concepts)
fig = go.Figure()
for mod, sl, sym in (("text", slice(0, n), "circle"), ("image", slice(n, 2 * n), "x")):
    fig.add_trace(go.Scatter(x=emb[sl, 0], y=emb[sl, 1], mode="markers", name=mod, text=[f"{c} ({t})" for c, t in zip(concepts, top)],
                             marker=dict(symbol=sym, color=[sorted(set(top)).index(t) for t in top], colorscale="Turbo")))
fig.update_layout(title="UMAP of last-layer concept representations (colour = top hypernym)")
fig.show()'''),
]


def main() -> None:
    meta = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    for name, cells in (("01_patching", PATCHING), ("02_probes_directions", PROBES), ("03_similarity", SIMILARITY)):
        for i, cell in enumerate(cells):  # stable ids: regenerating a notebook changes only what changed
            cell.id = f"{name[:2]}-{i:02d}"
        nbf.write(nbf.v4.new_notebook(cells=cells, metadata=meta), HERE / f"{name}.ipynb")
        print("wrote", HERE / f"{name}.ipynb")


if __name__ == "__main__":
    main()
