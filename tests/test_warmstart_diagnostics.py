"""The learning recipe's parts: prototypes, the classifier warm start, in-training diagnostics,
fresh distractors per epoch, and resuming with diagnostics (tiny models)."""

import pytest
import torch

from conftest import make_vlm
from interp.diagnostics import COLLAPSED_COSINE, token_stats, verdict
from interp.examples import Example
from interp.io import read_json
from interp.train_projector import TrainConfig, train_projector
from interp.warmstart import (WarmStartConfig, fit_classifier, fold_of, mixture_inputs, out_of_fold_logits,
                              prototype_init, refine_readout)

WORDS = ["bird", "fish", "tool", "fruit", "vehicle", "item of clothing"]


def _examples(n=24, shift=0):
    return [Example(i % 6, f"Is there a {WORDS[(i + shift) % 6]} in the image?", "Yes" if i % 2 else "No", "leaf", "c",
                    WORDS[i % 6]) for i in range(n)]


def _features():
    return torch.randn(6, 16, 32, generator=torch.Generator().manual_seed(0))


def test_classifier_fits_separable_features():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(5, 20, generator=g) * 3
    y = torch.arange(5).repeat(8)
    x = centers[y] + 0.3 * torch.randn(40, 20, generator=g)
    W, b = fit_classifier(x, y, 5)
    assert ((x @ W.T + b).argmax(1) == y).all()


def test_prototype_init_maps_each_image_onto_its_row(tiny_llama):
    vlm = make_vlm(tiny_llama, n_tokens=4, d_img=24, pool_to=1)
    g = torch.Generator().manual_seed(1)
    labels = torch.arange(6).repeat(3)
    centers = torch.randn(6, 24, generator=g) * 4
    feats = (centers[labels].unsqueeze(1) + 0.2 * torch.randn(18, 4, 24, generator=g))
    d = tiny_llama.d_model
    u, D = torch.randn(d, generator=g), torch.randn(6, d, generator=g)
    report = prototype_init(vlm.projector, feats, labels, u, D, tiny_llama.embed_scale, WarmStartConfig(active=1, gain=1.0))
    assert report["classifier_train_acc"] == 100.0
    out = vlm.projector(feats)[:, 0] * tiny_llama.embed_scale - u  # the concept part of each token
    nearest = (torch.nn.functional.normalize(out, dim=-1) @ torch.nn.functional.normalize(D, dim=-1).T).argmax(1)
    assert (nearest == labels).float().mean() == 1.0


def test_softmax_warm_start_gives_convex_combinations_of_prototypes(tiny_llama):
    """mlp2x_softmax: an image of concept c maps onto u + D_c, and an ambiguous one onto a
    convex combination of the rows (its concept part is never larger than the largest row)."""
    vlm = make_vlm(tiny_llama, kind="mlp2x_softmax", n_tokens=4, d_img=24, pool_to=1)
    g = torch.Generator().manual_seed(1)
    labels = torch.arange(6).repeat(3)
    centers = torch.randn(6, 24, generator=g) * 4
    feats = centers[labels].unsqueeze(1) + 0.2 * torch.randn(18, 4, 24, generator=g)
    d = tiny_llama.d_model
    u, D = torch.randn(d, generator=g), torch.randn(6, d, generator=g)
    report = prototype_init(vlm.projector, feats, labels, u, D, tiny_llama.embed_scale,
                            WarmStartConfig(kind="prototypes", temperature=0.25))
    assert report["classifier_train_acc"] == 100.0 and report["top_probability"] > 0.99
    with torch.no_grad():
        part = vlm.projector(feats)[:, 0] * tiny_llama.embed_scale - u
        assert torch.allclose(part, D[labels], atol=1e-2 * float(D.norm(dim=-1).max()))
        mixed = (centers[0] + centers[1]) / 2 + torch.zeros(1, 4, 24)
        part = vlm.projector(mixed)[0, 0] * tiny_llama.embed_scale - u
    assert float(part.norm()) <= float(D.norm(dim=-1).max()) + 1e-4


def test_relmax_is_the_softmax_over_its_largest_entry():
    from interp.projector import RelMax, hidden_activation

    z = torch.randn(5, 7, generator=torch.Generator().manual_seed(0)) * 3
    p = torch.softmax(z, -1)
    assert torch.allclose(RelMax()(z), p / p.amax(-1, keepdim=True), atol=1e-6)
    assert torch.equal(RelMax()(z).amax(-1), torch.ones(5))
    with pytest.raises(ValueError, match="no hidden layer"):
        hidden_activation("linear")


