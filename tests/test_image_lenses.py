"""Image-token readouts on tiny random LMs: nearest input embeddings, Patchscope, the summary
rows and their figures."""

import pytest
import torch

from conftest import make_vlm
from interp.analysis.image_lens_figures import build_figures, first_naming_figure, rank_heatmap_figure
from interp.analysis.image_lenses import (
    IDENTITY_PROMPT,
    TargetReadout,
    concept_readout,
    first_naming_rows,
    nearest_embeddings,
    patched_logits,
    patchscope,
    patchscope_prompt,
    readout_rows,
)
from interp.analysis.lens import logit_lens
from interp.sequence import vlm_item


@pytest.fixture(params=["tiny_llama", "tiny_gemma"])
def lm(request):
    return request.getfixturevalue(request.param)


def image_states(vlm, n_images: int = 2, seed: int = 0) -> torch.Tensor:
    """``[layers, n_images * tokens, d_model]`` resid_post at the image positions of a VLM run."""
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(n_images, 16, 32, generator=g)
    batch = vlm.build([vlm_item(i, "What is this?") for i in range(n_images)])
    _, cache = vlm.run_with_cache(batch, feats, logits_at=None)
    return cache.stack()[:, batch.mask("image")]


# ------------------------------------------------------ nearest neighbours
def test_an_embedding_row_is_its_own_nearest_neighbour(lm):
    ids = torch.tensor([5, 321, 4000, 49000])
    on_scale = lm.embed_tokens(ids)  # residual scale: x embed_scale (8 on tiny gemma)
    states = torch.stack([on_scale, 3.7 * on_scale])  # [2 layers, 4, d_model]; cosine is scale-free
    out = nearest_embeddings(lm, states, top_k=3, targets=ids.tolist())
    assert torch.equal(out["top_ids"][..., 0], ids.expand(2, -1))
    torch.testing.assert_close(out["top_sims"][..., 0], torch.ones(2, 4))
    assert torch.equal(out["ranks"].diagonal(dim1=1, dim2=2), torch.zeros(2, 4, dtype=torch.long))
    torch.testing.assert_close(out["sims"].diagonal(dim1=1, dim2=2), torch.ones(2, 4))
    assert (out["ranks"].sum(-1) > 0).all()  # the other targets are not at rank 0


def test_nearest_neighbours_match_brute_force_cosine(tiny_llama):
    lm = tiny_llama
    states = torch.randn(2, 3, lm.d_model, generator=torch.Generator().manual_seed(1))
    out = nearest_embeddings(lm, states, top_k=4, targets=[7, 9000])
    emb = lm.hf.get_input_embeddings().weight.detach()
    cos = torch.nn.functional.cosine_similarity(states.unsqueeze(2), emb[None, None], dim=-1)  # [2, 3, vocab]
    assert torch.equal(out["top_ids"], cos.topk(4, -1).indices)
    torch.testing.assert_close(out["sims"], cos[..., [7, 9000]])
    assert torch.equal(out["ranks"][..., 1], (cos > cos[..., 9000:9001]).sum(-1))


def test_chunking_gives_the_same_nearest_neighbours(tiny_gemma):
    states = torch.randn(3, 5, tiny_gemma.d_model, generator=torch.Generator().manual_seed(2))
    whole = nearest_embeddings(tiny_gemma, states, top_k=5, targets=[1, 2, 3], chunk=1000)
    for chunk in (1, 4):
        part = nearest_embeddings(tiny_gemma, states, top_k=5, targets=[1, 2, 3], chunk=chunk)
        assert torch.equal(part["top_ids"], whole["top_ids"]) and torch.equal(part["ranks"], whole["ranks"])
        torch.testing.assert_close(part["top_sims"], whole["top_sims"])
        torch.testing.assert_close(part["sims"], whole["sims"])


# --------------------------------------------------------------- Patchscope
def test_the_prompt_splits_at_the_placeholder_as_the_whole_prompt_tokenizes(tiny_llama):
    tok = tiny_llama.tokenizer
    p = patchscope_prompt(tok)
    assert list(p.ids) == tok(IDENTITY_PROMPT, add_special_tokens=False)["input_ids"]
    assert tok.decode(p.ids[p.at - 1]).strip() == "?"
    q = patchscope_prompt(tok, "a ? b ? ->")  # the last occurrence is the placeholder
    assert tok.decode(q.ids[q.at:]).strip() == "->" and tok.decode(q.ids[:q.at - 1]).strip() == "a ? b"


