"""Batched activation patching equals the one-forward-per-cell loop."""

import itertools

import pytest
import torch

from conftest import make_vlm
from interp.analysis.patching import (PackedPass, PatchInput, logit_diff_metric, patch_grid, patch_grid_reference,
                                      plan_passes)
from interp.sequence import single_token_id, vlm_item


@pytest.fixture(params=["tiny_llama", "tiny_gemma"])
def setup(request):
    lm = request.getfixturevalue(request.param)
    vlm = make_vlm(lm, pool_to=4)
    g = torch.Generator().manual_seed(0)
    b = vlm.build([vlm_item(0, "Is there a bird in the image?")]).to("cpu")
    clean = PatchInput(b, torch.randn(1, 16, 32, generator=g))
    corrupted = PatchInput(b, torch.randn(1, 16, 32, generator=g))
    return vlm, clean, corrupted, logit_diff_metric(vlm, 5, 9)


def _resid_pre(*layers: int) -> list[str]:
    return [f"blocks.{layer}.hook_resid_pre" for layer in layers]


def _every_block(vlm, point: str) -> list[str]:
    return [f"blocks.{layer}.{point}" for layer in range(vlm.lm.n_layers)]


VARIANTS = {"batched": dict(packed=False, skip_identical=False, max_batch=3),
            "packed": dict(packed=True, skip_identical=False),
            "packed_small_passes": dict(packed=True, max_tokens=24, pass_overhead=0.0),
            "default": {}}


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("hook", ["hook_resid_pre", "hook_resid_post", "hook_attn_out", "hook_mlp_out", "attn.hook_z"])
def test_batched_grid_matches_reference(setup, hook, variant):
    vlm, clean, corrupted, metric = setup
    hooks = _every_block(vlm, hook)
    fast = patch_grid(vlm, clean, corrupted, metric, hooks=hooks, **VARIANTS[variant])
    ref = patch_grid_reference(vlm, clean, corrupted, metric, hooks=hooks)
    assert fast.shape == (vlm.lm.n_layers, clean.batch.shape[1])
    assert ref.std() > 1e-3  # the grid is not flat: a wrong cell would show
    assert torch.allclose(fast, ref, atol=1e-4)


def test_one_grid_over_mixed_hook_points(setup):
    """Rows are full hook names in the order given: any mix of points and layers in one grid,
    each row equal to its own single-hook grid."""
    vlm, clean, corrupted, metric = setup
    hooks = ["blocks.2.hook_mlp_out", "blocks.0.hook_resid_pre", "blocks.1.attn.hook_z", "blocks.1.hook_resid_post"]
    grid = patch_grid(vlm, clean, corrupted, metric, hooks=hooks)
    assert grid.shape == (len(hooks), clean.batch.shape[1])
    for i, name in enumerate(hooks):
        assert torch.allclose(grid[i], patch_grid_reference(vlm, clean, corrupted, metric, hooks=name)[0], atol=1e-4)
    default = patch_grid(vlm, clean, corrupted, metric)
    assert torch.allclose(default, patch_grid(vlm, clean, corrupted, metric, hooks=_every_block(vlm, "hook_resid_pre")))


def test_positions_in_any_order_with_repeats(setup):
    vlm, clean, corrupted, metric = setup
    positions = [7, 2, 7, 0, 5]
    grid = patch_grid(vlm, clean, corrupted, metric, hooks=_resid_pre(1, 0), positions=positions)
    ref = patch_grid_reference(vlm, clean, corrupted, metric, hooks=_resid_pre(1, 0), positions=positions)
    assert torch.allclose(grid, ref, atol=1e-4)


def test_sequences_longer_than_the_sliding_window_are_not_packed(tiny_gemma):
    vlm = make_vlm(tiny_gemma, pool_to=4)
    window = tiny_gemma.sliding_window
    g = torch.Generator().manual_seed(1)
    b = vlm.build([vlm_item(0, " ".join(["a bird in the image"] * 20))]).to("cpu")
    assert b.shape[1] > window
    clean, corrupted = PatchInput(b, torch.randn(1, 16, 32, generator=g)), PatchInput(b, torch.randn(1, 16, 32, generator=g))
    metric = logit_diff_metric(vlm, 5, 9)
    positions = [0, 2, b.shape[1] - 1]
    grid = patch_grid(vlm, clean, corrupted, metric, hooks=_resid_pre(0, 3), positions=positions)  # falls back to batched
    ref = patch_grid_reference(vlm, clean, corrupted, metric, hooks=_resid_pre(0, 3), positions=positions)
    assert torch.allclose(grid, ref, atol=1e-4)
    with pytest.raises(ValueError, match=f"sliding window \\({window}\\)"):
        patch_grid(vlm, clean, corrupted, metric, hooks=_resid_pre(0), positions=[0], packed=True)


