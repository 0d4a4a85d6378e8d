"""Batched activation patching equals the one-forward-per-cell loop."""

import pytest
import torch

from conftest import make_vlm
from interp.analysis.patching import PatchInput, logit_diff_metric, patch_grid, patch_grid_reference
from interp.sequence import vlm_item


@pytest.fixture(params=["tiny_llama", "tiny_gemma"])
def setup(request):
    lm = request.getfixturevalue(request.param)
    vlm = make_vlm(lm, pool_to=4)
    g = torch.Generator().manual_seed(0)
    b = vlm.build([vlm_item(0, "Is there a bird in the image?")]).to("cpu")
    clean = PatchInput(b, torch.randn(1, 16, 32, generator=g))
    corrupted = PatchInput(b, torch.randn(1, 16, 32, generator=g))
    return vlm, clean, corrupted, logit_diff_metric(vlm, 5, 9)


@pytest.mark.parametrize("hook", ["hook_resid_pre", "hook_resid_post", "hook_attn_out", "hook_mlp_out"])
def test_batched_grid_matches_reference(setup, hook):
    vlm, clean, corrupted, metric = setup
    fast = patch_grid(vlm, clean, corrupted, metric, hook=hook, max_batch=3)
    ref = patch_grid_reference(vlm, clean, corrupted, metric, hook=hook)
    assert fast.shape == (vlm.lm.n_layers, clean.batch.shape[1])
    assert torch.allclose(fast, ref, atol=1e-4)


def test_patching_every_image_position_at_layer0_restores_clean(setup):
    vlm, clean, corrupted, metric = setup
    img = clean.batch.mask("image")[0].nonzero().flatten().tolist()
    grid = patch_grid(vlm, clean, corrupted, metric, layers=[0], positions=img, normalise=True)
    assert grid.shape == (1, 4)
    # text positions are identical in both runs, so patching them does nothing
    txt = clean.batch.mask("text")[0].nonzero().flatten().tolist()
    same = patch_grid(vlm, clean, corrupted, metric, layers=[0], positions=txt, normalise=True)
    assert torch.allclose(same, torch.zeros_like(same), atol=1e-4)


def test_bad_patch_arguments(setup):
    vlm, clean, corrupted, metric = setup
    with pytest.raises(ValueError, match="valid layers"):
        patch_grid(vlm, clean, corrupted, metric, layers=[99])
    with pytest.raises(ValueError, match="unknown hook"):
        patch_grid(vlm, clean, corrupted, metric, hook="hook_nope")
    with pytest.raises(ValueError, match="out of range"):
        patch_grid(vlm, clean, corrupted, metric, positions=[500])