def test_relmax_warm_start_superposes_the_plausible_prototypes(tiny_llama):
    """mlp2x_relmax: an image of concept c still maps onto u + D_c, but an ambiguous image's token
    carries the top concept at full strength plus the runner-up at its relative probability (a
    superposition, where mlp2x_softmax would average them)."""
    g = torch.Generator().manual_seed(1)
    labels = torch.arange(6).repeat(3)
    centers = torch.randn(6, 24, generator=g) * 4
    feats = centers[labels].unsqueeze(1) + 0.2 * torch.randn(18, 4, 24, generator=g)
    d = tiny_llama.d_model
    u, D = torch.randn(d, generator=g), torch.randn(6, d, generator=g)
    cfg = WarmStartConfig(kind="prototypes", temperature=1.0)
    hidden, parts = {}, {}
    for kind in ("mlp2x_softmax", "mlp2x_relmax"):
        vlm = make_vlm(tiny_llama, kind=kind, n_tokens=4, d_img=24, pool_to=1)
        report = prototype_init(vlm.projector, feats, labels, u, D, tiny_llama.embed_scale, cfg)
        assert report["classifier_train_acc"] == 100.0
        with torch.no_grad():
            part = vlm.projector(feats)[:, 0] * tiny_llama.embed_scale - u
            assert (part @ D.T).argmax(1).tolist() == labels.tolist()
            mixed = (0.55 * centers[0] + 0.45 * centers[1]) + torch.zeros(1, 4, 24)
            x = mixed.amax(1)
            hidden[kind] = vlm.projector.net[1](vlm.projector.net[0](x))[0, :6]
            parts[kind] = vlm.projector(mixed)[0, 0] * tiny_llama.embed_scale - u
    soft, rel = hidden["mlp2x_softmax"], hidden["mlp2x_relmax"]
    assert torch.allclose(soft.sum(), torch.tensor(1.0), atol=1e-5) and float(rel.max()) == pytest.approx(1.0)
    assert torch.allclose(rel, soft / soft.max(), atol=1e-5)
    assert torch.allclose(parts["mlp2x_relmax"], rel @ D, atol=1e-3 * float(D.norm(dim=-1).max()))


def test_classifier_precision_is_an_option_and_returns_the_input_dtype():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(5).repeat(8)
    x = torch.randn(5, 20, generator=g)[y] * 3 + 0.3 * torch.randn(40, 20, generator=g)
    W32, b32 = fit_classifier(x, y, 5)
    W64, b64 = fit_classifier(x, y, 5, precision="float64")
    assert W64.dtype == b64.dtype == torch.float32
    assert torch.equal((x @ W32.T + b32).argmax(1), (x @ W64.T + b64).argmax(1))
    with pytest.raises(ValueError, match="float16"):
        fit_classifier(x, y, 5, precision="float16")
    with pytest.raises(ValueError, match="precision"):
        WarmStartConfig(precision="half")


def test_folds_hold_out_one_rendering_per_concept():
    labels = torch.tensor([0, 1, 0, 2, 1, 0, 2])
    assert fold_of(labels, 3).tolist() == [0, 0, 1, 0, 1, 2, 1]


def test_out_of_fold_logits_are_less_sure_than_in_sample_ones():
    """The point of out-of-fold mixtures: on the images it was fitted on, the classifier is
    (nearly) one-hot; out of fold it is spread, as on held-out images."""
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(6, 20, generator=g)
    y = torch.arange(6).repeat(3)
    x = centers[y] + 1.5 * torch.randn(18, 20, generator=g)
    W, b = fit_classifier(x, y, 6, l2=1e-4)
    inside = torch.softmax(x @ W.T + b, 1).max(1).values
    oof = torch.softmax(out_of_fold_logits(x, y, 6, folds=3, l2=1e-4), 1).max(1).values
    assert float(inside.mean()) > 0.95 and float(oof.mean()) < float(inside.mean()) - 0.1


