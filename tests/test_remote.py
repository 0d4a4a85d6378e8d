"""The nnsight remote route: request building (pure), nnsight's local simulation of a remote
call (serialize, deserialize with local modules hidden, run) equal to the HookedVLM route,
the same analysis API, the NDIF payload built without sending, and clear offline errors."""

from __future__ import annotations

import types

import pytest
import torch

from conftest import make_vlm
from interp.remote import (NDIF_MODELS, Intervention, RemoteUnavailableError, RemoteVLM, build_request, hub_id_for,
                           parse_hook)
from interp.sequence import vlm_item

NAMES = ["blocks.1.hook_resid_pre", "blocks.1.hook_resid_post", "blocks.3.hook_resid_post"]


def _nn_model(lm):
    from nnsight.modeling.transformers import TransformersModel

    return TransformersModel(lm.hf, tokenizer=lm.tokenizer, task="text-generation")


def _inputs(vlm):
    batch = vlm.build([vlm_item(0, "Is there a bird?"), vlm_item(1, "What is in the image here?"),
                       vlm_item(0, "Name it.")])
    return batch, torch.randn(2, 16, 32, generator=torch.Generator().manual_seed(0))


def test_build_request_projects_here_and_orders_steps(tiny_gemma):
    vlm = make_vlm(tiny_gemma, seed=1)
    batch, feats = _inputs(vlm)
    m = batch.mask("text")
    req = build_request(vlm.projector, tiny_gemma.embed_scale, tiny_gemma.n_layers, batch, feats,
                        names=["blocks.3.hook_resid_post", "blocks.1.hook_resid_post", "blocks.1.hook_resid_pre"],
                        interventions=[Intervention("blocks.2.hook_resid_pre", m, torch.zeros(64), "add")])
    assert tiny_gemma.embed_scale == 8.0  # gemma: image rows must carry sqrt(d_model) like text
    expected = vlm.embed(batch, feats)[batch.image_slot >= 0]
    assert torch.allclose(req.image_rows, expected.detach(), atol=1e-6)
    assert [(s[0], s[1], s[2]) for s in req.steps] == [(1, "resid_pre", True), (1, "resid_post", True),
                                                       (2, "resid_pre", False), (3, "resid_post", True)]
    assert req.names == NAMES and req.logits_mask.sum() == 3  # one "last" position per row
    assert torch.equal(req.input_ids, batch.input_ids)
    # the payload's tensors: ids, masks, image rows; no weights
    assert req.nbytes() < 50_000


def test_bad_hooks_and_interventions_are_named(tiny_llama):
    assert parse_hook("blocks.3.hook_resid_post", 4) == (3, "resid_post")
    with pytest.raises(ValueError, match="valid layers are 0..3"):
        parse_hook("blocks.4.hook_resid_post", 4)
    with pytest.raises(ValueError, match="not available remotely"):
        parse_hook("blocks.1.attn.hook_z", 4)
    with pytest.raises(ValueError, match="valid modes"):
        Intervention("blocks.0.hook_resid_post", torch.ones(1, 2, dtype=torch.bool), torch.zeros(64), "scale")
    with pytest.raises(ValueError, match="3 rows for 2 masked positions"):
        Intervention("blocks.0.hook_resid_post", torch.ones(1, 2, dtype=torch.bool), torch.zeros(3, 64))
    vlm = make_vlm(tiny_llama, seed=1)
    batch, _ = _inputs(vlm)
    with pytest.raises(ValueError, match="no image features"):
        build_request(vlm.projector, 1.0, 4, batch, None)
    assert hub_id_for("qwen3-8b") == "Qwen/Qwen3-8B" and hub_id_for("meta-llama/Llama-3.1-70B") == "meta-llama/Llama-3.1-70B"
    with pytest.raises(ValueError, match="no hub id"):
        hub_id_for("tiny-llama")


