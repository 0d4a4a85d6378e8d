"""Visual alignment (issue 6): strict class splits, cached LM features, head, zero-shot, study.

Fast tests use tiny random LMs and synthetic image features; one integration test runs the
study on the embedded default (smollm2-135m, real images, real taxonomy) at one layer.
"""

from __future__ import annotations

import json

import pytest
import torch

from interp.analysis import class_features as cf
from interp.studies.alignment import head as hd
from interp.studies.alignment import run as st_run
from interp.studies.alignment import splits as sp
from interp.studies import alignment as st


@pytest.fixture(scope="module")
def taxonomy():
    from interp.data.images import embedded_taxonomy

    return embedded_taxonomy()


# ------------------------------------------------------------------ splits
def _names(n: int) -> list[str]:
    """Distinct class names without trailing digits (display_name drops THINGS sense digits)."""
    return [f"c{chr(97 + i // 26)}{chr(97 + i % 26)}" for i in range(n)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_concept_split_is_strict_and_seeded(seed):
    classes = _names(200)
    s = sp.class_split(classes, mode="concept", test_frac=0.25, seed=seed)
    assert not set(s.train) & set(s.test)
    assert set(s.train) | set(s.test) == set(classes)
    assert len(s.test) == 50
    assert s == sp.class_split(list(reversed(classes)), mode="concept", test_frac=0.25, seed=seed)
    assert s.test != sp.class_split(classes, mode="concept", test_frac=0.25, seed=seed + 10).test


def test_concept_split_keeps_same_name_together():
    # "bracelet1"/"bracelet2" have the same display name, hence the same prompt
    classes = [f"thing{chr(97 + i)}" for i in range(40)] + ["bracelet1", "bracelet2"]
    sides = set()
    for seed in range(20):
        s = sp.class_split(classes, mode="concept", test_frac=0.3, seed=seed)
        sides.add(("bracelet1" in s.test, "bracelet2" in s.test))
    assert sides <= {(True, True), (False, False)} and len(sides) == 2


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_hypernym_split_is_strict(taxonomy, seed):
    classes = taxonomy.leaves
    s = sp.class_split(classes, mode="hypernym", test_frac=0.25, seed=seed, taxonomy=taxonomy)
    tops = {c: sp.top_hypernyms(taxonomy, c) for c in classes}
    train_tops = set().union(*(tops[c] for c in s.train))
    test_tops = set().union(*(tops[c] for c in s.test))
    assert not train_tops & test_tops  # no top-level hypernym on both sides
    assert test_tops == set(s.held_out_groups)
    assert not set(s.train) & set(s.test) and not set(s.dropped) & (set(s.train) | set(s.test))
    assert set(s.train) | set(s.test) | set(s.dropped) == set(classes)
    for c in s.dropped:  # dropped = straddling both sides
        assert tops[c] & set(s.held_out_groups) and tops[c] - set(s.held_out_groups)
    n = len(classes)
    assert 0.25 * n <= len(s.test) <= 0.5 * n


def test_top_hypernyms_follow_the_chain(taxonomy):
    leaf = next(lf for lf in taxonomy.leaves if "mammal" in taxonomy.hypernyms_of(lf))
    assert "animal" in sp.top_hypernyms(taxonomy, leaf)
    restricted = taxonomy.restrict([leaf])
    pairs_without_top = type(taxonomy)([leaf], ["mammal"], [(leaf, "mammal")], dict(taxonomy.parents),
                                       dict(taxonomy.depths), {(leaf, "mammal"): "vehicle"}, source="t")
    assert sp.top_hypernyms(pairs_without_top, leaf) == frozenset({"animal"})
    assert sp.top_hypernyms(restricted, leaf) == sp.top_hypernyms(taxonomy, leaf)


def test_split_errors_name_the_bad_value(taxonomy):
    with pytest.raises(ValueError, match="split mode 'leaf'"):
        sp.class_split(["a", "b"], mode="leaf")
    with pytest.raises(ValueError, match="test_frac=1.5"):
        sp.class_split(["a", "b"], test_frac=1.5)
    with pytest.raises(ValueError, match="needs the taxonomy"):
        sp.class_split(["a", "b", "c"], mode="hypernym")
    with pytest.raises(ValueError, match="need >= 5 held-out"):
        sp.class_split(_names(8), test_frac=0.25)


# ------------------------------------------------------------ LM features
def test_lm_features_match_single_prompt_runs(tiny_llama):
    prompts = ["A photo of a robin", "A photo of an aardvark in the grass", "A photo of bacon"]
    feats = cf.lm_class_features(tiny_llama, prompts, batch_size=2)
    assert feats.shape == (tiny_llama.n_layers, 3, tiny_llama.d_model)
    from interp.sequence import Segment, build_batch

    for i, p in enumerate(prompts):  # alone, unpadded: same last-token residual at every block
        b = build_batch(tiny_llama.tokenizer, [[Segment("bos"), Segment("text", p)]], 0)
        got = {}
        hooks = [(f"blocks.{k}.hook_resid_post", lambda t, hook, k=k: got.__setitem__(k, t[0, -1].clone()))
                 for k in range(tiny_llama.n_layers)]
        tiny_llama(tiny_llama.embed_tokens(b.input_ids), b.attention_mask, fwd_hooks=hooks)
        for k in range(tiny_llama.n_layers):
            torch.testing.assert_close(feats[k, i], got[k], atol=1e-4, rtol=1e-4)
    mean = cf.lm_class_features(tiny_llama, prompts, pool="mean")
    assert not torch.allclose(mean, feats)
    with pytest.raises(ValueError, match="pool 'max'"):
        cf.lm_class_features(tiny_llama, prompts, pool="max")


def test_lm_features_are_cached_once(tiny_gemma, tmp_path, monkeypatch):
    prompts = ["A photo of a cat", "A photo of a dog", "A photo of an owl"]
    feats, path = cf.cached_lm_class_features(tiny_gemma, prompts, cache_dir=tmp_path)
    assert path.suffix == ".safetensors" and path.exists()
    from safetensors.torch import load_file

    assert torch.equal(load_file(path)["features"], feats)

    def boom(*a, **k):
        raise AssertionError("LM features recomputed although cached")

    monkeypatch.setattr(cf, "lm_class_features", boom)
    again, path2 = cf.cached_lm_class_features(tiny_gemma, prompts, cache_dir=tmp_path)
    assert path2 == path and torch.equal(again, feats)
    # other prompts, pool or weights -> another file; a corrupt file is recomputed
    assert cf.feature_cache_path(tmp_path, tiny_gemma.name, prompts[:2], "last") != path
    assert cf.feature_cache_path(tmp_path, tiny_gemma.name, prompts, "mean") != path
    assert cf.feature_cache_path(tmp_path, tiny_gemma.name + "+random1", prompts, "last") != path
    monkeypatch.undo()
    path.write_bytes(b"not a safetensors file")
    fixed, _ = cf.cached_lm_class_features(tiny_gemma, prompts, cache_dir=tmp_path)
    torch.testing.assert_close(fixed, feats)


# ------------------------------------------------------------ head, zero-shot
def _synthetic(n_classes=60, per_class=4, d_text=24, d_img=32, related=True, seed=0):
    """Images = a class prototype + noise; text = a fixed linear map of the prototype
    (``related``) or an unrelated random vector per class."""
    g = torch.Generator().manual_seed(seed)
    proto = torch.randn(n_classes, d_img, generator=g)
    mix = torch.randn(d_img, d_text, generator=g)
    text = proto @ mix if related else torch.randn(n_classes, d_text, generator=g)
    cls = torch.arange(n_classes).repeat_interleave(per_class)
    imgs = proto[cls] + 0.3 * torch.randn(len(cls), d_img, generator=g)
    return text, imgs, cls


SMALL_HEAD = hd.HeadConfig(text_layers=2, text_hidden=64, steps=150, batch_size=32, lr=3e-3)


def test_head_generalises_to_held_out_classes_only_when_text_carries_the_content():
    text, imgs, cls = _synthetic()
    train, test = list(range(40)), list(range(40, 60))
    res = hd.train_head(text, imgs, cls, train, SMALL_HEAD, seed=0)
    assert res.losses[-1] < res.losses[0]
    zs = hd.zero_shot(res.head, text, imgs, cls, test)
    assert zs["n_classes"] == 20 and zs["n_images"] == 80 and zs["chance1"] == pytest.approx(5.0)
    assert zs["top1"] > 40  # linear relation: transfers to unseen classes
    text_u, imgs_u, cls_u = _synthetic(related=False)
    res_u = hd.train_head(text_u, imgs_u, cls_u, train, SMALL_HEAD, seed=0)
    zs_u = hd.zero_shot(res_u.head, text_u, imgs_u, cls_u, test)
    assert zs_u["top1"] < 20  # unrelated text: near chance (5%) on unseen classes
    assert hd.zero_shot(res_u.head, text_u, imgs_u, cls_u, train)["top1"] > zs_u["top1"]  # fits what it saw


def test_head_never_reads_held_out_data():
    text, imgs, cls = _synthetic()
    train = list(range(40))
    poisoned_t, poisoned_i = text.clone(), imgs.clone()
    poisoned_t[40:] = float("nan")
    poisoned_i[cls >= 40] = float("nan")
    a = hd.train_head(text, imgs, cls, train, SMALL_HEAD, seed=3)
    b = hd.train_head(poisoned_t, poisoned_i, cls, train, SMALL_HEAD, seed=3)
    assert a.losses == b.losses  # same seed, same batches; held-out rows never touched
    for pa, pb in zip(a.head.state_dict().values(), b.head.state_dict().values()):
        assert torch.equal(pa, pb)


def test_head_architecture_and_config_errors():
    cfg = hd.HeadConfig()
    head = hd.AlignHead(640, 1280, cfg)
    kinds = [type(m).__name__ for m in head.text]
    assert kinds.count("Linear") == 4 and kinds.count("BatchNorm1d") == 3 and kinds.count("Dropout") == 3
    assert isinstance(head.image, torch.nn.Identity)
    head.eval()
    z = head.encode_text(torch.randn(5, 640))
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(5))
    assert head.encode_image(torch.randn(5, 1280)).shape == (5, 1280)
    assert isinstance(hd.AlignHead(64, 32, hd.HeadConfig(image_side="linear", out_dim=16)).image, torch.nn.Linear)
    with pytest.raises(ValueError, match="image_side 'conv'"):
        hd.HeadConfig(image_side="conv")
    with pytest.raises(ValueError, match="out_dim = the image width 1280"):
        hd.AlignHead(640, 1280, hd.HeadConfig(out_dim=256))
    with pytest.raises(ValueError, match="dropout=1.0"):
        hd.HeadConfig(dropout=1.0)


