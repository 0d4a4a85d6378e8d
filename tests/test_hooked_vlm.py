"""HookedLM and HookedVLM on tiny random LMs (both architectures): hooks, caches, routes, gradients."""

import pytest
import torch

from conftest import make_vlm
from interp.projector import CheckpointMismatchError
from interp.sequence import Modality, vlm_item


def _batch(vlm):
    return vlm.build([
        vlm_item(0, "Is there a bird in the image?", " Yes"),
        vlm_item(1, "Is there a dog in the image?", " No"),
        vlm_item(None, "A robin is a kind of"),
    ])


@pytest.fixture(params=["tiny_llama", "tiny_gemma"])
def lm(request):
    return request.getfixturevalue(request.param)


def test_full_logits_match_hf(lm):
    tok = lm.tokenizer
    enc = tok(["hello there friend", "a b"], return_tensors="pt", padding=True, padding_side="right")
    ref = lm.hf(enc.input_ids, attention_mask=enc.attention_mask).logits
    ours = lm.unembed(lm(lm.embed_tokens(enc.input_ids), enc.attention_mask))
    m = enc.attention_mask.bool()
    assert torch.allclose(ours[m], ref[m], atol=1e-5)


def test_start_and_stop_at_layer_compose(lm):
    x = lm.embed_tokens(torch.tensor([[1, 5, 9, 13, 2]]))
    full = lm(x)
    for k in range(lm.n_layers):
        mid = lm(x, stop_at_layer=k)
        assert torch.allclose(lm(mid, start_at_layer=k), full, atol=1e-5)


def test_start_at_layer_skips_earlier_blocks(lm):
    fired = []
    x = lm.embed_tokens(torch.tensor([[1, 5, 9]]))
    hooks = [(f"blocks.{i}.hook_resid_post", lambda t, hook, i=i: fired.append(i)) for i in range(lm.n_layers)]
    lm(x, start_at_layer=2, fwd_hooks=hooks)
    assert fired == list(range(2, lm.n_layers))
    lm(x, fwd_hooks=hooks[:1])  # the skip is undone afterwards
    assert fired[-1] == 0


def test_bad_layer_and_hook_names(lm):
    with pytest.raises(ValueError, match=rf"valid layers are 0..{lm.n_layers - 1}"):
        lm.check_hook(f"blocks.{lm.n_layers}.hook_resid_post")
    with pytest.raises(ValueError, match="unknown hook 'blocks.0.hook_nope'"):
        lm.check_hook("blocks.0.hook_nope")
    with pytest.raises(ValueError, match="out of range"):
        lm(torch.zeros(1, 3, lm.d_model), start_at_layer=lm.n_layers + 3)


def test_cache_only_what_is_asked_and_modality_slices(lm):
    vlm = make_vlm(lm, pool_to=4)
    b = _batch(vlm)
    out, cache = vlm.run_with_cache(b, torch.randn(2, 16, 32), names=["blocks.1.hook_resid_post", "hook_embed"])
    assert set(cache) == {"blocks.1.hook_resid_post", "hook_embed"}
    assert cache.at("hook_embed", "image").shape == (8, lm.d_model)  # 2 images x 4 pooled tokens
    assert cache.last("blocks.1.hook_resid_post").shape == (3, lm.d_model)
    assert out.logits.shape == (3, lm.vocab_size)  # only the last text token of each row
    # image tokens in hook_embed are the projector output on the LM's embedding scale
    proj = vlm.projector(torch.randn(2, 16, 32))
    assert cache.at("hook_embed", Modality.IMAGE).shape[-1] == proj.shape[-1]


def test_patch_at_layer_changes_nothing_before(lm):
    vlm = make_vlm(lm)
    b = _batch(vlm)
    feats = torch.randn(2, 16, 32)
    _, clean = vlm.run_with_cache(b, feats)
    layer = 2
    img = b.mask("image")

    def perturb(t, hook):
        return t + 5.0 * img.unsqueeze(-1)

    _, patched = vlm.run_with_cache(b, feats, fwd_hooks=[(f"blocks.{layer}.hook_resid_post", perturb)])
    for i in range(lm.n_layers):
        name = f"blocks.{i}.hook_resid_post"
        same = torch.equal(clean[name], patched[name])
        assert same == (i < layer), (i, same)