def test_readout_stage_trains_only_the_second_layer_and_writes_it_back(tiny_gemma, tmp_path):
    vlm = make_vlm(tiny_gemma, kind="mlp2x_softmax", n_tokens=4, d_img=24, pool_to=1)
    g = torch.Generator().manual_seed(1)
    labels = torch.arange(6).repeat(3)
    feats = torch.randn(6, 24, generator=g)[labels].unsqueeze(1) * 4 + 0.5 * torch.randn(18, 4, 24, generator=g)
    d = tiny_gemma.d_model
    cfg = WarmStartConfig(kind="prototypes", mixture_epochs=2, mixture_lr=0.05, mixture_batch=6)
    prototype_init(vlm.projector, feats, labels, torch.randn(d, generator=g), torch.randn(6, d, generator=g),
                   tiny_gemma.embed_scale, cfg)
    mix = mixture_inputs(vlm.projector, feats, labels, 6, cfg)
    assert mix.shape == (18, 1, 6) and torch.allclose(mix.sum(-1), torch.ones(18, 1))
    first = [t.clone() for t in vlm.projector.net[0].parameters()]
    second = vlm.projector.net[2].weight.clone()
    before = {k: v.clone() for k, v in vlm.projector.state_dict().items()}
    exs = [Example(i, f"Is there a {WORDS[int(labels[i])]} in the image?", "Yes", "leaf", "c", WORDS[int(labels[i])])
           for i in range(18)]
    out = refine_readout(vlm, feats, torch.arange(18), labels, 6, exs, cfg, TrainConfig(batch_size=6), tmp_path,
                         progress=False)
    assert out["steps"] == 6
    assert tiny_gemma.embed_scale > 1.5  # gemma scales its embeddings by sqrt(d_model): the check can fail
    lr = read_json(tmp_path / "train.json")["train_config"]["lr"]  # mixture_lr is on the token scale
    assert lr == pytest.approx(cfg.mixture_lr / tiny_gemma.embed_scale)
    assert all(torch.equal(a, b) for a, b in zip(first, vlm.projector.net[0].parameters()))
    new = vlm.projector.net[2].weight
    assert not torch.allclose(new[:, :6], second[:, :6]) and torch.equal(new[:, 6:], second[:, 6:])
    again = make_vlm(tiny_gemma, kind="mlp2x_softmax", n_tokens=4, d_img=24, pool_to=1)
    again.projector.load_state_dict(before)
    refine_readout(again, feats, torch.arange(18), labels, 6, exs, cfg, TrainConfig(batch_size=6), tmp_path,
                   progress=False)  # finished: loaded from disk, not retrained
    assert torch.equal(again.projector.net[2].weight, new)


def test_readout_stage_monitor_sees_the_stage_and_leaves_its_result_alone(tiny_gemma, tmp_path):
    from interp.diagnostics import stage_history

    g = torch.Generator().manual_seed(1)
    labels = torch.arange(6).repeat(3)
    feats = torch.randn(6, 24, generator=g)[labels].unsqueeze(1) * 4 + 0.5 * torch.randn(18, 4, 24, generator=g)
    d = tiny_gemma.d_model
    u, D = torch.randn(d, generator=g), torch.randn(6, d, generator=g)
    cfg = WarmStartConfig(kind="prototypes", mixture_epochs=2, mixture_lr=0.05, mixture_batch=6)
    exs = [Example(i, f"Is there a {WORDS[int(labels[i])]} in the image?", "Yes", "leaf", "c", WORDS[int(labels[i])])
           for i in range(18)]
    weights = []
    for monitored in (False, True):
        vlm = make_vlm(tiny_gemma, kind="mlp2x_softmax", n_tokens=4, d_img=24, pool_to=1)
        prototype_init(vlm.projector, feats, labels, u, D, tiny_gemma.embed_scale, cfg)
        seen = []

        def monitor() -> dict:  # what the monitor sees: the full projector with the readout so far
            seen.append(vlm.projector.net[2].weight[:, :6].clone())
            return {"heldout_leaf_f1": 50.0 + len(seen)}

        out = refine_readout(vlm, feats, torch.arange(18), labels, 6, exs, cfg, TrainConfig(batch_size=6, eval_every=4),
                             tmp_path / str(monitored), progress=False, monitor=monitor if monitored else None)
        weights.append(vlm.projector.net[2].weight.clone())
    assert torch.equal(weights[0], weights[1])  # the monitor does not change what the stage learns
    assert [r["step"] for r in out["diagnostics"]] == [0, 4, 6] and len(out["losses"]) == 6
    assert not torch.equal(seen[0], seen[-1]) and torch.equal(seen[-1], weights[1][:, :6])
    # the run's history: the stage, then the fine-tuning counted on from its end
    summary = {"meta": {"readout": out}, "losses": [0.5, 0.4],
               "diagnostics": [{"step": 0, "heldout_leaf_f1": 53.0}, {"step": 2, "heldout_leaf_f1": 60.0}]}
    history, losses = stage_history(summary)
    assert [(r["stage"], r["step"]) for r in history] == [("readout", 0), ("readout", 4), ("readout", 6),
                                                         ("fine-tune", 8)]
    assert losses == out["losses"] + [0.5, 0.4]
    assert stage_history({"losses": [1.0], "diagnostics": [{"step": 0}]}) == ([{"step": 0, "stage": "fine-tune"}], [1.0])