@pytest.mark.parametrize("which", ["tiny_llama", "tiny_gemma"])
def test_simulated_remote_equals_hooked_vlm(which, request):
    lm = request.getfixturevalue(which)
    vlm = make_vlm(lm, seed=1)
    rv = RemoteVLM(vlm.projector, _nn_model(lm), remote="local")
    batch, feats = _inputs(vlm)
    out, cache = vlm.run_with_cache(batch, feats, names=NAMES, logits_at="last")
    rout, rcache = rv.run_with_cache(batch, feats, names=NAMES, logits_at="last")
    for n in NAMES:
        assert torch.allclose(cache[n], rcache[n], atol=1e-5), n
    assert torch.allclose(out.logits, rout.logits, atol=1e-4)
    assert torch.allclose(cache.last(NAMES[2]), rcache.last(NAMES[2]), atol=1e-5)
    f, rf = vlm.forward(batch, feats, logits_at="all"), rv.forward(batch, feats, logits_at="all")
    assert torch.allclose(f.resid, rf.resid, atol=1e-5) and torch.allclose(f.logits, rf.logits, atol=1e-4)
    ids = torch.tensor([5, 17, 99])
    assert torch.allclose(vlm.token_logits(batch, feats, ids), rv.token_logits(batch, feats, ids), atol=1e-4)

    # interventions as data == the same edits as TransformerLens hooks
    img, last = batch.mask("image"), torch.zeros(batch.shape, dtype=torch.bool)
    last[torch.arange(len(batch)), batch.last("text")] = True
    vals, vec = torch.randn(int(img.sum()), lm.d_model), torch.randn(lm.d_model)

    def set_img(t, hook):
        t = t.clone()
        t[img.to(t.device)] = vals
        return t

    def add_last(t, hook):
        t = t.clone()
        t[last.to(t.device)] += vec
        return t

    _, edited = vlm.run_with_cache(batch, feats, names=[NAMES[2]], logits_at=None,
                                   fwd_hooks=[("blocks.1.hook_resid_post", set_img), ("blocks.2.hook_resid_pre", add_last)])
    _, redited = rv.run_with_cache(batch, feats, names=[NAMES[2]], logits_at=None,
                                   interventions=[Intervention("blocks.1.hook_resid_post", img, vals, "set"),
                                                  Intervention("blocks.2.hook_resid_pre", last, vec, "add")])
    assert not torch.allclose(edited[NAMES[2]], cache[NAMES[2]], atol=1e-3)  # the edits matter
    assert torch.allclose(edited[NAMES[2]], redited[NAMES[2]], atol=1e-5)


def test_analysis_api_runs_unchanged_on_remote_vlm(tiny_llama):
    from interp.analysis.collect import concept_activations

    vlm = make_vlm(tiny_llama, seed=1)
    rv = RemoteVLM(vlm.projector, _nn_model(tiny_llama), remote="local")
    feats = torch.randn(3, 16, 32, generator=torch.Generator().manual_seed(1))
    args = (["robin", "trout", "hammer"], ["a robin", "a trout", "a hammer"], feats)
    here, there = concept_activations(vlm, *args), concept_activations(rv, *args)
    for part in ("text", "image", "last"):
        a, b = getattr(here, part), getattr(there, part)
        assert a.shape == b.shape == (4, 3, 64) and torch.allclose(a, b, atol=1e-5), part