@pytest.mark.parametrize("point", ["hook_resid_post", "hook_resid_pre"])
def test_a_no_op_patch_is_a_no_op(lm, point):
    vlm = make_vlm(lm)
    prompt = patchscope_prompt(vlm.tokenizer)
    names = [f"blocks.{l}.{point}" for l in range(lm.n_layers)]
    out, cache = vlm.run_with_cache(vlm.build([prompt.segments()]), names=names, logits_at="last")
    own = torch.stack([cache[n][0, prompt.at] for n in names])  # [layers, d_model] at the placeholder
    patched = patched_logits(vlm, prompt, own, names)
    torch.testing.assert_close(patched, out.logits.expand(lm.n_layers, -1), atol=1e-4, rtol=1e-4)
    res = patchscope(vlm, own.unsqueeze(1), source_hooks=names, top_k=3, targets=[11, 500])
    logp = out.logits[0].float().log_softmax(-1)
    assert torch.equal(res["top_ids"][:, 0], logp.topk(3).indices.expand(lm.n_layers, -1))
    torch.testing.assert_close(res["logprobs"][:, 0], logp[[11, 500]].expand(lm.n_layers, -1), atol=1e-4, rtol=1e-4)


def test_patching_another_state_changes_the_output_unless_no_block_follows(lm):
    vlm = make_vlm(lm)
    prompt = patchscope_prompt(vlm.tokenizer)
    out = vlm.run_with_hooks(vlm.build([prompt.segments()]), fwd_hooks=[], logits_at="last")
    states = image_states(vlm)[:, :1]  # [layers, 1, d_model]: the first image token
    patched = patched_logits(vlm, prompt, states[:, 0], [f"blocks.{l}.hook_resid_post" for l in range(lm.n_layers)])
    change = (patched - out.logits).abs().amax(-1)
    assert (change[:-1] > 1e-3).all()
    assert change[-1] < 1e-5  # the last block's resid_post at "?" reaches no later position


def test_patchscope_equals_a_plain_hooked_run_of_the_whole_prompt(tiny_gemma):
    vlm = make_vlm(tiny_gemma)
    prompt = patchscope_prompt(vlm.tokenizer, "x -> x; ? ->")
    state = image_states(vlm)[2, 3]
    name = "blocks.1.hook_resid_post"  # a layer-2 state read at layer 1 (target layer != source layer)

    def write(t, hook):
        t = t.clone()
        t[0, prompt.at] = state
        return t

    ref = vlm.run_with_hooks(vlm.build([prompt.segments()]), fwd_hooks=[(name, write)], logits_at="last").logits
    res = patchscope(vlm, state[None, None], source_hooks=["blocks.2.hook_resid_post"], target_layers=[1],
                     prompt=prompt, top_k=4, targets=[3])
    logp = ref[0].float().log_softmax(-1)
    assert torch.equal(res["top_ids"][0, 0], logp.topk(4).indices)
    torch.testing.assert_close(res["top_logprobs"][0, 0], logp.topk(4).values, atol=1e-4, rtol=1e-4)
    assert int(res["ranks"][0, 0, 0]) == int((logp > logp[3]).sum())


