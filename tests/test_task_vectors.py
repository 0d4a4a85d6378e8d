"""Task vectors and function vectors: batched paths against plain-hook references, both
intervention routes (TransformerLens hooks and nnsight) giving the same numbers, interventions
that must change the output, task data, config, and the study end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import make_vlm
from interp.analysis import function_vectors as fv
from interp.analysis import task_vectors as tv

DEMOS = [("robin", "bird"), (1, "mammal"), ("cow", "mammal")]
QUERIES = ["sparrow", 3, "hot dog", 0]


@pytest.fixture(params=["tiny_gemma", "tiny_llama"])
def vlm(request):
    lm = request.getfixturevalue(request.param)
    return make_vlm(lm, n_tokens=16, d_img=32, pool_to=1)


@pytest.fixture
def feats():
    return torch.randn(5, 16, 32, generator=torch.Generator().manual_seed(0))


def _queries():
    return [tv.icl_prompt([], q) for q in QUERIES]


# ------------------------------------------------------------------ prompts
def test_text_prompt_tokenizes_like_the_plain_string(tiny_llama):
    vlm = make_vlm(tiny_llama)
    p = tv.icl_prompt([("robin", "bird"), ("cow", "mammal")], "sparrow", instruction="Name the category.")
    assert [s.kind for s in p] == ["bos", "text"]
    assert p[1].text == "Name the category.\nrobin : bird\ncow : mammal\nsparrow :"
    b = vlm.build([p])
    plain = vlm.tokenizer("Name the category.\nrobin : bird\ncow : mammal\nsparrow :", add_special_tokens=False)["input_ids"]
    assert b.input_ids[0, 1:].tolist() == plain
    assert int(b.input_ids[0, -1]) == tv.sep_token_id(vlm.tokenizer)


def test_image_prompt_segments_and_localised_features(tiny_llama, feats):
    vlm = make_vlm(tiny_llama, n_tokens=16, d_img=32, pool_to=1)
    p = tv.icl_prompt([(4, "bird"), ("cow", "mammal")], 2, prefix_image=1)
    assert [s.kind for s in p] == ["bos", "image", "image", "text", "image", "text"]
    local, sub = tv.localise([p], feats)
    assert [s.image for s in local[0] if s.kind == "image"] == [0, 1, 2]
    assert torch.equal(sub, feats[[1, 4, 2]])
    b = vlm.build(local)
    assert int((b.image_slot >= 0).sum()) == 3 and int(b.input_ids[0, -1]) == tv.sep_token_id(vlm.tokenizer)
    with pytest.raises(ValueError, match="out of range"):
        tv.localise([tv.icl_prompt([], 9)], feats)
    with pytest.raises(TypeError, match="word"):
        tv.icl_prompt([], 1.5)


# ------------------------------------------------------------ task vectors
def test_last_resid_matches_run_with_cache(vlm, feats):
    prompts = [tv.icl_prompt(DEMOS, q) for q in QUERIES]
    got = tv.last_resid(vlm, prompts, feats, layers=[0, 2], batch_size=3)
    assert got.shape == (4, 2, vlm.lm.d_model)
    for i, p in enumerate(prompts):
        (b, f), = tv.batches(vlm, [p], feats, 1)
        _, cache = vlm.run_with_cache(b, f, names=["blocks.0.hook_resid_post", "blocks.2.hook_resid_post"])
        assert torch.allclose(got[i, 0], cache.last("blocks.0.hook_resid_post")[0], atol=1e-5)
        assert torch.allclose(got[i, 1], cache.last("blocks.2.hook_resid_post")[0], atol=1e-5)


@pytest.mark.parametrize("mode", ["replace", "add"])
def test_patch_sweep_matches_one_query_hooks(vlm, feats, mode):
    vec = tv.task_vector(vlm, [tv.icl_prompt(DEMOS, q) for q in QUERIES], feats)
    layers = list(range(vlm.lm.n_layers))  # includes the last layer (no block after it)
    vecs = torch.stack([vec, tv.random_like(vec, seed=1)], 1)
    patched, clean = tv.patch_sweep(vlm, _queries(), feats, vecs, layers, mode=mode, batch_size=4)
    assert patched.shape == (len(layers), 2, len(QUERIES), vlm.lm.d_model)
    assert torch.allclose(clean, tv.run_last(vlm, _queries(), feats), atol=1e-5)
    for li in layers:
        for j in range(2):
            for i, q in enumerate(_queries()):
                ref = tv.patch_one(vlm, q, feats, vecs[li, j], li, mode=mode)
                assert torch.allclose(ref, patched[li, j, i], atol=1e-4), (li, j, i)
    # the intervention must do something: a random vector changes every patched output
    assert ((patched[:, 1] - clean[None]).abs().amax(-1) > 1e-3).all()


def test_patch_sweep_bad_input(vlm, feats):
    with pytest.raises(ValueError, match="vectors must be"):
        tv.patch_sweep(vlm, _queries(), feats, torch.zeros(2, 3), [0, 1])
    with pytest.raises(ValueError, match="out of range"):
        tv.patch_sweep(vlm, _queries(), feats, torch.zeros(1, vlm.lm.d_model), [99])
    with pytest.raises(ValueError, match="mode"):
        tv.patch_sweep(vlm, _queries(), feats, torch.zeros(1, vlm.lm.d_model), [0], mode="swap")


def test_scoring_reads_the_full_vocabulary(tiny_llama):
    vlm = make_vlm(tiny_llama)
    w = vlm.lm.hf.lm_head.weight
    targets = torch.tensor([5, 17, 300])
    resid = w[targets] * 50  # each row points at its own token
    assert torch.equal(tv.top_tokens(vlm, resid), targets)
    sc = tv.score(vlm, resid, [[5], [1, 17], [2]], candidate_ids=[5, 17, 2, 1])
    assert sc["em"].tolist() == [True, True, False]
    assert sc["set"][:2].tolist() == [True, True]
    with pytest.raises(ValueError, match="queries"):
        tv.correct(torch.tensor([1, 2]), [[1]])


# -------------------------------------------------------- function vectors
def test_head_contributions_sum_to_attention_output(vlm, feats):
    (b, f), = tv.batches(vlm, [tv.icl_prompt(DEMOS, "sparrow")], feats, 1)
    acts = {}

    def save(k):
        def hook(t, hook):
            acts[k] = t.detach()
        return hook

    vlm.lm(vlm.embed(b, f), b.attention_mask, fwd_hooks=[("blocks.1.attn.hook_z", save("z")),
                                                         ("blocks.1.hook_attn_out", save("out"))])
    contrib = fv.head_contributions(vlm, 1, acts["z"][0])
    assert contrib.shape == (b.shape[1],) + fv.head_shape(vlm)[:1] + (vlm.lm.d_model,)
    assert torch.allclose(contrib.sum(1), acts["out"][0], atol=1e-5)


def test_mean_head_outputs_same_on_both_routes(vlm, feats):
    prompts = [tv.icl_prompt(DEMOS, q) for q in QUERIES]
    z1, o1 = fv.mean_head_outputs(vlm, prompts, feats, batch_size=3, route="tl")
    z2, o2 = fv.mean_head_outputs(vlm, prompts, feats, batch_size=3, route="nnsight")
    assert z1.shape == (vlm.lm.n_layers,) + fv.head_shape(vlm)
    assert torch.allclose(z1, z2, atol=1e-6) and torch.allclose(o1, o2, atol=1e-5)
    assert o1.abs().sum() > 0


def test_function_vector_added_same_on_both_routes_and_changes_output(vlm, feats):
    prompts = [tv.icl_prompt(DEMOS, q) for q in QUERIES]
    _, mean_out = fv.mean_head_outputs(vlm, prompts, feats)
    vec = fv.function_vector(mean_out, [(0, 1), (2, 3), (1, 0)]) * 20
    layer = fv.default_layer(vlm.lm.n_layers)
    # a start_at_layer run in between must not break nnsight's wrappers of the blocks
    vlm.lm(torch.randn(1, 3, vlm.lm.d_model), torch.ones(1, 3, dtype=torch.long), start_at_layer=2)
    a = fv.run_with_vector(vlm, _queries(), feats, vec, layer, route="tl")
    b = fv.run_with_vector(vlm, _queries(), feats, vec, layer, route="nnsight")
    clean = tv.run_last(vlm, _queries(), feats)
    assert torch.allclose(a, b, atol=1e-5)
    assert ((a - clean).abs().amax(-1) > 1e-3).all(), "adding the function vector changed nothing"
    fast, _ = tv.patch_sweep(vlm, _queries(), feats, vec[None], [layer], mode="add")
    assert torch.allclose(fast[0, 0], a, atol=1e-4)


def test_indirect_effect_matches_a_one_head_reference(vlm, feats):
    prompts = [tv.icl_prompt([("robin", "mammal"), ("cow", "bird")], q) for q in ("sparrow", "dog", "eel")]
    answers = [11, 12, 13]
    mean_z = torch.randn(vlm.lm.n_layers, *fv.head_shape(vlm), generator=torch.Generator().manual_seed(0)) * 3
    aie, base = fv.head_indirect_effects(vlm, prompts, None, answers, mean_z, batch_size=5)
    assert aie.shape == (vlm.lm.n_layers, fv.head_shape(vlm)[0])
    w = vlm.lm.hf.lm_head.weight
    for l, h in [(0, 0), (vlm.lm.n_layers - 1, 2)]:
        gains = []
        for p, a in zip(prompts, answers):
            (b, f), = tv.batches(vlm, [p], None, 1)
            last = int(b.attention_mask.sum() - 1)

            def patch(t, hook):
                t = t.clone()
                t[0, last, h] = mean_z[l, h]
                return t

            base_out = vlm.lm(vlm.embed(b, f), b.attention_mask)[0, last]
            out = vlm.lm(vlm.embed(b, f), b.attention_mask, fwd_hooks=[(f"blocks.{l}.attn.hook_z", patch)])[0, last]
            assert (out - base_out).abs().max() > 1e-4, "patching a head's z changed nothing"
            p_new, p_old = (torch.softmax(o @ w.T, -1)[a] for o in (out, base_out))
            gains.append(float(p_new - p_old))
        ref = sum(gains) / len(gains)
        assert ref != 0 and abs(aie[l, h].item() - ref) <= 1e-3 * abs(ref), (aie[l, h].item(), ref)
    assert (aie != 0).all(), "a head's patch changed no probability (the intervention did nothing)"
    heads = fv.top_heads(aie, 3)
    assert len(set(heads)) == 3 and aie[heads[0]] == aie.max()
    with pytest.raises(ValueError, match="k="):
        fv.top_heads(aie, 0)


# ---------------------------------------------------------------- task data
def test_task_files_load_with_disjoint_splits():
    from interp.data.tasks import available_tasks, load_task

    names = available_tasks()
    assert {"hypernym", "animal_young", "food_colour", "object_material", "country_capital", "antonym"} <= set(names)
    for name in names:
        t = load_task(name)
        c = t.counts()
        assert c["val"] <= 30 and c["test"] <= 100 and c["train"] >= 10, (name, c)
        assert len({it.input for it in t.items}) == len(t.items), f"{name}: duplicate inputs"
        assert t.sources and t.instruction
        if t.image:
            assert all(it.concept for it in t.items)
    with pytest.raises(FileNotFoundError, match="available tasks"):
        load_task("no_such_task")


def test_task_files_match_a_fresh_build():
    from interp.data.images import embedded_image_root
    from interp.data.wordnet import wordnet_dir

    if not (wordnet_dir() / "data.noun").exists() or not (embedded_image_root() / "manifest.json").exists():
        pytest.skip("WordNet or the embedded image set is missing")
    from interp.data.tasks.build import main

    assert main(["--check"]) == 0


def test_image_task_concepts_are_embedded_leaves():
    from interp.data.images import embedded_image_root, embedded_taxonomy
    from interp.data.tasks import available_tasks, load_task

    if not (embedded_image_root() / "manifest.json").exists():
        pytest.skip("embedded image set not built")
    leaves = set(embedded_taxonomy().leaves)
    for name in available_tasks():
        t = load_task(name)
        if t.image:
            assert {it.concept for it in t.items} <= leaves, name
    hyp = load_task("hypernym")
    tax = embedded_taxonomy()
    assert all(set(it.answers) == set(tax.hypernyms_of(it.concept)) for it in hyp.items)


# ------------------------------------------------------------------- config
def test_config_errors_name_the_valid_values(tmp_path):
    from interp.studies.task_vectors import MethodConfig, load_config

    p = tmp_path / "c.toml"
    p.write_text('name = "x"\n[method]\nbogus = 1\n')
    with pytest.raises(ValueError, match="valid keys"):
        load_config(p)
    with pytest.raises(ValueError, match="valid sources"):
        MethodConfig(sources=("text_examples", "telepathy"))
    cfg = load_config(Path(__file__).resolve().parents[1] / "experiments" / "task_vectors_quick.toml",
                      {"method.n_prompts": 3, "data.tasks": ["antonym"]})
    assert cfg.method.n_prompts == 3 and cfg.data.tasks == ("antonym",)


# --------------------------------------------------------------- end to end
def _tiny_tasks(folder: Path) -> None:
    words = ["red", "blue", "green", "black", "white", "pink", "grey", "brown", "gold", "teal", "cyan", "lime"]
    items = [{"input": w, "answers": [w[::-1]], "split": s}
             for w, s in zip(words, ["train"] * 6 + ["val"] * 3 + ["test"] * 3)]
    (folder / "reverse.json").write_text(json.dumps({"name": "reverse", "description": "word -> reversed", "image": False,
                                                     "instruction": "Reverse each word.", "sources": "test data",
                                                     "items": items}))


@pytest.mark.integration
def test_study_end_to_end_resumes(tmp_path, tiny_llama):
    from interp.studies.task_vectors import CSV_FILES, load_config, read_tables, run_study

    ckpt = tmp_path / "projector.safetensors"
    make_vlm(tiny_llama, n_tokens=16, d_img=32, pool_to=1).projector.save(ckpt)
    _tiny_tasks(tmp_path)
    cfg = load_config(Path(__file__).resolve().parents[1] / "experiments" / "task_vectors_quick.toml", {
        "model.checkpoint": str(ckpt), "data.tasks": ["reverse"], "data.task_dir": str(tmp_path),
        "method.n_prompts": 2, "method.n_examples": 2, "fv.n_prompts": 2, "fv.n_shuffled": 2, "fv.n_examples": 2,
        "fv.top_k": 2, "curve.n_examples": [1, 2], "curve.seeds": [0, 1], "out_dir": str(tmp_path / "out")})
    summary = run_study(cfg, progress=False, figures="html")  # PNG export (Chromium) costs ~7 s a figure
    out = tmp_path / "out"
    for name in list(CSV_FILES.values()) + ["report.md", "summary.json", "tasks/reverse.json", "tasks/reverse.safetensors"]:
        assert (out / name).exists(), name
    tables = read_tables(out)
    methods = {r["method"] for r in tables["test"]}
    assert {"no_context", "prompting_text", "text_examples", "instruction", "instruction+examples", "random",
            "fv_third", "fv_val", "constant"} <= methods
    # the chance line: the largest share of test items one first token answers
    from collections import Counter

    tok = make_vlm(tiny_llama).tokenizer
    test_items = [it for it in __import__("interp.data.tasks", fromlist=["load_task"]).load_task(
        "reverse", tmp_path).split("test")]
    firsts = Counter(tv.answer_token_ids(tok, it.answers)[0] for it in test_items)
    const = next(r for r in tables["test"] if r["method"] == "constant")
    assert const["em"] == pytest.approx(max(firsts.values()) / len(test_items))
    assert not any(r["target"] == "image" for r in tables["test"])  # a text-only task
    assert len(tables["sweep"]) > 0 and len(tables["heads"]) == tiny_llama.n_layers * 4
    assert {r["n_examples"] for r in tables["curve"]} == {1, 2}
    assert "| method |" in summary["table"] and "patch: text examples" in summary["table"]
    assert list((out / "figures").glob("*.html"))
    before = (out / "tasks" / "reverse.json").stat().st_mtime_ns
    run_study(cfg, progress=False, figures="none")  # finished task: skipped
    assert (out / "tasks" / "reverse.json").stat().st_mtime_ns == before
    assert "projector: trained projector" in (out / "report.md").read_text()
    # figures/task_vectors.py redraws from the tidy tables alone
    import runpy

    redraw = runpy.run_path(str(Path(__file__).resolve().parents[1] / "figures" / "task_vectors.py"))["main"]
    files = redraw([str(out), "--out", str(tmp_path / "redrawn"), "--html-only"])
    assert {f.name for f in files} == {f.name for f in (out / "figures").glob("*.html")}
    assert (tmp_path / "redrawn" / "results.csv").read_text() == (out / "results.csv").read_text()


@pytest.mark.integration
def test_projector_fallbacks(tmp_path, tiny_llama):
    """A missing checkpoint is an error unless a fallback is asked for; ``partial`` loads the
    projector weights of an unfinished ``checkpoint.pt``, ``fresh`` an untrained projector."""
    from interp.studies.task_vectors import ModelConfig, load_study_vlm, resolve_projector

    missing = tmp_path / "run" / "projector.safetensors"
    missing.parent.mkdir()
    kw = dict(checkpoint=str(missing), lm="tiny-llama", encoder="tiny-encoder", pool_to=1)
    with pytest.raises(FileNotFoundError, match="fallback"):
        resolve_projector(ModelConfig(**kw))
    with pytest.raises(FileNotFoundError, match="fallback"):  # no checkpoint.pt next to it either
        resolve_projector(ModelConfig(**kw, fallback="partial"))
    with pytest.raises(ValueError, match="valid are"):
        ModelConfig(fallback="maybe")
    trained = make_vlm(tiny_llama, n_tokens=16, d_img=32, pool_to=1, seed=3).projector
    torch.save({"projector": trained.state_dict(), "step": 7}, missing.parent / "checkpoint.pt")
    info = resolve_projector(ModelConfig(**kw, fallback="partial"))
    assert info["kind"] == "partial" and info["step"] == 7 and "UNFINISHED" in info["description"]
    vlm = load_study_vlm(ModelConfig(**kw, fallback="partial"), info)
    for k, v in trained.state_dict().items():
        assert torch.equal(vlm.projector.state_dict()[k], v), k
    fresh = load_study_vlm(ModelConfig(**kw, fallback="fresh"))
    assert resolve_projector(ModelConfig(**kw, fallback="fresh"))["kind"] == "fresh"
    assert not torch.equal(fresh.projector.net[0].weight, trained.net[0].weight)


# ------------------------------------------------------- integration (gemma)
@pytest.mark.integration
def test_gemma_capital_task_vector_beats_no_context_and_random(gemma):
    """On the embedded LM, a text task vector patched into zero-shot queries ("Kenya :") at its
    best layer names more capitals than the queries alone and than a random vector of the same
    norm (Hendel et al.'s effect, measured, not assumed). The brief's other example tasks are
    run by the study; gemma-3-270m does country -> capital well in context, antonyms poorly."""
    import random

    from interp.data.tasks import load_task

    vlm = make_vlm(gemma, n_tokens=16, d_img=32, pool_to=1)
    task = load_task("country_capital")
    train, val = task.split("train"), task.split("val")[:16]
    rng = random.Random(0)
    specs = []
    for _ in range(8):
        d = rng.sample(train, 6)
        specs.append(tv.icl_prompt([(x.input, x.answer) for x in d[:5]], d[5].input))
    layers = list(range(4, 14))
    vec = tv.task_vector(vlm, specs, layers=layers)
    vecs = torch.stack([vec, tv.random_like(vec, seed=0)], 1)
    patched, clean = tv.patch_sweep(vlm, [tv.icl_prompt([], it.input) for it in val], None, vecs, layers)
    accepted = [tv.answer_token_ids(vlm.tokenizer, it.answers) for it in val]
    em = tv.score(vlm, patched, accepted)["em"].float().mean(-1)  # [layers, 2]
    base = tv.score(vlm, clean, accepted)["em"].float().mean()
    best = int(em[:, 0].argmax())
    assert em[best, 0] >= base + 0.3, (em[:, 0].tolist(), float(base))
    assert em[best, 0] >= em[best, 1] + 0.3, (em.tolist(), float(base))