def test_info_nce_and_zero_shot_by_hand():
    t = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    i = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    logits = 10 * t @ i.T
    want = 0.5 * (torch.nn.functional.cross_entropy(logits, torch.arange(6)) +
                  torch.nn.functional.cross_entropy(logits.T, torch.arange(6)))
    torch.testing.assert_close(hd.info_nce(t, i, 10.0), want)
    assert hd.info_nce(t, t, 10.0) < hd.info_nce(t, i, 10.0)
    # zero-shot with an identity head: image j sits next to text j, except image 3 -> text 0
    head = hd.AlignHead(4, 4, hd.HeadConfig(text_layers=1, standardize_text=False, center_images=False)).eval()
    with torch.no_grad():
        head.text[0].weight.copy_(torch.eye(4))
        head.text[0].bias.zero_()
    text = torch.eye(4)
    imgs = torch.eye(4).clone()
    imgs[3] = torch.tensor([1.0, 0.0, 0.0, 0.2])
    zs = hd.zero_shot(head, text, imgs, torch.arange(4), [0, 1, 2, 3], ks=(1, 2))
    assert zs["top1"] == 75.0 and zs["top2"] == 100.0 and zs["chance1"] == 25.0 and zs["chance2"] == 50.0
    assert zs["pred"][3][0] == 0
    m = hd.confusion(zs["true"], [p[0] for p in zs["pred"]], 4)
    assert m[3, 0] == 1.0 and m[0, 0] == 1.0
    names, gm = hd.group_confusion(["a", "b"], ["a", "a"], {"a": ["x"], "b": ["x", "y"]})
    assert names == ["x", "y"] and gm[1, 0] == 1.0