def test_max_pooling():
    from interp.projector import ProjectorConfig, pool_tokens

    x = torch.randn(2, 16, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(pool_tokens(x, 1, "max"), x.amax(1, keepdim=True))
    grid = pool_tokens(x, 4, "max")  # 4x4 -> 2x2 cells
    cell = x.reshape(2, 4, 4, 8)[:, :2, :2].reshape(2, 4, 8).amax(1)
    assert torch.equal(grid[:, 0], cell)
    assert torch.allclose(pool_tokens(x, 1), x.mean(1, keepdim=True))
    with pytest.raises(ValueError, match="pooling 'median'"):
        ProjectorConfig(kind="linear", d_in=8, d_out=8, n_tokens_in=16, encoder="e", lm="l", pool_to=1, pool="median")


def test_prototype_init_refuses_other_kinds_and_too_many_concepts(tiny_llama):
    lin = make_vlm(tiny_llama, kind="linear")
    with pytest.raises(ValueError, match="mlp2x_gelu, mlp2x_softmax or mlp2x_relmax"):
        prototype_init(lin.projector, torch.randn(2, 16, 32), torch.tensor([0, 1]), torch.zeros(tiny_llama.d_model),
                       torch.zeros(2, tiny_llama.d_model), 1.0)
    mlp = make_vlm(tiny_llama)
    n = tiny_llama.d_model + 1
    with pytest.raises(ValueError, match="at most d_model"):
        prototype_init(mlp.projector, torch.randn(2, 16, 32), torch.tensor([0, 1]), torch.zeros(tiny_llama.d_model),
                       torch.zeros(n, tiny_llama.d_model), 1.0)
    with pytest.raises(ValueError, match="warm_start.kind"):
        WarmStartConfig(kind="magic")


def test_token_stats_detects_a_constant_projector(tiny_llama):
    vlm = make_vlm(tiny_llama, pool_to=1)
    with torch.no_grad():
        vlm.projector.net[2].weight.zero_()  # output = bias: every image gives the same token
    s = token_stats(vlm, _features(), WORDS, text_norm=1.0)
    assert s["token_cosine"] == pytest.approx(1.0, abs=1e-5)
    assert any("COLLAPSED" in w for w in verdict([{"step": 5, **s}]))
    fresh = make_vlm(tiny_llama, pool_to=1)
    assert token_stats(fresh, _features(), WORDS, 1.0)["token_cosine"] < COLLAPSED_COSINE


def test_verdict_names_a_run_at_chance():
    warn = verdict([{"step": 100, "heldout_leaf_f1": 51.0, "token_cosine": 0.3}])
    assert len(warn) == 1 and "NOT LEARNING" in warn[0] and "51.0" in warn[0]
    assert verdict([{"step": 100, "heldout_leaf_f1": 91.0, "token_cosine": 0.3}]) == []


def test_verdict_tells_collapse_from_near_constant_tokens_that_still_see():
    seeing = verdict([{"step": 9, "heldout_leaf_f1": 70.0, "token_cosine": 0.98, "image_part": 0.12}])
    assert len(seeing) == 1 and seeing[0].startswith("NEAR-CONSTANT") and "12%" in seeing[0] and "70.0" in seeing[0]
    blind = verdict([{"step": 9, "heldout_leaf_f1": 52.0, "token_cosine": 0.98, "image_part": 0.01}])
    assert [w.split(":")[0] for w in blind] == ["NOT LEARNING", "COLLAPSED"]


def test_monitor_is_recorded_shown_and_survives_resume(tiny_llama, tmp_path):
    calls = []

    def monitor():
        calls.append(1)
        return {"heldout_leaf_f1": 50.0 + len(calls), "token_cosine": 0.2, "norm_ratio": 1.0}

    cfg = TrainConfig(epochs=2, batch_size=4, checkpoint_every=1, eval_every=4, seed=3)
    a = make_vlm(tiny_llama, seed=1)
    full = train_projector(a, _features(), _examples(), cfg, tmp_path / "a", progress=False, monitor=monitor)
    steps = [d["step"] for d in full["diagnostics"]]
    assert steps == [0, 4, 8, 12]
    assert (tmp_path / "a" / "diagnostics.csv").exists() and (tmp_path / "a" / "learning_curve.html").exists()
    assert full["warnings"] and "NOT LEARNING" in full["warnings"][0]
    b = make_vlm(tiny_llama, seed=1)
    train_projector(b, _features(), _examples(), cfg, tmp_path / "b", progress=False, monitor=monitor, stop_after=6)
    c = make_vlm(tiny_llama, seed=1)
    resumed = train_projector(c, _features(), _examples(), cfg, tmp_path / "b", progress=False, monitor=monitor)
    assert [d["step"] for d in resumed["diagnostics"]] == [0, 4, 8, 12]
    for pa, pc in zip(a.projector.parameters(), c.projector.parameters()):
        assert torch.allclose(pa, pc, atol=1e-6)


def test_a_measured_step_zero_is_not_measured_again(tiny_llama, tmp_path):
    calls = []

    def monitor():
        calls.append(1)
        return {"heldout_leaf_f1": 70.0, "token_cosine": 0.2}

    cfg = TrainConfig(epochs=1, batch_size=4, eval_every=4, seed=3)
    measured = {"step": 59, "stage": "readout", "loss": 0.3, "heldout_leaf_f1": 83.0, "token_cosine": 0.5}
    out = train_projector(make_vlm(tiny_llama, seed=1), _features(), _examples(), cfg, tmp_path, progress=False,
                          monitor=monitor, measured=measured)
    first = out["diagnostics"][0]
    assert first["step"] == 0 and first["heldout_leaf_f1"] == 83.0 and "stage" not in first
    assert len(calls) == len(out["diagnostics"]) - 1  # every later record is measured


def test_fresh_examples_per_epoch(tiny_llama, tmp_path):
    seen = []

    def per_epoch(epoch):
        seen.append(epoch)
        return _examples(shift=epoch)

    s = train_projector(make_vlm(tiny_llama), _features(), per_epoch, TrainConfig(epochs=3, batch_size=8), tmp_path,
                        progress=False)
    assert s["steps"] == 9 and {0, 1, 2} <= set(seen)
    with pytest.raises(ValueError, match="same number"):
        train_projector(make_vlm(tiny_llama), _features(), lambda e: _examples(24 + e), TrainConfig(epochs=2, batch_size=8),
                        tmp_path / "bad", progress=False)


def test_fresh_distractors_change_only_the_no_questions():
    from interp.data.taxonomy import build_taxonomy
    from interp.studies.taxonomy.questions import examples_for_images

    tax = build_taxonomy({f"leaf{i}": ["animal"] for i in range(8)} | {f"tool{i}": ["tool"] for i in range(4)},
                         {"animal": None, "tool": None})
    imgs = [(i, c) for i, c in enumerate(sorted(tax.leaves))]
    ident = {c: c for c in tax.leaves}
    e0 = examples_for_images(imgs, tax, ident, {}, train=True, seed=1)
    e1 = examples_for_images(imgs, tax, ident, {}, train=True, seed=1, epoch=1)
    assert len(e0) == len(e1)
    assert [e.question for e in e0 if e.answer == "Yes"] == [e.question for e in e1 if e.answer == "Yes"]
    assert [e.question for e in e0 if e.kind == "leaf" and e.answer == "No"] != \
        [e.question for e in e1 if e.kind == "leaf" and e.answer == "No"]
    assert e0 == examples_for_images(imgs, tax, ident, {}, train=True, seed=1, epoch=0)