def _fake_hub(monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", lambda self, repo_id, **kw: types.SimpleNamespace(id=repo_id))


def test_ndif_payload_is_built_without_sending(tiny_llama, monkeypatch):
    from nnsight.schema.request import RequestModel

    _fake_hub(monkeypatch)
    vlm = make_vlm(tiny_llama, seed=1)
    model = _nn_model(tiny_llama)
    model.repo_id = "meta-llama/Llama-3.1-8B"  # the name NDIF knows the model by
    rv = RemoteVLM(vlm.projector, model, remote=True)
    batch, feats = _inputs(vlm)
    req = rv.request(batch, feats, names=NAMES)
    meta, blob = rv.payload(req)
    routing = __import__("json").loads(meta)
    key = routing["model_key"]
    assert key.startswith("nnsight.modeling.transformers.TransformersModel:")
    assert '"repo_id": "meta-llama/Llama-3.1-8B"' in key and '"task": "text-generation"' in key
    weights = sum(p.numel() * p.element_size() for p in tiny_llama.hf.parameters())
    assert 0 < len(blob) < weights / 10  # the projected rows and the trace travel, not the LM
    # the server side: the body deserializes against the model's own modules
    tracer = RequestModel.deserialize(blob, model._remoteable_persistent_objects(), compress=routing["compress"])
    assert "embed_tokens" in "".join(__import__("linecache").getlines(tracer.info.frame.f_code.co_filename))


def test_offline_errors_name_the_model_and_what_is_missing(tiny_llama, monkeypatch):
    import nnsight

    vlm = make_vlm(tiny_llama, seed=1)
    batch, feats = _inputs(vlm)
    # 1. no API key: refused before any network call
    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    monkeypatch.setattr(nnsight.CONFIG.API, "APIKEY", None)
    model = _nn_model(tiny_llama)
    model.repo_id = "meta-llama/Llama-3.1-70B"
    rv = RemoteVLM(vlm.projector, model, remote=True)
    with pytest.raises(RemoteUnavailableError, match="NDIF_API_KEY") as e:
        rv.run_with_cache(batch, feats, names=NAMES)
    assert "meta-llama/Llama-3.1-70B" in str(e.value)
    # 2. a key but no reachable service: the connection error, with the model and host named
    _fake_hub(monkeypatch)
    monkeypatch.setenv("NDIF_API_KEY", "not-a-real-key")
    monkeypatch.setattr(nnsight.CONFIG.API, "HOST", "http://127.0.0.1:9")
    with pytest.raises(RemoteUnavailableError, match=r"meta-llama/Llama-3.1-70B.*failed") as e:
        rv.run_with_cache(batch, feats, names=NAMES)
    assert "127.0.0.1:9" in str(e.value)
    # 3. building the remote model needs the hub (config, tokenizer): offline here
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from interp.projector import Projector, ProjectorConfig

    proj = Projector(ProjectorConfig("mlp2x_gelu", 1024, 4096, 256, "dinov2-large-reg4", "qwen3-8b"))
    with pytest.warns(UserWarning, match="not among NDIF's deployments"):
        with pytest.raises(RemoteUnavailableError, match=r"Qwen/Qwen3-8B.*NDIF_API_KEY"):
            RemoteVLM.from_hub(proj)
    assert "meta-llama/Llama-3.1-70B" in NDIF_MODELS


@pytest.mark.integration
def test_embedded_default_simulated_remote_equals_hooked(gemma):
    """gemma-3-270m with real EfficientNet-Lite0 features of two embedded images."""
    from interp.data.images import load_image_set, verify
    from interp.models.encoders import load_encoder
    from interp.vlm import HookedVLM
    from PIL import Image

    ok, why = verify()
    if not ok:
        pytest.skip(f"embedded image set not built ({why})")
    recs = load_image_set().images[:2]
    enc = load_encoder("efficientnet-lite0")
    feats = enc.encode([Image.open(r.path).convert("RGB") for r in recs])
    vlm = HookedVLM(gemma, HookedVLM.new_projector(gemma, enc.name, enc.d_model, enc.n_tokens, pool_to=4, seed=0))
    rv = RemoteVLM(vlm.projector, _nn_model(gemma), remote="local")
    batch = vlm.build([vlm_item(0, "Is there a bird in the image?"), vlm_item(1, "Is there a tool in the image?")])
    names = ["blocks.0.hook_resid_pre", "blocks.8.hook_resid_post", "blocks.17.hook_resid_post"]
    out, cache = vlm.run_with_cache(batch, feats, names=names)
    rout, rcache = rv.run_with_cache(batch, feats, names=names)
    for n in names:
        scale = float(cache[n].abs().max())
        assert float((cache[n] - rcache[n]).abs().max()) <= 1e-4 * scale, n
    assert torch.allclose(out.logits, rout.logits, atol=1e-3)
    assert rv.lm.embed_scale == pytest.approx(640 ** 0.5) and rv.lm.n_layers == 18
