"""The SAE study (issue 16, item 2) on tiny random models and synthetic data: the library's
TopK coder trains, explained variance, the SAELens export round trip, the splice hook, resume,
the modality-sharing counts, the driver end to end and the CLI's one-line config errors."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from interp.studies.sae import evaluate as ev
from interp.studies.sae import figures as sae_figures
from interp.studies.sae import run as sae_run
from interp.studies.sae.__main__ import main
from interp.studies.sae.config import SaeConfig, SaeDataConfig, SaeEvalConfig, SaeModelConfig, SaeTrainConfig
from interp.studies.sae.export import SaeLensSAE, export_saelens, from_sparse_coder, load_saelens
from interp.studies.sae.latents import classify, sharing_summary
from interp.studies.sae.train import CHECKPOINT, train_sae

ROOT = Path(__file__).resolve().parents[1]


def sparse_data(n: int = 2000, d: int = 16, n_dirs: int = 48, seed: int = 0) -> torch.Tensor:
    """``[n, d]``: sums of ~3 of ``n_dirs`` random unit directions with positive weights."""
    g = torch.Generator().manual_seed(seed)
    dirs = torch.nn.functional.normalize(torch.randn(n_dirs, d, generator=g), dim=-1)
    codes = (torch.rand(n, n_dirs, generator=g) < 3 / n_dirs) * torch.rand(n, n_dirs, generator=g) * 3
    return codes @ dirs


SMALL = SaeTrainConfig(n_latents=48, k=4, lr=3e-3, batch_size=128, epochs=4, dead_after_tokens=500)


# ------------------------------------------------------------------ training, export
def test_the_library_sae_trains_on_synthetic_sparse_data():
    from sparsify import SparseCoder

    res = train_sae(sparse_data(), SMALL)
    assert isinstance(res.coder, SparseCoder) and res.coder.cfg.k == 4 and res.coder.num_latents == 48
    assert res.epoch_fvu[-1] < 0.7 * res.epoch_fvu[0]
    assert sum(res.step_fvu[-5:]) < sum(res.step_fvu[:5])
    assert res.tokens_seen == 4 * 2000


def test_explained_variance_on_a_known_case():
    x = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0]])  # mean 0, total variance 10
    assert ev.explained_variance(x, x) == pytest.approx(1.0)
    assert ev.explained_variance(x, torch.zeros_like(x)) == pytest.approx(0.0)
    assert ev.explained_variance(x, 0.5 * x) == pytest.approx(0.75)  # residual 0.25 * 10
    y = x + 5.0  # a constant offset does not change the variance
    assert ev.explained_variance(y, y - 0.5 * x) == pytest.approx(0.75)


def test_the_saelens_export_round_trips(tmp_path):
    x = sparse_data(n=600)
    coder = train_sae(x, SaeTrainConfig(n_latents=48, k=4, epochs=1, batch_size=128)).coder
    sae = from_sparse_coder(coder)
    folder = export_saelens(sae, tmp_path / "blocks.2.hook_resid_post", hook_name="blocks.2.hook_resid_post",
                            model_name="tiny-llama", context_size=24)
    cfg = json.loads((folder / "cfg.json").read_text())
    assert cfg["architecture"] == "topk" and cfg["k"] == 4 and (cfg["d_in"], cfg["d_sae"]) == (16, 48)
    assert cfg["hook_name"] == cfg["metadata"]["hook_name"] == "blocks.2.hook_resid_post" and cfg["hook_layer"] == 2
    assert cfg["normalize_activations"] == "none" and cfg["apply_b_dec_to_input"] is True
    from safetensors.torch import load_file

    w = load_file(str(folder / "sae_weights.safetensors"))
    assert {k: tuple(v.shape) for k, v in w.items()} == {"W_enc": (16, 48), "b_enc": (48,), "W_dec": (48, 16),
                                                          "b_dec": (16,)}
    back, _ = load_saelens(folder)
    with torch.no_grad():
        top = coder.encode(x)
        dense = torch.zeros(len(x), 48).scatter(-1, top.top_indices, top.top_acts)
        torch.testing.assert_close(back.encode(x), dense, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(back.reconstruct(x), coder(x).sae_out, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(back.decode(back.encode(x)), back.reconstruct(x), rtol=1e-5, atol=1e-5)
    (folder / "cfg.json").write_text(json.dumps({**cfg, "architecture": "jumprelu"}))
    with pytest.raises(ValueError, match="topk"):
        load_saelens(folder)


def test_resume_reaches_the_same_weights(tmp_path):
    x = sparse_data(n=800)
    full = train_sae(x, SMALL, tmp_path / "a")
    part = train_sae(x, SMALL, tmp_path / "b", stop_after_epochs=2)
    assert part.epochs_done == 2 and (tmp_path / "b" / CHECKPOINT).exists()
    resumed = train_sae(x, SMALL, tmp_path / "b")
    assert resumed.resumed_from == 2 and resumed.epochs_done == 4
    for (k, a), (_, b) in zip(full.coder.state_dict().items(), resumed.coder.state_dict().items()):
        torch.testing.assert_close(a, b, msg=k)
    assert resumed.epoch_fvu == pytest.approx(full.epoch_fvu)
    other = train_sae(x, SaeTrainConfig(**{**SMALL.__dict__, "k": 3}), tmp_path / "b")  # another config: fresh
    assert other.resumed_from == 0


# ------------------------------------------------------------------ splicing
def identity_sae(d: int) -> SaeLensSAE:
    """A TopK SAE that reconstructs exactly: latents +x and -x, k = d (the nonnegative half)."""
    eye = torch.eye(d)
    return SaeLensSAE(W_enc=torch.cat([eye, -eye], 1), b_enc=torch.zeros(2 * d), W_dec=torch.cat([eye, -eye], 0),
                      b_dec=torch.zeros(d), k=d)


def test_splicing_a_perfect_reconstruction_leaves_the_loss_unchanged(tiny_llama):
    from conftest import make_vlm

    from interp.sequence import vlm_item

    vlm = make_vlm(tiny_llama, n_tokens=4)
    batch = vlm.build([vlm_item(0, "Is there a robin in the image?", "Yes"), vlm_item(1, "Is it a bird?", "No")])
    feats = torch.randn(2, 4, 32, generator=torch.Generator().manual_seed(0))
    sae = identity_sae(tiny_llama.d_model)
    x = torch.randn(5, tiny_llama.d_model)
    torch.testing.assert_close(sae.reconstruct(x), x)
    out = ev.splice_losses(vlm, [(batch, feats)], sae, 1, torch.zeros(tiny_llama.d_model))
    assert out["loss_spliced"] == pytest.approx(out["loss_clean"], abs=1e-5)
    assert abs(out["loss_ablated"] - out["loss_clean"]) > 1e-4  # the hook does act
    # a random model's loss is near its maximum: no ablation raises it by MIN_ABLATION_GAP, so the
    # share is NaN here; its rule is tested on numbers below
    want = ev.recovered_share(out["loss_clean"], out["loss_spliced"], out["loss_ablated"])
    assert out["loss_recovered"] == pytest.approx(want, nan_ok=True)
    zero = SaeLensSAE(W_enc=sae.W_enc, b_enc=sae.b_enc, W_dec=torch.zeros_like(sae.W_dec), b_dec=sae.b_dec, k=sae.k)
    assert abs(ev.splice_losses(vlm, [(batch, feats)], zero, 1, torch.zeros(64))["loss_delta"]) > 1e-4


# ------------------------------------------------------------------ latents
def test_sharing_counts_and_the_shuffled_baseline():
    img = torch.zeros(6, 5, dtype=torch.bool)
    txt = torch.zeros(6, 5, dtype=torch.bool)
    img[0, 0] = txt[0, 0] = True           # latent 0: shared on concept 0
    img[1, 1] = True                       # latent 1: image only
    txt[2, 2] = True                       # latent 2: text only
    img[3, 3] = txt[4, 3] = True           # latent 3: both modalities, different concepts
    assert classify(img, txt) == ["shared", "image-only", "text-only", "both-unaligned", "none"]
    diag = torch.eye(6, dtype=torch.bool)  # 6 latents, each shared on its own concept
    s = sharing_summary(diag, diag.clone(), shuffles=200, seed=0)
    assert s["shared"] == 6 and s["shuffled_shared_mean"] < 2 and s["p_value"] < 0.05


# ------------------------------------------------------------------ the driver
class FakeTaxonomy:
    HYP = {"robin": ["bird", "animal"], "sparrow": ["bird", "animal"], "trout": ["fish", "animal"],
           "salmon": ["fish", "animal"]}

    def phrase(self, name: str) -> str:
        return ("an " if name[0] in "aeiou" else "a ") + name

    def hypernyms_of(self, leaf: str) -> frozenset[str]:
        return frozenset(self.HYP[leaf])


def tiny_setting(lm, tmp_path) -> sae_run.Setting:
    from conftest import make_vlm

    vlm = make_vlm(lm, n_tokens=4)
    records = [SimpleNamespace(key=f"{c}-{i}", concept=c, path=tmp_path / f"{c}-{i}.png")
               for c in sorted(FakeTaxonomy.HYP) for i in range(3)]
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(len(records), 4, 32, generator=g) + torch.stack(
        [torch.full((4, 32), float(sorted(FakeTaxonomy.HYP).index(r.concept))) for r in records])
    return sae_run.Setting(vlm, FakeTaxonomy(), records, list(range(len(records))), feats, "untrained-test")


def tiny_config(out: Path) -> SaeConfig:
    return SaeConfig(name="sae-test", out_dir=str(out),
                     data=SaeDataConfig(images_per_concept=3, text_per_concept=2, batch_size=6, holdout_frac=0.25),
                     model=SaeModelConfig(layers=(1, 3)),
                     train=SaeTrainConfig(expansion_factor=2, k=8, epochs=2, batch_size=64),
                     eval=SaeEvalConfig(shuffles=20, top_latents=3, top_images=2, top_tokens=3))


@pytest.fixture
def html_only(monkeypatch):
    """Figures as HTML only (no Chromium for the PNGs in the unit lane)."""
    def save(fig, stem, **kw):
        stem = Path(stem)
        stem.parent.mkdir(parents=True, exist_ok=True)
        fig.write_html(stem.with_suffix(".html"), include_plotlyjs="cdn")
        return [stem.with_suffix(".html")]

    monkeypatch.setattr(sae_figures, "save_figure", save)


def test_the_study_runs_end_to_end_and_resumes(tiny_llama, tmp_path, monkeypatch, html_only):
    out = tmp_path / "run"
    cfg = tiny_config(out)
    setting = tiny_setting(tiny_llama, tmp_path)
    res = sae_run.run(cfg, progress=False, setting=setting)
    assert [int(r["layer"]) for r in res["summary"]] == [1, 3]
    for r in res["summary"]:
        assert -1.0 < r["explained_variance"] <= 1.0 and 0 < r["l0"] <= 8 and 0 <= r["dead_frac"] <= 1
        assert r["loss_clean"] > 0 and r["n_answer_tokens"] > 0
    for name in ("summary", "sharing", "latents", "top_images", "top_tokens", "train_curve"):
        assert (out / f"{name}.csv").exists(), name
    report = (out / "report.md").read_text()
    assert "explained variance" in report and "shuffled" in report
    assert (out / "figures" / "top_images_layer1.html").exists()
    from interp.report import detect

    assert res["page"] == str(out / "report.html") and detect(out).name == "sae"  # the results page, too
    sae, cfg_json = load_saelens(out / "saes" / "blocks.3.hook_resid_post")
    assert cfg_json["model_name"].startswith("tiny-llama") and sae.d_in == tiny_llama.d_model and sae.d_sae == 128
    recorded = json.loads((out / "config.json").read_text())
    assert recorded["seeds"]["train"] == 0 and recorded["sae_library"]["eai-sparsify"]
    # a re-run reuses the store, the SAEs and the per-layer results: nothing is trained again
    monkeypatch.setattr(sae_run, "train_sae", lambda *a, **k: pytest.fail("trained again"))
    again = sae_run.run(cfg, progress=False, setting=setting)
    assert json.dumps(again["summary"], sort_keys=True) == json.dumps(res["summary"], sort_keys=True)  # NaN == NaN


# ------------------------------------------------------------------ the CLI
@pytest.mark.parametrize("setting, words", [
    ("train.k=0", "train.k"), ("data.split=dev", "data.split"), ("model.layers=bogus", "layers"),
    ("train.lr='fast'", "train.lr"), ("eval.nope=1", "nope"), ("data.holdout_frac=1.5", "holdout_frac"),
    ("data.checkpoint='no/such/projector.safetensors'", "no/such/projector.safetensors")])
def test_bad_config_values_exit_2_with_one_line(capsys, setting, words):
    with pytest.raises(SystemExit) as e:
        main([str(ROOT / "experiments" / "sae_quick.toml"), "--set", setting, "--no-progress"])
    assert e.value.code == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.startswith("python -m interp.sae:")]
    assert len(err) == 1 and words in err[0], err


def test_the_quick_config_passes_a_dry_run(capsys):
    with pytest.raises(SystemExit) as e:
        main([str(ROOT / "experiments" / "sae_quick.toml"), "--dry-run"])
    captured = capsys.readouterr()
    assert e.value.code == 0 and "dry run" in captured.out + captured.err


def test_text_prompts_mark_the_concept_and_hypernym_tokens(tiny_llama):
    from interp.studies.sae.data import ROLE_CONCEPT, ROLE_HYPERNYM, build_batches, name_roles, study_sequences

    tax = FakeTaxonomy()
    records = [SimpleNamespace(key=f"{c}-0", concept=c, path=f"{c}.png") for c in sorted(tax.HYP)]
    seqs = study_sequences(tax, records, range(len(records)), images_per_concept=1, text_per_concept=0, seed=0)
    assert sum(q.kind == "image" for q in seqs) == 4 and sum(q.kind == "text" for q in seqs) == 8
    [(batch, feats)] = build_batches(tiny_llama.tokenizer, 4, seqs, torch.zeros(4, 4, 32), batch_size=len(seqs))
    assert feats.shape[0] == 4
    roles = name_roles(tiny_llama.tokenizer, batch, seqs, tax)
    decode = tiny_llama.tokenizer.decode
    for j, q in enumerate(seqs):
        concept = decode(batch.input_ids[j][roles[j] == ROLE_CONCEPT]).strip()
        hyp = decode(batch.input_ids[j][roles[j] == ROLE_HYPERNYM]).strip()
        assert (concept, hyp) == ((q.concept, q.hypernym) if q.kind == "text" else ("", ""))


def test_every_text_template_names_the_concept_and_hypernym(tiny_llama):
    """``data.text_templates``: each wording gives one more text prompt per (concept, hypernym),
    distinct prompts, and the role marks still find both names in each."""
    from interp.studies.sae.config import TEXT_TEMPLATE_NAMES, SaeDataConfig
    from interp.studies.sae.data import (ROLE_CONCEPT, ROLE_HYPERNYM, TEXT_TEMPLATES, build_batches, name_roles,
                                         study_sequences)

    assert tuple(TEXT_TEMPLATES) == TEXT_TEMPLATE_NAMES  # the config checks names without importing the data module

    tax = FakeTaxonomy()
    records = [SimpleNamespace(key=f"{c}-0", concept=c, path=f"{c}.png") for c in sorted(tax.HYP)]
    names = tuple(TEXT_TEMPLATES)
    seqs = study_sequences(tax, records, range(len(records)), images_per_concept=1, text_per_concept=0, seed=0,
                           templates=names)
    text = [q for q in seqs if q.kind == "text"]
    assert len(text) == 8 * len(names) and len({q.prompt for q in text}) == len(text)
    [(batch, _)] = build_batches(tiny_llama.tokenizer, 4, seqs, torch.zeros(4, 4, 32), batch_size=len(seqs))
    roles = name_roles(tiny_llama.tokenizer, batch, seqs, tax)
    decode = tiny_llama.tokenizer.decode
    for j, q in enumerate(seqs):
        if q.kind == "text":
            assert decode(batch.input_ids[j][roles[j] == ROLE_CONCEPT]).strip() == q.concept, q.prompt
            assert decode(batch.input_ids[j][roles[j] == ROLE_HYPERNYM]).strip() == q.hypernym, q.prompt
    with pytest.raises(ValueError, match="valid names"):
        study_sequences(tax, records, range(len(records)), images_per_concept=1, text_per_concept=0, templates=["x"])
    with pytest.raises(ValueError, match="text_templates"):
        SaeDataConfig(text_templates=("truth", "truth"))


def test_the_answer_is_scored_in_the_format_the_projector_was_trained_on(tiny_llama):
    """The spliced answer loss is the loss of the trained answer (" Yes" + EOS, as
    ``example_batch`` builds it), not of a token the model was never trained to say."""
    from interp.examples import Example, QuestionTokens, example_batch
    from interp.sequence import Modality
    from interp.studies.sae.data import build_batches, study_sequences

    tax = FakeTaxonomy()
    records = [SimpleNamespace(key=f"{c}-0", concept=c, path=f"{c}.png") for c in sorted(tax.HYP)]
    seqs = [q for q in study_sequences(tax, records, range(len(records)), images_per_concept=1, text_per_concept=1,
                                       seed=0) if q.kind == "image"][:1]
    [(sae_batch, _)] = build_batches(tiny_llama.tokenizer, 4, seqs, torch.zeros(4, 4, 32), batch_size=1)
    ex = Example(image=0, question=seqs[0].prompt, answer="Yes", kind="leaf", concept=seqs[0].concept,
                 target=seqs[0].concept)
    train_batch, _ = example_batch(QuestionTokens(tiny_llama.tokenizer), [ex], torch.zeros(1, 4, 32), 4,
                                   with_answer=True)
    assert torch.equal(sae_batch.input_ids, train_batch.input_ids)
    answer = sae_batch.input_ids[sae_batch.modality == int(Modality.ANSWER)].tolist()
    assert answer[-1] == tiny_llama.tokenizer.eos_token_id and len(answer) >= 2


def test_the_all_split_is_every_split_in_record_order():
    splits = {"train": [0, 1, 5], "val": [2, 6], "test": [3, 4]}
    assert sae_run.split_rows(splits, "all") == [0, 1, 2, 3, 4, 5, 6]
    assert sae_run.split_rows(splits, "val") == [2, 6]


def test_the_report_lists_a_few_shared_concepts_and_how_many_more():
    from interp.studies.sae.report import few

    assert few("a | b | c", n=5) == "a, b, c"
    assert few(" | ".join("abcdefg"), n=3) == "a, b, c (+4 more)"
    assert few("") == ""


# ------------------------------------------------------------------ token groups, text-only dictionaries
def test_the_recovered_share_is_given_only_where_the_ablation_matters():
    assert ev.recovered_share(1.0, 1.0, 3.0) == pytest.approx(1.0)
    assert ev.recovered_share(1.0, 3.0, 3.0) == pytest.approx(0.0)
    assert ev.recovered_share(1.0, 2.5, 2.0) == pytest.approx(-0.5)  # worse than the mean
    tiny = ev.recovered_share(0.142, 0.151, 0.139)  # the ablation lowers the loss: no share to recover
    assert tiny != tiny
    half = ev.recovered_share(1.0, 1.0, 1.0 + ev.MIN_ABLATION_GAP / 2)
    assert half != half


def test_group_quality_reads_each_group_on_its_own():
    """An SAE that reconstructs the first half of the dimensions only: a group living there is
    explained in full, a group in the other half not at all (relative error 1)."""
    d = 8
    half = torch.cat([torch.eye(d // 2), torch.zeros(d // 2, d // 2)], 1)  # [d/2, d]: the first half
    sae = SaeLensSAE(W_enc=torch.cat([half, -half], 0).T, b_enc=torch.zeros(d), W_dec=torch.cat([half, -half], 0),
                     b_dec=torch.zeros(d), k=d // 2)
    g = torch.Generator().manual_seed(0)
    a = torch.cat([torch.randn(30, d // 2, generator=g), torch.zeros(30, d // 2)], 1)
    b = torch.cat([torch.zeros(20, d // 2), torch.randn(20, d // 2, generator=g)], 1)
    x = torch.cat([a, b])
    groups = {"a": torch.arange(50) < 30, "b": torch.arange(50) >= 30, "none": torch.zeros(50, dtype=torch.bool)}
    q = ev.group_quality(sae, x, groups)
    assert q["ev_a"] == pytest.approx(1.0) and q["relerr_a"] == pytest.approx(0.0, abs=1e-6)
    assert q["relerr_b"] == pytest.approx(1.0) and q["ev_b"] < 0.05
    assert (q["n_a"], q["n_b"], q["n_none"]) == (30, 20, 0) and q["ev_none"] != q["ev_none"]  # NaN when empty


def test_the_image_splice_touches_image_positions_and_scores_image_questions_only(tiny_llama):
    from conftest import make_vlm

    from interp.sequence import Modality, vlm_item
    from interp.studies.sae.evaluate import answer_loss

    vlm = make_vlm(tiny_llama, n_tokens=4)
    batch = vlm.build([vlm_item(0, "Is there a robin in the image?", "Yes"),
                       vlm_item(None, "Is it true that a robin is a bird?", "Yes")])
    assert bool((batch.modality[0] == int(Modality.IMAGE)).any()) and not bool((batch.modality[1] == 2).any())
    feats = torch.randn(1, 4, 32, generator=torch.Generator().manual_seed(0))
    image_row = torch.tensor([True, False])
    _, n_image = answer_loss(vlm, batch, feats, rows=image_row)
    _, n_all = answer_loss(vlm, batch, feats)
    assert 0 < n_image < n_all
    out = ev.splice_losses(vlm, [(batch, feats)], identity_sae(tiny_llama.d_model), 1,
                           torch.zeros(tiny_llama.d_model), image_only=True)
    assert out["n_answer_tokens"] == n_image
    assert out["loss_spliced"] == pytest.approx(out["loss_clean"], abs=1e-5)
    assert abs(out["loss_ablated"] - out["loss_clean"]) > 1e-4  # ablating the image tokens does act


@pytest.mark.parametrize("kind, words", [("text", "text dictionary"), ("image", "image questions only")])
def test_a_one_kind_dictionary_trains_on_that_kind_of_sequence_alone(tiny_llama, tmp_path, html_only, kind, words):
    """``train.sequences = "text"`` / ``"image"``: the SAE sees only the tokens of that kind of
    sequence in the training batches (counted here independently of the driver), and is measured
    on every token group."""
    from dataclasses import replace

    from interp.sequence import Modality
    from interp.studies.sae.data import build_batches, split_batches, study_sequences, trained_mask

    cfg = tiny_config(tmp_path / kind)
    cfg = replace(cfg, train=replace(cfg.train, sequences=kind))
    setting = tiny_setting(tiny_llama, tmp_path)
    res = sae_run.run(cfg, progress=False, setting=setting)
    seqs = study_sequences(setting.taxonomy, setting.records, setting.rows, images_per_concept=3, text_per_concept=2,
                           seed=0)
    batches = build_batches(setting.vlm.tokenizer, 4, seqs, setting.features, 6)
    train_b, _ = split_batches(len(batches), 0.25)
    rows = [(batches[i][0], j) for i in train_b for j in range(len(batches[i][0])) if seqs[i * 6 + j].kind == kind]
    want = sum(int(trained_mask(b.modality[j]).sum()) for b, j in rows)
    has_image = [bool(b.modality[j].eq(int(Modality.IMAGE)).any()) for b, j in rows]
    assert all(has_image) if kind == "image" else not any(has_image)
    for r in res["summary"]:
        assert r["train_sequences"] == kind and r["train_tokens"] == want
        assert r["n_image_tokens"] > 0 and r["n_text_prompts"] > 0 and r["n_image_question_text"] > 0
        assert 0 <= r["relerr_image_tokens"] and r["image_loss_clean"] > 0
    assert words in (tmp_path / kind / "report.md").read_text()
    _, meta = load_saelens(tmp_path / kind / "saes" / "blocks.1.hook_resid_post")
    assert meta["interp_train_sequences"] == kind


def test_the_group_table_has_as_many_separators_as_columns():
    from interp.studies.sae.report import group_table

    row = {"layer": 6, "train_sequences": "text", **{f"{m}_{g}": 0.5 for m in ("ev", "relerr") for g in
                                                      ("image_tokens", "image_question_text", "text_prompts")},
           **{f"image_loss_{k}": 0.1 for k in ("clean", "spliced", "ablated", "recovered")}}
    head, sep, line = group_table([row])
    assert head.count("|") == sep.count("|") == line.count("|")
    assert group_table([{"layer": 6}]) == []  # tables written before the per-group measures