# -------------------------------------------------------------- study (tiny)
def test_config_and_layers(tmp_path):
    cfg = st.load_config("experiments/alignment_quick.toml")
    assert cfg.models.lms == "available" and set(cfg.split.modes) == {"concept", "hypernym"}
    assert st.parse_layers("every:3", 18) == [0, 3, 6, 9, 12, 15, 17]
    assert st.parse_layers([-1, 0], 30) == [0, 29]
    with pytest.raises(ValueError, match="valid layers are 0..17"):
        st.parse_layers([18], 18)
    bad = tmp_path / "bad.toml"
    bad.write_text('[split]\nmode = ["concept"]\n')
    with pytest.raises(ValueError, match=r"unknown keys \['mode'\] in \[split\]"):
        st.load_config(bad)
    with pytest.raises(ValueError, match="split.modes"):
        st.apply_overrides(cfg, {"split.modes": ["leaf"]})
    assert st.config_from_dict(cfg.to_dict()) == cfg
    from interp.models.lm import ModelUnavailableError

    with pytest.raises(ModelUnavailableError, match="qwen3-8b"):
        st.resolve_lms(st.AlignModelsConfig(lms=("qwen3-8b",)))
    with pytest.raises(SystemExit):
        from interp.alignment import main

        main([str(bad)])


