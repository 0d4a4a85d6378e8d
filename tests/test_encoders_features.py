"""Image encoders (embedded EfficientNet-Lite0, HF route on tiny configs, tiny conv) and the feature cache."""

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from interp.features import encode_cached
from interp.models.encoders import HFVisionEncoder, TinyEncoder, load_encoder, to_rgb


def _write_images(folder, n=5, size=40):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = folder / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def test_transparent_images_go_on_white():
    im = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert to_rgb(im).getpixel((0, 0)) == (255, 255, 255)


def test_tiny_encoder_shapes_frozen_deterministic():
    enc = TinyEncoder()
    ims = [Image.new("RGB", (30, 50), (i * 40, 0, 0)) for i in range(3)]
    a, b = enc.encode(ims), TinyEncoder().encode(ims)
    assert a.shape == (3, 16, 32) and torch.equal(a, b)
    assert not any(p.requires_grad for p in enc.parameters())


@pytest.mark.parametrize("family", ["dinov2", "clip", "siglip"])
def test_hf_route_token_counts(family):
    import transformers as tf

    common = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64, image_size=56,
                  patch_size=14)
    if family == "dinov2":
        model = tf.Dinov2WithRegistersModel(tf.Dinov2WithRegistersConfig(**common, num_register_tokens=4))
    elif family == "clip":
        model = tf.CLIPVisionModel(tf.CLIPVisionConfig(**common))
    else:
        model = tf.SiglipVisionModel(tf.SiglipVisionConfig(**common))
    enc = HFVisionEncoder(f"tiny-{family}", model, family, 56, [0.5] * 3, [0.5] * 3)
    out = enc.encode([Image.new("RGB", (60, 60))] * 2)
    assert out.shape == (2, 16, 32)  # (56/14)^2 patch tokens, CLS and registers dropped
    if family == "dinov2":  # second-to-last block, patch tokens only
        x = enc.preprocess([Image.new("RGB", (60, 60))])
        hs = model(pixel_values=x, output_hidden_states=True).hidden_states
        assert torch.allclose(enc(x), hs[-2][:, 5:], atol=1e-6)


def test_hub_encoder_offline_fails_fast(monkeypatch):
    from interp.models.lm import ModelUnavailableError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError, match="local folder"):
        load_encoder("dinov2-large-reg4")
    with pytest.raises(KeyError, match="efficientnet-lite0"):
        load_encoder("resnet-9000")


@pytest.mark.integration
def test_embedded_encoder_sees_real_photos():
    from sklearn.datasets import load_sample_images

    enc = load_encoder("efficientnet-lite0")
    ims = [Image.fromarray(a) for a in load_sample_images().images]  # china.jpg (a temple), flower.jpg (a daisy)
    assert enc.encode(ims).shape == (2, 49, 1280)
    top = enc.classify(ims).topk(5).indices
    assert 985 in top[1].tolist()  # ImageNet 985 = daisy
    assert not set(top[0].tolist()).isdisjoint({483, 510, 663, 698})  # castle, container ship, monastery, palace


@pytest.mark.integration
def test_embedded_mid_level_encoder_is_the_pooled_block_output():
    """efficientnet-lite0-block7: MBConv block 7's map (the one the full network computes),
    average-pooled 14x14 -> 7x7, as 49 tokens of its 80 channels."""
    from sklearn.datasets import load_sample_images

    from interp.models.encoders import EfficientNetLiteEncoder

    ims = [Image.fromarray(a) for a in load_sample_images().images]
    mid = load_encoder("efficientnet-lite0-block7")
    assert (mid.name, mid.d_model, mid.n_tokens) == ("efficientnet-lite0-block7", 80, 49)
    f = mid.encode(ims)
    full = load_encoder("efficientnet-lite0")
    seen = {}
    full.net._blocks[7].register_forward_hook(lambda m, i, o: seen.setdefault("map", o))
    full.encode(ims)
    assert seen["map"].shape == (2, 80, 14, 14)
    pooled = seen["map"].reshape(2, 80, 7, 2, 7, 2).mean((3, 5)).flatten(2).transpose(1, 2)
    torch.testing.assert_close(f, pooled, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="valid blocks are 0..15"):
        EfficientNetLiteEncoder(0, block=16)