def test_gradients_reach_projector_only(lm):
    vlm = make_vlm(lm)
    b = _batch(vlm)
    loss = vlm.answer_loss(b, torch.randn(2, 16, 32))
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in vlm.projector.parameters())
    assert not lm.parameters_require_grad()
    assert all(p.grad is None for p in lm.hf.parameters())


def test_answer_loss_uses_answer_positions_only(lm):
    vlm = make_vlm(lm)
    b = _batch(vlm)
    feats = torch.randn(2, 16, 32)
    out = vlm(b, feats, logits_at="all")
    predicts, targets = b.answer_targets()
    full = torch.nn.functional.cross_entropy(vlm.lm.unembed(out.resid[predicts]), targets)
    assert torch.allclose(vlm.answer_loss(b, feats), full, atol=1e-5)


def test_token_logits_equal_full_logits(lm):
    vlm = make_vlm(lm)
    b = _batch(vlm)
    feats = torch.randn(2, 16, 32)
    ids = torch.tensor([5, 17, 99])
    full = vlm(b, feats, logits_at="last").logits[:, ids]
    assert torch.allclose(vlm.token_logits(b, feats, ids), full, atol=1e-5)


def test_nnsight_route_matches_transformer_lens(lm):
    vlm = make_vlm(lm)
    b = _batch(vlm)
    feats = torch.randn(2, 16, 32)
    _, cache = vlm.run_with_cache(b, feats)
    nm = vlm.nnsight_model
    inputs = vlm.nnsight_inputs(b, feats)
    saved = []
    with nm.trace(**inputs):
        for i in range(lm.n_layers):
            saved.append(nm.model.layers[i].output.save())
    for i, h in enumerate(saved):
        assert torch.allclose(h, cache[f"blocks.{i}.hook_resid_post"], atol=1e-5), i


def test_nnsight_intervention_changes_output(lm):
    """An edit written as plain Python in the trace must take effect (not silently vanish)."""
    vlm = make_vlm(lm)
    b = _batch(vlm)
    feats = torch.randn(2, 16, 32)
    nm = vlm.nnsight_model
    inputs = vlm.nnsight_inputs(b, feats)
    with nm.trace(**inputs):
        nm.model.layers[0].output[:] = 0
        out = nm.model.norm.output.save()
    clean = vlm(b, feats).resid
    assert out.shape == clean.shape and not torch.allclose(out, clean)


def test_start_at_layer_keeps_nnsight_wrapping(lm):
    """Skipping blocks (start_at_layer) must hand back nnsight's in-place wrapped forwards:
    a later trace still sees every block (it failed with OutOfOrderError when they were lost)."""
    vlm = make_vlm(lm)
    b = _batch(vlm)
    feats = torch.randn(2, 16, 32)
    nm = vlm.nnsight_model
    inputs = vlm.nnsight_inputs(b, feats)
    with nm.trace(**inputs):
        before = nm.model.layers[0].input.save()
    _, cache = vlm.run_with_cache(b, feats, names=["blocks.2.hook_resid_pre"])
    lm.forward(cache["blocks.2.hook_resid_pre"], b.attention_mask, start_at_layer=2)
    with nm.trace(**inputs):
        after = nm.model.layers[0].input.save()
    assert torch.allclose(before, after)


def test_missing_features_and_bad_image_index(lm):
    vlm = make_vlm(lm)
    b = _batch(vlm)
    with pytest.raises(ValueError, match="no image features"):
        vlm(b)
    with pytest.raises(ValueError, match="only 1 images"):
        vlm(b, torch.randn(1, 16, 32))


def test_projector_for_another_lm_is_refused(tiny_llama, tiny_gemma):
    from interp.vlm import HookedVLM

    proj = make_vlm(tiny_llama).projector
    with pytest.raises(CheckpointMismatchError, match="tiny-llama.*tiny-gemma3"):
        HookedVLM(tiny_gemma, proj)


@pytest.mark.integration
def test_random_init_is_seeded():
    from interp.models.lm import load_lm

    a = load_lm("tiny-llama", seed=1).model.lm_head.weight
    b = load_lm("tiny-llama", seed=1).model.lm_head.weight
    c = load_lm("tiny-llama", seed=2).model.lm_head.weight
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.integration
def test_load_vlm_restores_the_seeded_random_control(tmp_path):
    from interp.models.hooked import HookedLM
    from interp.models.lm import load_lm
    from interp.vlm import load_vlm

    lm = HookedLM(load_lm("tiny-llama", random_init=True, seed=7))
    path = tmp_path / "p.safetensors"
    make_vlm(lm).projector.save(path)
    back = load_vlm(path, with_encoder=False)
    assert back.lm.name == lm.name == "tiny-llama+random7"
    assert torch.equal(back.lm.hf.lm_head.weight, lm.hf.lm_head.weight)
    with pytest.raises(CheckpointMismatchError, match="tiny-llama\\+random7.*tiny-gemma3"):
        load_vlm(path, lm="tiny-gemma3", with_encoder=False)


