"""Integration: the embedded pretrained LMs, loaded offline from registry packages."""


import pytest
import torch

from conftest import make_vlm
from interp.sequence import vlm_item

pytestmark = pytest.mark.integration


def _next_token(lm, text):
    tok = lm.tokenizer
    ids = tok(text, return_tensors="pt").input_ids
    resid = lm(lm.embed_tokens(ids))
    return tok.decode(lm.unembed(resid[0, -1]).argmax())


def test_gemma_shape_and_hypernym_knowledge(gemma):
    assert (gemma.n_layers, gemma.d_model, gemma.vocab_size) == (18, 640, 262144)
    assert gemma.embed_scale == pytest.approx(640 ** 0.5, rel=1e-3)
    assert _next_token(gemma, "A robin is a kind of") == " bird"
    assert _next_token(gemma, "A salmon is a kind of") == " fish"


def test_smollm_shape(smollm):
    assert (smollm.n_layers, smollm.d_model) == (30, 576)
    assert smollm.embed_scale == 1.0
    assert _next_token(smollm, "The capital of France is").strip() == "Paris"


def test_random_init_control_keeps_architecture(gemma):
    from interp.models.lm import load_lm

    rnd = load_lm("gemma-3-270m", random_init=True, seed=3)
    assert rnd.name == "gemma-3-270m+random3"
    assert type(rnd.model) is type(gemma.hf)
    assert rnd.model.config.num_hidden_layers == 18
    w0 = gemma.hf.model.layers[0].mlp.gate_proj.weight if hasattr(gemma.hf.model.layers[0], "mlp") else None
    if w0 is not None:
        assert not torch.allclose(rnd.model.model.layers[0].mlp.gate_proj.weight, w0)


def test_hub_name_offline_fails_fast_with_advice(monkeypatch):
    from interp.models.lm import ModelUnavailableError, load_lm

    import socket

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    attempts = []

    def no_network(*args, **kwargs):  # fails fast = never looks up or waits on a host
        attempts.append(args[:2])
        raise OSError("test: no network")

    for owner, name in ((socket, "getaddrinfo"), (socket, "create_connection"), (socket.socket, "connect")):
        monkeypatch.setattr(owner, name, no_network)
    with pytest.raises(ModelUnavailableError, match="local folder") as err:
        load_lm("qwen3-0.6b")
    assert attempts == []
    assert "Qwen/Qwen3-0.6B" in str(err.value)


def test_unknown_name_lists_registered():
    from interp.models.lm import load_lm

    with pytest.raises(KeyError, match="gemma-3-270m"):
        load_lm("not-a-model")


def test_gemma_vlm_patch_cache_and_routes(gemma):
    vlm = make_vlm(gemma, n_tokens=49, d_img=1280, pool_to=None)
    b = vlm.build([vlm_item(0, "Is there a bird in the image?", " Yes"), vlm_item(1, "Is there a fish in the image?", " No")])
    feats = torch.randn(2, 49, 1280)
    names = [f"blocks.{i}.hook_resid_post" for i in (0, 8, 17)]
    _, cache = vlm.run_with_cache(b, feats, names=names)
    assert cache.at(names[1], "image").shape == (98, 640)
    # patch at layer 8: layer 0 untouched, layers 8 and 17 changed
    _, patched = vlm.run_with_cache(b, feats, names=names, fwd_hooks=[(names[1], lambda t, hook: t * 1.5)])
    assert torch.equal(cache[names[0]], patched[names[0]])
    assert not torch.equal(cache[names[2]], patched[names[2]])
    nm = vlm.nnsight_model
    inputs = vlm.nnsight_inputs(b, feats)
    with nm.trace(**inputs):
        h = nm.model.layers[8].output.save()
    assert torch.allclose(h, cache[names[1]], atol=1e-4)
    loss = vlm.answer_loss(b, feats)
    loss.backward()
    assert vlm.projector.net[0].weight.grad.abs().sum() > 0 and not gemma.parameters_require_grad()


def test_unusable_device_and_dtype_are_named():
    import torch

    from interp.models.lm import check_device
    from interp.studies.taxonomy.config import ModelConfig

    assert check_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="'cuda:0' asked for.*no usable CUDA"):
            check_device("cuda:0")
    with pytest.raises(ValueError, match="model.dtype 'bf16': valid dtypes are"):
        ModelConfig(dtype="bf16")
    with pytest.raises(ValueError, match="model.device 'gpu'"):
        ModelConfig(device="gpu")
