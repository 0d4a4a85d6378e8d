"""Does training the readout on held-out-like mixtures help? (issue 13; no projector training)

The classifier warm start is fitted on the train renderings, which it then fits at 100%, so
on train images the softmax mixture is one-hot, while on held-out images it is spread. Here
the prototype table (u, D) is refined with the LM loss (leaf questions only: the true leaf
"Yes", a random distractor leaf "No") on tokens ``u + softmax(L_oof / T) @ D``, where
``L_oof`` are out-of-fold logits of the train images (3 folds by rendering), then the val
images are read through the full-fit classifier at the same T. Reports val leaf F1 before and
after, and perfect vision after (is the table kept?).

    .venv/bin/python benchmarks/mixture_lab.py [STEPS] [T] [LR]     # measured: 60 1.0 0.01
"""
import json
import random
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import leaf_readout  # noqa: E402
from interp.models.encoders import load_encoder
from interp.projector import pool_tokens
from interp.studies.taxonomy import run as study
from interp.studies.taxonomy.config import load_config
from interp.studies.taxonomy.prototypes import ImageTokenQuestions, cached_prototypes
from interp.warmstart import fit_classifier, out_of_fold_logits

steps = int(sys.argv[1]) if len(sys.argv) > 1 else 100
temp = float(sys.argv[2]) if len(sys.argv) > 2 else 0.25
lr = float(sys.argv[3]) if len(sys.argv) > 3 else 0.01
cfg = load_config(ROOT / "experiments" / "quick.toml", {"model.encoder": "efficientnet-lite0+lite1"})
t0 = time.perf_counter()
data = study.load_data(cfg, load_encoder(cfg.model.encoder), progress=False)
lm = study.load_study_lm(cfg, False, 0)
concepts = sorted(data.taxonomy.leaves)
protos = cached_prototypes(lm, data.taxonomy, concepts, cfg.prototypes, progress=False)
ask = ImageTokenQuestions(lm, data.taxonomy.phrase)
tr, ev = data.splits["train"], data.splits["val"]
ytr = protos.index([data.records[i].concept for i in tr])
yev = protos.index([data.records[i].concept for i in ev])
x = pool_tokens(data.features.float(), 1, "max")[:, 0]
xtr, xev = x[tr], x[ev]
l2 = cfg.warm_start.l2
W, b = fit_classifier(xtr, ytr, len(concepts), l2=l2)
Lev = xev @ W.T + b
Loof = out_of_fold_logits(xtr, ytr, len(concepts), folds=3, l2=l2)  # folds by rendering rank within a concept
print(f"val top-1 {100*(Lev.argmax(1)==yev).float().mean():.1f}  oof top-1 {100*(Loof.argmax(1)==ytr).float().mean():.1f} "
      f"({time.perf_counter()-t0:.0f}s)", flush=True)
rng = random.Random(0)
own = [concepts[y] for y in yev.tolist()]
dist = [rng.choice([c for c in concepts if c != o]) for o in own]


def score(V):
    return leaf_readout(ask, V, own, dist)


u0, D0 = protos.u, protos.D
res = {"steps": steps, "temp": temp, "lr": lr}
res["before"] = score(u0 + torch.softmax(Lev / temp, 1) @ D0)
print("before", res["before"], flush=True)
u, D = u0.clone().requires_grad_(True), D0.clone().requires_grad_(True)
opt = torch.optim.Adam([u, D], lr=lr)
g = torch.Generator().manual_seed(0)
P = torch.softmax(Loof / temp, 1)
hist = []
for step in range(1, steps + 1):
    rows = torch.randint(len(tr), (32,), generator=g)
    yy = ytr[rows]
    d = (yy + 1 + torch.randint(len(concepts) - 1, yy.shape, generator=g)) % len(concepts)
    V = u + P[rows] @ D
    V = torch.cat([V, V])
    asked = [concepts[i] for i in yy.tolist()] + [concepts[i] for i in d.tolist()]
    loss = ask.loss(V, asked, ["Yes"] * 32 + ["No"] * 32)
    opt.zero_grad()
    loss.backward()
    opt.step()
    hist.append(loss.item())
    if step % 25 == 0:
        print(step, sum(hist[-25:]) / 25, f"{time.perf_counter()-t0:.0f}s", flush=True)
u, D = u.detach(), D.detach()
res["after"] = score(u + torch.softmax(Lev / temp, 1) @ D)
print("after", res["after"], flush=True)
res["after_perfect"] = score(u + D[yev])
print("after perfect", res["after_perfect"], flush=True)
res["seconds"] = time.perf_counter() - t0
Path(ROOT / "benchmarks" / "results" / f"mixture_{steps}_{temp}_{lr}.json").write_text(json.dumps(res, indent=1))