def _fake_data(taxonomy, n=40):
    leaves = taxonomy.leaves[::len(taxonomy.leaves) // n][:n]
    tx = taxonomy.restrict(leaves)
    classes = sorted(tx.leaves)
    g = torch.Generator().manual_seed(0)
    cls = torch.arange(len(classes)).repeat_interleave(3)
    feats = torch.randn(len(classes), 16, generator=g)[cls] + 0.1 * torch.randn(len(cls), 16, generator=g)
    return st.AlignData(tx, classes, cf.class_prompts(classes, tx.phrase), feats, cls,
                        {c: sp.top_hypernyms(tx, c) or frozenset({sp.NO_GROUP}) for c in classes}, "fake")


@pytest.mark.integration
def test_study_end_to_end_on_a_tiny_lm(taxonomy, tmp_path, monkeypatch):
    import plotly.graph_objects as go

    # PNG export (kaleido + Chromium) costs seconds per figure; it is exercised by the
    # integration test below, here HTML suffices
    monkeypatch.setattr(go.Figure, "write_image", lambda self, *a, **k: None)
    data = _fake_data(taxonomy)
    monkeypatch.setattr(st_run, "load_align_data", lambda cfg, progress=True: data)
    cfg = st.load_config("experiments/alignment_quick.toml", {
        "out_dir": str(tmp_path / "out"), "models.lms": ["tiny-llama"], "models.layers": [1],
        "models.feature_cache": str(tmp_path / "cache"),
        "split.seeds": [0, 1], "split.test_frac": 0.3, "head.steps": 20, "head.batch_size": 16,
        "head.text_hidden": 32, "eval.batch_size": 32})
    res = st_run.run(cfg, progress=False)
    out = tmp_path / "out"
    rows = st.read_csv(out / "results.csv")
    # 2 variants (tiny-llama, +random0) x 2 layers (1 and the score layer 3) x 2 modes x 2 seeds
    assert len(rows) == res["n_units"] == 16
    assert {r["lm"] for r in rows} == {"tiny-llama", "tiny-llama+random0"}
    assert {r["layer"] for r in rows} == {1, 3}
    for r in rows:
        assert r["n_train_classes"] + r["n_test_classes"] + r["n_dropped_classes"] == 40
        assert 0 <= r["top1"] <= r["top5"] <= 100
    summ = st.read_csv(out / "summary.csv", st.SUMMARY_NUMERIC)
    assert all(s["n_seeds"] == 2 for s in summ)
    assert len(list((tmp_path / "cache").rglob("*.safetensors"))) == 2
    lm_only = list(json.load(open(out / "correlation.json")))
    assert {c["lm_only_metric"] for c in lm_only} == {"macro_f1", "pairwise_acc", "cloze_acc"}
    report = (out / "report.md").read_text()
    assert "## Split by concept" in report and "## Split by hypernym" in report and "LM-only" in report
    assert (out / "figures" / "score_by_layer_concept.html").exists()
    assert (out / "figures" / "confusion_classes_hypernym.html").exists()
    # units record their held-out classes, which never overlap the training classes
    unit = json.load(open(out / "units" / "tiny-llama" / "hypernym-L03-s1.json"))
    split = sp.class_split(data.classes, mode="hypernym", test_frac=0.3, seed=1, taxonomy=data.taxonomy)
    assert unit["test_classes"] == list(split.test)
    # a re-run does no work: no LM load, no unit training
    monkeypatch.setattr(st_run, "_load_hooked", lambda *a, **k: pytest.fail("LM loaded on a finished study"))
    monkeypatch.setattr(st_run, "run_unit", lambda *a, **k: pytest.fail("unit re-run on a finished study"))
    again = st_run.run(cfg, progress=False)
    assert again["scores"] == res["scores"]
    # figures/alignment.py redraws from the folder alone
    import importlib.util

    spec = importlib.util.spec_from_file_location("fig_alignment", "figures/alignment.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main([str(out), "--out", str(tmp_path / "redrawn")])
    assert (tmp_path / "redrawn" / "report.md").read_text() == report
    # the results page: written by the run, rebuilt by python -m interp.report from the folder alone
    from interp.report import detect, main as report_main

    assert res["page"] == str(out / "report.html") and detect(out).name == "alignment"
    (out / "report.html").unlink()
    report_main([str(out), "--no-progress"])
    html = (out / "report.html").read_text()
    assert 'data-figure="score_by_layer_concept"' in html and 'data-figure="confusion_classes_hypernym"' in html
    assert 'id="table-headline"' in html and 'id="table-per_layer"' in html


# ---------------------------------------------------- integration (embedded)
@pytest.mark.integration
def test_embedded_default_aligns_above_chance(tmp_path):
    """smollm2-135m (pretrained), real images and taxonomy, the last block, one seed."""
    cfg = st.load_config("experiments/alignment_quick.toml", {
        "out_dir": str(tmp_path), "models.lms": ["smollm2-135m"], "models.random_seeds": [],
        "models.layers": "last", "split.modes": ["concept"], "split.seeds": [0], "head.steps": 80,
        "head.text_hidden": 256, "eval.lm_only": False})
    res = st_run.run(cfg, progress=False)
    (score,) = res["scores"]
    assert score["lm"] == "smollm2-135m" and score["score_layer"] == 29
    assert score["n_test_classes"] >= 100
    # 114 unseen classes: chance is under 1%; a pretrained LM's class names must carry
    # enough to beat it several times over
    assert score["top1"] > 4 * score["chance1"], score
    assert (tmp_path / "report.md").exists()