@pytest.mark.integration
def test_embedded_lite0_lite1_pair_concatenates_both_encoders():
    from sklearn.datasets import load_sample_images

    ims = [Image.fromarray(a) for a in load_sample_images().images]
    pair = load_encoder("efficientnet-lite0+lite1")
    f = pair.encode(ims)
    assert f.shape == (2, 49, 2560) and pair.d_model == 2560
    lite0, lite1 = load_encoder("efficientnet-lite0").encode(ims), load_encoder("efficientnet-lite1").encode(ims)
    assert torch.equal(f[..., :1280], lite0) and torch.equal(f[..., 1280:], lite1)
    assert not torch.allclose(lite0, lite1, atol=1e-2)  # two different networks, not one loaded twice
    top = load_encoder("efficientnet-lite1").classify(ims).topk(5).indices
    assert not set(top[0].tolist()).isdisjoint({483, 510, 663, 698})  # Lite1's own ImageNet head sees the temple


def test_concat_encoder_joins_parts_per_token_and_refuses_mismatched_grids():
    from interp.models.encoders import ConcatEncoder

    a, b = TinyEncoder(seed=0), TinyEncoder(seed=1)
    pair = ConcatEncoder("tiny+tiny", [a, b])
    ims = [Image.new("RGB", (80, 60), (200, 30, 10)), Image.new("RGBA", (64, 64), (0, 90, 250, 128))]
    f = pair.encode(ims)
    assert f.shape == (2, 16, 64) and pair.d_model == 64 and pair.n_tokens == 16
    assert torch.equal(f[..., :32], a.encode(ims)) and torch.equal(f[..., 32:], b.encode(ims))
    assert not any(p.requires_grad for p in pair.parameters())
    other = TinyEncoder()
    other.n_tokens = 9
    with pytest.raises(ValueError, match="one token grid"):
        ConcatEncoder("bad", [a, other])
    with pytest.raises(ValueError, match=">= 2 encoders"):
        ConcatEncoder("one", [a])


def test_cache_reuse_stale_and_corrupt(tmp_path, caplog):
    paths = _write_images(tmp_path)
    calls = []
    enc = TinyEncoder()
    orig = enc.encode
    enc.encode = lambda ims, **kw: calls.append(len(ims)) or orig(ims, **kw)
    cache = tmp_path / "cache"
    a = encode_cached(enc, paths, cache_dir=cache, progress=False)
    b = encode_cached(enc, paths, cache_dir=cache, progress=False)
    assert len(calls) == 1 and torch.equal(a.features, b.features) and a.digest == b.digest
    assert a.features.shape == (5, 16, 32) and a.keys == [str(p) for p in paths]
    # corrupt: truncate the file -> rebuilt, with a warning
    f = next(cache.glob("*.safetensors"))
    f.write_bytes(f.read_bytes()[:100])
    with caplog.at_level(logging.WARNING):
        c = encode_cached(enc, paths, cache_dir=cache, progress=False)
    assert len(calls) == 2 and "unreadable" in caplog.text and torch.equal(c.features, a.features)
    # edited in place (same size, finite values): the recorded digest catches it -> rebuilt, naming the file
    raw = bytearray(f.read_bytes())
    raw[-2:] = b"\x00\x3c"  # the last fp16 feature becomes 1.0
    f.write_bytes(bytes(raw))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        e = encode_cached(enc, paths, cache_dir=cache, progress=False)
    assert len(calls) == 3 and "differs from the one written" in caplog.text and str(f) in caplog.text
    assert torch.equal(e.features, a.features)
    # an edited image gives a new key and new features
    Image.new("RGB", (40, 40), (255, 0, 0)).save(paths[2])
    d = encode_cached(enc, paths, cache_dir=cache, progress=False)
    assert d.digest != a.digest and not torch.equal(d.features[2], a.features[2]) and torch.equal(d.features[0], a.features[0])


def test_missing_image_named(tmp_path):
    paths = _write_images(tmp_path, 2)
    with pytest.raises(FileNotFoundError, match="nope.png"):
        encode_cached(TinyEncoder(), paths + [tmp_path / "nope.png"], cache_dir=tmp_path, progress=False)
