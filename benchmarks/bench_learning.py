"""Learning speed: held-out leaf F1 against seconds of training, new recipe vs old, in one run.

Both recipes train the quick study's original-world projector at 100% deprivation (leaf
questions only) on the embedded default; every ``eval_every`` steps the in-training monitor
scores leaf questions on a fixed subset of the val split and measures image-token collapse.

- old: the brief's recipe as the quick preset had it (``mlp2x_gelu`` on mean-pooled features,
  random init, AdamW lr 1e-3, fixed distractors);
- new: the quick preset's recipe (LM concept prototypes, classifier warm start of an
  ``mlp2x_softmax`` projector on max-pooled features onto them, then the readout stage; the
  preset's LM-loss fine-tuning is off, ``train.max_steps = 0``). Its clock starts with the
  prototypes and the warm start, so all curves are on one time axis;
- without --quick also the single levers: old at lr 1e-4 with fresh distractors (is it the
  learning rate?), new followed by the LM-loss fine-tuning (lr 1e-4, fresh distractors; at the
  brief's lr 1e-3: does fine-tuning keep the warm start?; with fixed distractors; with the
  previous preset's ``mlp2x_gelu`` on mean-pooled features), new with a 1.5-epoch readout
  stage, both recipes with 4 image tokens instead of 1; and the prototype table scored after
  each of its stages.

Times are the wall seconds of training steps on this machine (the monitor excluded); quote
the ratio, not the seconds. Results: ``benchmarks/results/learning[_quick].json`` and a plotly
figure ``learning[_quick].html/.png`` beside it.

    .venv/bin/python benchmarks/bench_learning.py [--quick]
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, parser, save  # noqa: E402

from interp.models.encoders import load_encoder  # noqa: E402
from interp.plots import save_figure  # noqa: E402
from interp.studies.taxonomy import run as study  # noqa: E402
from interp.studies.taxonomy.config import load_config  # noqa: E402
from interp.studies.taxonomy.prototypes import learn_prototypes  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def curve(summary: dict, offset: float) -> list[dict]:
    return [{"seconds": offset + d["train_seconds"], "step": d["step"], "heldout_leaf_f1": d["heldout_leaf_f1"],
             "train_leaf_f1": d.get("train_leaf_f1"), "token_cosine": d["token_cosine"]}
            for d in summary["diagnostics"]]


@torch.no_grad()
def loss_parts(vlm, data, n: int = 64) -> dict[str, float]:
    """Cross-entropy of the answer token and of the EOS after it, for a freshly initialised
    projector on ``n`` training leaf questions: how much of the initial loss is the format."""
    from interp.examples import QuestionTokens, example_batch
    from interp.studies.taxonomy.questions import examples_for_images

    ident = {c: c for c in data.taxonomy.leaves}
    imgs = [(i, data.records[i].concept) for i in data.splits["train"][: n // 2]]
    exs = [e for e in examples_for_images(imgs, data.taxonomy, ident, {}, train=True, seed=0) if e.kind == "leaf"]
    batch, feats = example_batch(QuestionTokens(vlm.tokenizer), exs, data.features, vlm.n_image_tokens, with_answer=True)
    predicts, targets = batch.answer_targets()
    logits = vlm.forward(batch, feats, logits_at=predicts).logits.float()
    ce = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    return {"answer_ce": float(ce[0::2].mean()), "eos_ce": float(ce[1::2].mean())}


def main() -> None:
    args = parser(__doc__).parse_args()
    torch.manual_seed(0)
    over = {"grid.worlds": ("original",), "eval.lm_only": False}
    if args.quick:  # a small LM and 40 concepts: the same code, minutes instead of a quarter hour
        over.update({"model.lm": "smollm2-135m", "data.max_concepts": 40, "train.epochs": 0.5,
                     "train.eval_every": 10, "prototypes.format_steps": 10, "prototypes.refine_steps": 20,
                     "prototypes.batch_size": 32})
    new = load_config(ROOT / "experiments" / "quick.toml", over)
    # the old recipe trains by steps (the preset's fine-tuning is off: train.max_steps = 0)
    old = replace(new, warm_start=replace(new.warm_start, kind="none"),
                  model=replace(new.model, projector="mlp2x_gelu", pool="mean"),
                  train=replace(new.train, lr=1e-3, fresh_negatives=False, max_steps=None))
    tuned = replace(new, train=replace(new.train, max_steps=None))  # the new recipe with its fine-tuning on
    recipes = {"old": old, "new": new}
    if not args.quick:
        recipes.update({
            "old, lr 1e-4, fresh distractors": replace(old, train=replace(old.train, lr=1e-4, fresh_negatives=True)),
            "new + fine-tuning": tuned,
            "new + fine-tuning, lr 1e-3": replace(tuned, train=replace(tuned.train, lr=1e-3)),
            "new + fine-tuning, mlp2x_gelu, mean pooling": replace(
                tuned, model=replace(new.model, projector="mlp2x_gelu", pool="mean"),
                warm_start=replace(new.warm_start, l2=1e-3, mixture_epochs=0.0)),
            "new + fine-tuning, fixed distractors": replace(tuned, train=replace(tuned.train, fresh_negatives=False)),
            "new, readout stage 1.5 epochs": replace(new, warm_start=replace(new.warm_start, mixture_epochs=1.5)),
            "old, 4 image tokens": replace(old, model=replace(old.model, pool_to=4)),
            "new, 4 image tokens": replace(new, model=replace(new.model, pool_to=4)),
        })
    encoder = load_encoder(new.model.encoder)
    data = study.load_data(new, encoder, progress=False)
    lm = study.load_study_lm(new, False, 0)
    spec = study.RunSpec("original", "random:1.0", 42)
    res: dict = {"lm": lm.name, "n_concepts": len(data.taxonomy.leaves), "n_train_images": len(data.splits["train"]),
                 "steps": None, "recipes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        protos = learn_prototypes(lm, data.taxonomy, sorted(data.taxonomy.leaves), new.prototypes, progress=False,
                                  stage_scores=not args.quick)
        t_protos = protos.metrics["seconds"]
        for name, cfg in recipes.items():
            vlm = study.new_study_vlm(lm, encoder, cfg, spec.seed)
            t0 = time.perf_counter()
            summary = study.train_run(vlm, data, spec, cfg, Path(tmp) / name, progress=False, protos=protos)
            offset = 0.0
            if cfg.warm_start.kind == "prototypes":
                # the warm start (classifier fit) ran inside train_run before the first step
                offset = t_protos + summary["meta"]["warm_start"].get("seconds", 0.0)
                offset += summary["meta"].get("readout", {}).get("seconds", 0.0)  # and the readout stage
            res["recipes"][name] = {"curve": curve(summary, offset), "steps": summary["steps"],
                                    "final_heldout_leaf_f1": summary["diagnostics"][-1]["heldout_leaf_f1"],
                                    "final_train_leaf_f1": summary["diagnostics"][-1].get("train_leaf_f1"),
                                    "final_token_cosine": summary["diagnostics"][-1]["token_cosine"],
                                    "seconds": offset + summary["diagnostics"][-1]["train_seconds"],
                                    "wall_seconds_with_monitor": time.perf_counter() - t0 + (t_protos if offset else 0)}
    res["prototype_seconds"] = t_protos
    res["prototype_metrics"] = protos.metrics
    o, n = res["recipes"]["old"], res["recipes"]["new"]
    res["heldout_f1_gain"] = n["final_heldout_leaf_f1"] - o["final_heldout_leaf_f1"]
    res["initial_loss_parts"] = loss_parts(study.new_study_vlm(lm, encoder, old, spec.seed), data)
    res["heldout_f1_per_minute_old"] = (o["final_heldout_leaf_f1"] - 50.0) / (o["seconds"] / 60)
    res["heldout_f1_per_minute_new"] = (n["final_heldout_leaf_f1"] - 50.0) / (n["seconds"] / 60)
    name = "learning_quick" if args.quick else "learning"
    save(name, res)
    import plotly.graph_objects as go

    fig = go.Figure()
    for rname, r in res["recipes"].items():
        fig.add_trace(go.Scatter(x=[c["seconds"] for c in r["curve"]], y=[c["heldout_leaf_f1"] for c in r["curve"]],
                                 mode="lines+markers", name=f"{rname} recipe"))
    fig.add_hline(y=50, line_dash="dash", line_color="gray", annotation_text="chance")
    fig.update_layout(title=f"held-out leaf F1 vs training seconds ({lm.name}, {res['n_concepts']} concepts)",
                      xaxis_title="seconds of training (new: prototypes + warm start included)",
                      yaxis_title="val leaf F1")
    save_figure(fig, OUT / name)


if __name__ == "__main__":
    main()
