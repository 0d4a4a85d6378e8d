"""Training (resume, skip, projector-only updates) and batched scoring on a tiny LM."""

import pytest
import torch

from conftest import make_vlm
from interp.scoring import score_examples, score_one_at_a_time
from interp.examples import Example
from interp.train_projector import TrainConfig, lr_lambda, train_projector

WORDS = ["bird", "fish", "tool", "fruit", "vehicle", "item of clothing"]


def _examples(n=24):
    return [Example(i % 6, f"Is there a {WORDS[i % 6]} in the image?", "Yes" if i % 2 else "No", "leaf", "c", WORDS[i % 6])
            for i in range(n)]


def _features():
    return torch.randn(6, 16, 32, generator=torch.Generator().manual_seed(0))


def test_schedule_warmup_then_cosine():
    f = lr_lambda(total=100, warmup=3)
    assert f(0) == pytest.approx(1 / 3) and f(2) == pytest.approx(1.0)
    assert f(3) == pytest.approx(1.0) and f(99) < 0.01
    assert all(f(i) >= f(i + 1) for i in range(3, 99))


def test_resume_gives_identical_weights(tiny_llama, tmp_path):
    cfg = TrainConfig(epochs=2, batch_size=4, checkpoint_every=1, seed=3)
    a = make_vlm(tiny_llama, seed=1)
    train_projector(a, _features(), _examples(), cfg, tmp_path / "a", progress=False)
    b = make_vlm(tiny_llama, seed=1)
    assert train_projector(b, _features(), _examples(), cfg, tmp_path / "b", progress=False, stop_after=5) == {"stopped_at": 5}
    assert (tmp_path / "b" / "checkpoint.pt").exists() and not (tmp_path / "b" / "projector.safetensors").exists()
    c = make_vlm(tiny_llama, seed=99)  # a fresh process would start from another init: the checkpoint wins
    summary = train_projector(c, _features(), _examples(), cfg, tmp_path / "b", progress=False)
    assert summary["steps"] == 12
    for pa, pc in zip(a.projector.parameters(), c.projector.parameters()):
        assert torch.allclose(pa, pc, atol=1e-6)
    assert not (tmp_path / "b" / "checkpoint.pt").exists()


def test_finished_run_is_skipped_and_loaded(tiny_llama, tmp_path):
    cfg = TrainConfig(epochs=1, batch_size=8)
    a = make_vlm(tiny_llama, seed=1)
    s1 = train_projector(a, _features(), _examples(), cfg, tmp_path, progress=False)
    b = make_vlm(tiny_llama, seed=2)
    s2 = train_projector(b, _features(), _examples(), cfg, tmp_path, progress=False)
    assert s1["final_loss"] == s2["final_loss"]
    for pa, pb in zip(a.projector.parameters(), b.projector.parameters()):
        assert torch.equal(pa, pb)
    assert "environment" in s1 and s1["train_config"]["lr"] == 1e-3


def test_training_lowers_the_answer_loss_and_leaves_lm_untouched(tiny_llama, tmp_path):
    vlm = make_vlm(tiny_llama, seed=0)
    before = {k: v.clone() for k, v in tiny_llama.hf.state_dict().items()}
    s = train_projector(vlm, _features(), _examples(48), TrainConfig(epochs=6, batch_size=8, lr=3e-3), tmp_path,
                        progress=False)
    assert s["losses"][-1] < s["losses"][0]
    assert all(torch.equal(before[k], v) for k, v in tiny_llama.hf.state_dict().items())


def test_batched_scoring_matches_one_at_a_time(tiny_gemma):
    vlm = make_vlm(tiny_gemma, seed=0)
    exs = _examples(13)
    single = score_one_at_a_time(vlm, _features(), exs)
    for share in (True, False):
        batched = score_examples(vlm, _features(), exs, batch_size=5, progress=False, share_prefix=share)
        assert torch.allclose(batched, single, atol=1e-4), share
        assert torch.equal(batched > 0, single > 0)