def test_the_static_hook_list_is_what_the_bridge_gives(tiny_llama, tiny_gemma):
    """BLOCK_HOOK_SUFFIXES (checked by CLIs before a model loads) equals the per-block hooks of
    both families under the pinned TransformerLens: no valid hook is refused, none is missing."""
    from interp.models.hooked import BLOCK_HOOK_SUFFIXES

    found = {n.split(".", 2)[2] for lm in (tiny_llama, tiny_gemma) for n in lm.hook_names() if n.startswith("blocks.0.")}
    assert found == set(BLOCK_HOOK_SUFFIXES)


def test_run_with_hooks_starts_stops_and_captures_like_the_full_run(lm):
    from interp.analysis.task_vectors import last_token_index
    from interp.vlm import capture

    vlm = make_vlm(lm)
    batch = _batch(vlm)
    feats = torch.randn(2, 16, 32)
    full, cache = vlm.run_with_cache(batch, feats, names=[f"blocks.{i}.hook_resid_pre" for i in range(lm.n_layers)],
                                     logits_at="all")
    for k in range(lm.n_layers):
        mid = vlm.run_with_hooks(batch, feats, fwd_hooks=[], stop_at_layer=k)
        assert mid.logits is None and torch.allclose(mid.resid, cache[f"blocks.{k}.hook_resid_pre"], atol=1e-5)
        rest = vlm.run_with_hooks(batch, fwd_hooks=[], embeds=mid.resid, start_at_layer=k, logits_at="all")
        assert torch.allclose(rest.resid, full.resid, atol=1e-5) and torch.allclose(rest.logits, full.logits, atol=1e-4)
    with pytest.raises(ValueError, match="start_at_layer needs embeds"):
        vlm.run_with_hooks(batch, feats, fwd_hooks=[], start_at_layer=1)
    got, rows = {}, {}
    last = last_token_index(batch)
    names = [f"blocks.{i}.hook_resid_post" for i in range(lm.n_layers)]
    out = vlm.run_with_hooks(batch, feats, fwd_hooks=capture(got, names) + capture(rows, names, at=last, device="cpu"))
    assert torch.allclose(out.resid, full.resid, atol=1e-6)  # read-only: the run is unchanged
    _, ref = vlm.run_with_cache(batch, feats, names=names)
    for n in names:
        assert torch.equal(got[n], ref[n]) and not got[n].requires_grad
        assert torch.equal(rows[n], ref[n][torch.arange(len(batch)), last])


def test_kv_prefix_and_embeds_route_through_the_vlm(lm):
    """forward_with_kv + forward(past=...) on the VLM equal one full run; batch=None runs embeds."""
    vlm = make_vlm(lm, pool_to=4)
    b = vlm.build([vlm_item(0, "Is there a bird in the image?", " Yes")])  # one row: no padding
    feats = torch.randn(1, 16, 32)
    full = vlm.forward(b, feats, logits_at=None).resid
    x = vlm.embed(b, feats)
    k = 6
    head, kv = vlm.forward_with_kv(None, embeds=x[:, :k])
    tail = vlm.forward(None, embeds=x[:, k:], past=kv, logits_at=None).resid
    assert torch.allclose(torch.cat([head, tail], 1), full, atol=1e-5)
    same, _ = vlm.forward_with_kv(b, feats)
    assert torch.allclose(same, full, atol=1e-5)
    with pytest.raises(ValueError, match="batch=None needs embeds"):
        vlm.forward(None, logits_at=None)
    with pytest.raises(ValueError, match="batch=None needs embeds"):
        vlm.forward(None, embeds=x)  # logits_at="last" needs a batch's token positions
    padded = vlm.build([vlm_item(0, "Is there a bird?", " Yes"), vlm_item(1, "A dog?", " No")])
    _, kv = vlm.forward_with_kv(padded, torch.randn(2, 16, 32))
    with pytest.raises(ValueError, match="padded"):
        vlm.forward(None, embeds=x[:, k:].expand(2, -1, -1), past=kv, logits_at=None)
