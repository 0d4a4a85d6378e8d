"""Attribution patching is the first-order term of exact patching."""

import pytest
import torch

from conftest import make_vlm
from interp.analysis.attribution import attribution_grid, compare_to_exact, sample_cells, validate_attribution
from interp.analysis.patching import PatchInput, logit_diff_metric, patch_grid
from interp.sequence import vlm_item


def _pair(lm, eps: float, seed: int = 0):
    vlm = make_vlm(lm, pool_to=4)
    g = torch.Generator().manual_seed(seed)
    b = vlm.build([vlm_item(0, "Is there a bird in the image?")]).to("cpu")
    corr = torch.randn(1, 16, 32, generator=g)
    clean = corr + eps * torch.randn(1, 16, 32, generator=g)
    return vlm, PatchInput(b, clean), PatchInput(b, corr), logit_diff_metric(vlm, 5, 9)


@pytest.mark.parametrize("lm_name", ["tiny_llama", "tiny_gemma"])
@pytest.mark.parametrize("hook", ["hook_resid_pre", "hook_attn_out", "hook_mlp_out", "attn.hook_v", "attn.hook_z"])
def test_attribution_matches_exact_patching_for_small_differences(request, lm_name, hook):
    """With clean = corrupted + eps * noise the exact effect is linear in eps: attribution must
    match it cell by cell (error O(eps^2)), which fails if a gradient is missing or misplaced
    (head-axis hooks such as attn.hook_v/hook_z pass a reshaped copy to the hook)."""
    vlm, clean, corr, metric = _pair(request.getfixturevalue(lm_name), eps=1e-3)
    hooks = [f"blocks.{layer}.{hook}" for layer in range(vlm.lm.n_layers)]
    att = attribution_grid(vlm, clean, corr, metric, hooks=hooks)
    exact = patch_grid(vlm, clean, corr, metric, hooks=hooks) - att.corrupted
    assert att.hooks == hooks
    assert att.grid.shape == exact.shape == (vlm.lm.n_layers, clean.batch.shape[1])
    scale = exact.abs().max()
    assert scale > 0, "the perturbation changed nothing: the test would be vacuous"
    assert torch.allclose(att.grid, exact, atol=2e-2 * float(scale)), (att.grid - exact).abs().max()


def test_normalised_attribution_and_validation(tiny_llama):
    vlm, clean, corr, metric = _pair(tiny_llama, eps=1.0)
    att = attribution_grid(vlm, clean, corr, metric, normalise=True)
    assert att.normalised
    assert torch.allclose(att.effects(), att.grid * (att.clean - att.corrupted))
    agreement, rows = validate_attribution(vlm, clean, corr, metric, att, n_cells=12, seed=1)
    assert agreement.n_cells == len(rows) == 12
    assert -1.0 <= agreement.pearson <= 1.0
    # the rows hold exact effects in metric units: re-derive one cell
    r = rows[0]
    assert r["hook"] == f"blocks.{r['layer']}.hook_resid_pre"
    one = patch_grid(vlm, clean, corr, metric, hooks=[r["hook"]], positions=[r["position"]])[0, 0]
    assert abs(float(one) - att.corrupted - r["exact"]) < 1e-4


def test_sampling_and_comparison_edge_cases():
    cells = sample_cells(3, 4, 5, seed=0)
    assert len(set(cells)) == 5 and all(0 <= l < 3 and 0 <= p < 4 for l, p in cells)
    assert len(sample_cells(3, 4, 100)) == 12
    perfect = compare_to_exact(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 4.0, 6.0]))
    assert perfect.pearson == pytest.approx(1.0) and perfect.sign_agreement == 1.0
    with pytest.raises(ValueError, match=">= 3"):
        compare_to_exact(torch.tensor([1.0]), torch.tensor([1.0]))


def test_attribution_rejects_misaligned_inputs(tiny_llama):
    vlm, clean, corr, metric = _pair(tiny_llama, eps=1.0)
    longer = PatchInput(vlm.build([vlm_item(0, "Is there a bird in the image today?")]).to("cpu"), clean.features)
    with pytest.raises(ValueError, match="aligned positions"):
        attribution_grid(vlm, longer, corr, metric)
    with pytest.raises(ValueError, match="valid layers"):
        attribution_grid(vlm, clean, corr, metric, hooks=["blocks.42.hook_resid_pre"])