def test_batching_gives_the_same_numbers_as_one_at_a_time(lm):
    vlm = make_vlm(lm)
    states = image_states(vlm)[:, :3]  # [layers, 3, d_model]
    kw = dict(top_k=5, targets=[4, 40, 400], target_layers=[1, 0, 3, 2])
    one = patchscope(vlm, states, batch_size=1, **kw)
    many = patchscope(vlm, states, batch_size=5, **kw)  # batches mix layers and target hooks
    assert one["top_ids"].shape == (lm.n_layers, 3, 5) and one["ranks"].shape == (lm.n_layers, 3, 3)
    assert torch.equal(one["top_ids"], many["top_ids"])
    # a rank may move by a near-tie among the 50k logits (float sums differ with the batch size)
    moved = one["ranks"] != many["ranks"]
    assert float(moved.float().mean()) <= 0.05 and int((one["ranks"] - many["ranks"]).abs().max()) <= 2
    torch.testing.assert_close(one["top_logprobs"], many["top_logprobs"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(one["logprobs"], many["logprobs"], atol=1e-5, rtol=1e-5)
    assert not torch.equal(one["top_logprobs"][0], one["top_logprobs"][1])


# ------------------------------------------------------------------ summary
def table(ranks_by_layer: list[tuple[int, int]], concept="robin", readout="nearest") -> TargetReadout:
    """A TargetReadout with one position: ``[(concept rank, hypernym rank)]`` per layer."""
    ranks = torch.tensor(ranks_by_layer).unsqueeze(1)
    return TargetReadout(concept, readout, ranks, -ranks.float())


def test_first_naming_layer_on_a_constructed_table():
    rows = readout_rows([
        table([(100, 50), (9, 40), (2, 7), (6, 3)]),
        table([(0, 900), (0, 800)], readout="patchscope"),
        TargetReadout("cow", "nearest", torch.tensor([[[30, 6], [4, 90]], [[1, 2], [50, 60]]]), torch.zeros(2, 2, 2),
                      layers=(3, 7)),
    ])
    assert len(rows) == 4 * 2 + 2 * 2 + 2 * 2
    assert rows[2] == {"concept": "robin", "readout": "nearest", "layer": 1, "target": "concept", "rank": 9,
                       "score": -9.0}
    cow = [(r["layer"], r["target"], r["rank"]) for r in rows if r["concept"] == "cow"]
    assert cow == [(3, "concept", 4), (3, "hypernym", 6), (7, "concept", 1), (7, "hypernym", 2)]  # best position
    first = {(r["concept"], r["readout"], r["target"]): r["first_layer"] for r in first_naming_rows(rows, top_k=5)}
    assert first == {("robin", "nearest", "concept"): 2, ("robin", "nearest", "hypernym"): 3,
                     ("robin", "patchscope", "concept"): 0, ("robin", "patchscope", "hypernym"): None,
                     ("cow", "nearest", "concept"): 3, ("cow", "nearest", "hypernym"): 7}
    wider = {(r["concept"], r["readout"], r["target"]): r["first_layer"] for r in first_naming_rows(rows, top_k=10)}
    assert wider[("robin", "nearest", "concept")] == 1 and wider[("cow", "nearest", "hypernym")] == 3


def test_summary_of_the_three_readouts_on_a_tiny_vlm(tiny_llama):
    vlm = make_vlm(tiny_llama, pool_to=2)
    states = image_states(vlm, n_images=2)  # [layers, 2 images x 2 tokens, d_model]
    targets = [17, 230, 2300]  # robin's word, cow's word, their shared hypernym's word
    results = {"logit_lens": logit_lens(vlm.lm, states, targets=targets),
               "nearest": nearest_embeddings(vlm.lm, states, targets=targets),
               "patchscope": patchscope(vlm, states, targets=targets)}
    readouts = [concept_readout(c, name, res, targets=targets, concept_id=cid, hypernym_id=2300, positions=pos)
                for c, cid, pos in (("robin", 17, [0, 1]), ("cow", 230, [2, 3])) for name, res in results.items()]
    rows = readout_rows(readouts)
    assert len(rows) == 2 * 3 * tiny_llama.n_layers * 2
    lens_cow = [r for r in rows if r["concept"] == "cow" and r["readout"] == "logit_lens" and r["target"] == "hypernym"]
    assert [r["rank"] for r in lens_cow] == results["logit_lens"]["ranks"][:, 2:4, 2].min(1).values.tolist()
    near = [r for r in rows if r["concept"] == "robin" and r["readout"] == "nearest" and r["target"] == "concept"]
    best = results["nearest"]["ranks"][:, 0:2, 0].min(1)
    assert [r["score"] for r in near] == pytest.approx(
        results["nearest"]["sims"][:, 0:2, 0].gather(1, best.indices[:, None])[:, 0].tolist())
    first = first_naming_rows(rows, top_k=tiny_llama.vocab_size)  # everything is in the top-vocab
    assert len(first) == 12 and all(r["first_layer"] == 0 for r in first)


def test_figures_show_the_rows():
    rows = readout_rows([table([(100, 50), (9, 40), (2, 7)]), table([(0, 900), (0, 800), (3, 1)], readout="patchscope"),
                         table([(5, 5), (1, 1), (0, 0)], concept="cow")])
    first = first_naming_rows(rows, top_k=5)
    fig = first_naming_figure(first, n_layers=3)
    by_kind = {t.name: t for t in fig.data}
    assert set(by_kind) == {"concept", "hypernym"}
    assert list(by_kind["hypernym"].y) == [3, 2, 1] and list(by_kind["hypernym"].text) == ["robin", "robin", "cow"]
    assert fig.layout.yaxis.ticktext[-1] == "never"
    heat = rank_heatmap_figure(rows, "robin").data[0]
    assert list(heat.y) == ["nearest · concept", "nearest · hypernym",
                            "patchscope · concept", "patchscope · hypernym"]
    assert list(heat.text[3]) == ["900", "800", "1"] and heat.z[0][2] == pytest.approx(0.47712, abs=1e-4)
    assert set(build_figures(rows, first)) == {"first_naming", "ranks_robin", "ranks_cow"}


# --------------------------------------------------------------- bad inputs
def test_bad_inputs_raise_naming_the_value_and_the_range(tiny_llama):
    lm, vlm = tiny_llama, make_vlm(tiny_llama)
    states = torch.randn(2, 3, lm.d_model)
    with pytest.raises(ValueError, match=r"top_k=0 is out of range: valid values are 1\.\.49152"):
        nearest_embeddings(lm, states, top_k=0)
    with pytest.raises(ValueError, match=r"target token ids \[49152\] are out of range: valid ids are 0\.\.49151"):
        nearest_embeddings(lm, states, targets=[3, 49152])
    with pytest.raises(ValueError, match=r"chunk=0"):
        nearest_embeddings(lm, states, chunk=0)
    with pytest.raises(ValueError, match=r"expected \[layers, n, d_model\] with d_model=64"):
        nearest_embeddings(lm, states[0])
    with pytest.raises(ValueError, match=r"layer 9 is out of range for tiny-llama\S*: valid layers are 0\.\.3"):
        patchscope(vlm, states, target_layers=[0, 9])
    with pytest.raises(ValueError, match=r"layer 4 is out of range .* valid layers are 0\.\.3"):
        patchscope(vlm, states, source_hooks=["blocks.0.hook_resid_post", "blocks.4.hook_resid_post"])
    with pytest.raises(ValueError, match=r"unknown hook 'blocks\.1\.hook_nope' .* per-block hooks are"):
        patchscope(vlm, states, source_hooks=["blocks.0.hook_resid_pre", "blocks.1.hook_nope"])
    with pytest.raises(ValueError, match="1 source hooks for 2 layers"):
        patchscope(vlm, states, source_hooks=["blocks.0.hook_resid_pre"])
    with pytest.raises(ValueError, match="top_k=0 is out of range"):
        patchscope(vlm, states, top_k=0)
    with pytest.raises(ValueError, match="batch_size=0"):
        patchscope(vlm, states, batch_size=0)
    with pytest.raises(ValueError, match=r"hook 'blocks\.0\.attn\.hook_pattern' carries a tensor of shape"):
        patchscope(vlm, states[:1], source_hooks=["blocks.0.attn.hook_pattern"])
    with pytest.raises(ValueError, match="placeholder '<X>' does not occur"):
        patchscope_prompt(vlm.tokenizer, "cat -> cat; ? ->", "<X>")
    with pytest.raises(ValueError, match="top_k=0"):
        first_naming_rows([], top_k=0)
    res = nearest_embeddings(lm, states, targets=[1, 2])
    with pytest.raises(ValueError, match=r"token ids \[3\] of 'robin' are not among the readout's targets \[1, 2\]"):
        concept_readout("robin", "nearest", res, targets=[1, 2], concept_id=3, hypernym_id=2)
    with pytest.raises(ValueError, match=r"positions \[3\] of 'robin': give at least one, each in 0\.\.2"):
        concept_readout("robin", "nearest", res, targets=[1, 2], concept_id=1, hypernym_id=2, positions=[3])
    with pytest.raises(ValueError, match=r"must both be \[layers, n, 2\]"):
        TargetReadout("robin", "nearest", torch.zeros(3, 2), torch.zeros(3, 2))