def test_plan_passes_is_optimal():
    """The dynamic programme finds the cheapest split into contiguous groups (brute force)."""
    positions, n_pos = [0, 1, 3, 4, 8, 9], 10

    def cost(group):
        t = sum(n_pos - p for p in group)
        return t + 0.01 * t * t + 7

    def limit(group):
        return sum(n_pos - p for p in group) <= 25

    def total(groups):
        return sum(cost(g) for g in groups)

    best = float("inf")
    for cuts in itertools.product([0, 1], repeat=len(positions) - 1):
        groups, cur = [], [positions[0]]
        for c, p in zip(cuts, positions[1:]):
            if c:
                groups.append(cur)
                cur = []
            cur.append(p)
        groups.append(cur)
        if all(limit(g) for g in groups):
            best = min(best, total(groups))
    plan = plan_passes(positions, cost, limit)
    assert sorted(p for g in plan for p in g) == positions and all(limit(g) for g in plan)
    assert total(plan) == pytest.approx(best)
    with pytest.raises(ValueError, match="position 0 alone"):
        plan_passes([0], cost, lambda g: False)


def test_packed_pass_layout_and_mask():
    pk = PackedPass.of([1, 3], n_pos=4)
    assert pk.pos.tolist() == [1, 2, 3, 3] and pk.copy.tolist() == [0, 0, 0, 1] and pk.starts.tolist() == [0, 3]
    allowed = pk.mask(4, torch.ones(4), torch.float32)[0, 0] == 0
    # copy 0 (patched at 1) sees corrupted key 0 and its own tokens up to itself
    assert allowed[0].tolist() == [True, False, False, False, True, False, False, False]
    assert allowed[2].tolist() == [True, False, False, False, True, True, True, False]
    # copy 1 (patched at 3) sees corrupted keys 0..2 and itself, nothing of copy 0
    assert allowed[3].tolist() == [True, True, True, False, False, False, False, True]
    padded = pk.mask(4, torch.tensor([1, 0, 1, 1]), torch.float32)[0, 0] == 0
    assert not padded[3, 1] and padded[3, 0]


@pytest.mark.integration
def test_packed_grid_on_the_embedded_lm(gemma):
    """gemma-3-270m (sliding-window layers, GQA, softcapping): the packed grid equals the
    one-forward-per-cell loop on a text pair."""
    from interp.vlm import HookedVLM

    vlm = HookedVLM(gemma, HookedVLM.new_projector(gemma, "efficientnet-lite0", 1280, 1))
    clean = PatchInput(vlm.build([vlm_item(None, "Question: is a robin a kind of bird? Answer:")]))
    corr = PatchInput(vlm.build([vlm_item(None, "Question: is a salmon a kind of bird? Answer:")]))
    tok = gemma.tokenizer
    metric = logit_diff_metric(vlm, single_token_id(tok, " yes"), single_token_id(tok, " no"))
    grid = patch_grid(vlm, clean, corr, metric, hooks=_resid_pre(3, 11))
    ref = patch_grid_reference(vlm, clean, corr, metric, hooks=_resid_pre(3, 11))
    assert ref.std() > 1e-2
    assert torch.allclose(grid, ref, atol=1e-4)


def test_patching_every_image_position_at_layer0_restores_clean(setup):
    vlm, clean, corrupted, metric = setup
    img = clean.batch.mask("image")[0].nonzero().flatten().tolist()
    grid = patch_grid(vlm, clean, corrupted, metric, hooks=_resid_pre(0), positions=img, normalise=True)
    assert grid.shape == (1, 4)
    # text positions are identical in both runs, so patching them does nothing
    txt = clean.batch.mask("text")[0].nonzero().flatten().tolist()
    same = patch_grid(vlm, clean, corrupted, metric, hooks=_resid_pre(0), positions=txt, normalise=True)
    assert torch.allclose(same, torch.zeros_like(same), atol=1e-4)


def test_bad_patch_arguments(setup):
    vlm, clean, corrupted, metric = setup
    with pytest.raises(ValueError, match="valid layers"):
        patch_grid(vlm, clean, corrupted, metric, hooks=_resid_pre(99))
    with pytest.raises(ValueError, match="unknown hook"):
        patch_grid(vlm, clean, corrupted, metric, hooks=["blocks.0.hook_nope"])
    with pytest.raises(ValueError, match="per-block hook names"):
        patch_grid(vlm, clean, corrupted, metric, hooks=["hook_resid_pre"])  # a suffix is not a hook name
    with pytest.raises(ValueError, match="at least one"):
        patch_grid(vlm, clean, corrupted, metric, hooks=[])
    with pytest.raises(ValueError, match="out of range"):
        patch_grid(vlm, clean, corrupted, metric, positions=[500])
