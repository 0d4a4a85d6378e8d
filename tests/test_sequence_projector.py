import pytest
import torch

from interp.projector import CheckpointMismatchError, Projector, ProjectorConfig, pool_tokens
from interp.sequence import Modality, Segment, build_batch, vlm_item


@pytest.fixture(scope="module")
def tok():
    from interp.models.lm import load_tokenizer

    return load_tokenizer("tiny-llama")


def test_modality_labels_and_positions(tok):
    b = build_batch(tok, [vlm_item(0, "Is there a bird in the image?", " Yes"), vlm_item(None, "Hello")], n_image_tokens=4)
    assert b.labels(0)[:6] == ["bos", "image", "image", "image", "image", "text"]
    assert b.labels(0)[-1] == "answer" and b.labels(1) == ["bos"] + ["text"] * (len(b.labels(1)) - 1)
    last = b.last(Modality.TEXT)
    assert int(b.modality[0, last[0]]) == Modality.TEXT and int(b.modality[0, last[0] + 1]) == Modality.ANSWER
    assert int(b.modality[1, last[1]]) == Modality.TEXT
    # padding is right-padding, masked out and labelled PAD
    assert b.attention_mask[1].sum() == len(b.labels(1))
    assert (b.modality[1, len(b.labels(1)):] == Modality.PAD).all()
    predicts, targets = b.answer_targets()
    assert predicts.sum() == targets.numel() == (b.modality == Modality.ANSWER).sum()
    assert targets[-1] == tok.eos_token_id  # EOS closes the answer
    assert (b.image_slot[0, 1:5] == torch.arange(4)).all() and (b.image_slot[1] == -1).all()


def test_bad_sequences_fail_clearly(tok):
    with pytest.raises(ValueError, match="empty prompt"):
        vlm_item(0, "")
    with pytest.raises(ValueError, match="unknown segment kind"):
        build_batch(tok, [[Segment("video")]], 4)
    with pytest.raises(ValueError, match="empty batch"):
        build_batch(tok, [], 4)


def test_pooling_keeps_grid_and_means():
    x = torch.arange(49, dtype=torch.float).view(1, 49, 1).expand(2, 49, 3)
    y = pool_tokens(x, 16)
    assert y.shape == (2, 16, 3)
    assert torch.allclose(y.mean(1), pool_tokens(x, 1).squeeze(1), atol=2)  # same overall level
    assert pool_tokens(x, 10).shape == (2, 10, 3)  # non-square: 1-D pooling
    assert torch.equal(pool_tokens(x, 49), x)


@pytest.mark.parametrize("kind", ["linear", "mlp2x_gelu"])
def test_projector_shapes_and_checkpoint(tmp_path, kind):
    cfg = ProjectorConfig(kind=kind, d_in=12, d_out=8, n_tokens_in=16, encoder="enc-a", lm="lm-a", pool_to=4)
    p = Projector(cfg)
    assert p(torch.randn(3, 16, 12)).shape == (3, 4, 8)
    path = tmp_path / "proj.safetensors"
    p.save(path, extra={"seed": 7})
    q, extra = Projector.load(path, lm="lm-a", encoder="enc-a")
    assert extra == {"seed": 7} and q.config == cfg
    x = torch.randn(2, 16, 12)
    assert torch.equal(p(x), q(x))
    with pytest.raises(CheckpointMismatchError, match="'lm-a'.*'lm-b'"):
        Projector.load(path, lm="lm-b")
    with pytest.raises(CheckpointMismatchError, match="'enc-a'.*'enc-b'"):
        Projector.load(path, encoder="enc-b")
    with pytest.raises(ValueError, match=r"features \[batch, tokens, 12\]"):
        p(torch.randn(2, 16, 5))


def test_projector_config_validation():
    with pytest.raises(ValueError, match="valid kinds"):
        ProjectorConfig(kind="mlp3", d_in=1, d_out=1, n_tokens_in=4, encoder="e", lm="l")
    with pytest.raises(ValueError, match="1..49"):
        ProjectorConfig(kind="linear", d_in=1, d_out=1, n_tokens_in=49, encoder="e", lm="l", pool_to=64)


def test_checkpoint_is_not_a_pickle(tmp_path):
    bad = tmp_path / "x.safetensors"
    torch.save({"a": 1}, bad)  # a pickle pretending to be a checkpoint
    with pytest.raises(Exception):
        Projector.load(bad)
