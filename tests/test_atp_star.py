"""AtP* (QK fix + GradDrop) against exact patching and against its own definitions."""

import math
from contextlib import contextmanager

import pytest
import torch

from conftest import make_vlm
from interp.analysis.atp_compare import ESTIMATORS, agreement, cells_to_cover, compare_estimators, topk_recall
from interp.analysis.atp_star import (atp_star_grid, drop_hooks, graddrop_score, key_pattern_change, qk_role,
                                      query_pattern_change, run_gradients)
from interp.analysis.attribution import attribution_grid
from interp.analysis.patching import PatchInput, logit_diff_metric, patch_grid
from interp.models.hooked import unwrap
from interp.sequence import vlm_item


def _pair(lm, eps: float = 1.0, seed: int = 0):
    vlm = make_vlm(lm, pool_to=4)
    g = torch.Generator().manual_seed(seed)
    b = vlm.build([vlm_item(0, "Is there a bird in the image?")]).to("cpu")
    corr = torch.randn(1, 16, 32, generator=g)
    clean = corr + eps * torch.randn(1, 16, 32, generator=g)
    return vlm, PatchInput(b, clean), PatchInput(b, corr), logit_diff_metric(vlm, 5, 9)


def _brute_pattern_change(scores, new, positions, side):
    """(patched - old) pattern by one full softmax per patched position: ``[P, heads, q, k]``."""
    seen = scores > torch.finfo(scores.dtype).min / 2
    x = scores.double().masked_fill(~seen, float("-inf"))
    old = torch.softmax(x, -1).nan_to_num(0.0)
    out = []
    for j, p in enumerate(positions):
        y = x.clone()
        if side == "key":
            y[:, :, p] = torch.where(seen[:, :, p], new[:, :, j].double(), float("-inf"))
        else:
            y[:, p] = torch.where(seen[:, p], new[:, j].double(), float("-inf"))
        out.append(torch.softmax(y, -1).nan_to_num(0.0) - old)
    return torch.stack(out)


@pytest.mark.parametrize("side", ["key", "query"])
@pytest.mark.parametrize("spread", [1.0, 40.0])  # 40: rows saturate (one weight ~1, the rest ~e-40)
def test_pattern_changes_equal_a_full_softmax_per_patched_position(side, spread):
    g = torch.Generator().manual_seed(1)
    heads, n = 3, 7
    scores = spread * torch.randn(heads, n, n, generator=g)
    mask = torch.ones(n, n, dtype=torch.bool).tril()
    mask[5, :3] = False  # a query that cannot see some earlier keys (a window)
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    positions = [0, 2, 3, 6]
    if side == "key":
        new = spread * torch.randn(heads, n, len(positions), generator=g)
        change = key_pattern_change(scores, new, positions)
    else:
        new = spread * torch.randn(heads, len(positions), n, generator=g)
        change = query_pattern_change(scores, new, positions)
    grad = torch.randn(heads, n, n, generator=g, dtype=torch.float64)
    brute = (_brute_pattern_change(scores, new, positions, side) * grad).sum((1, 2, 3))
    assert brute.abs().max() > 1e-3  # the patches move the pattern: the comparison is not 0 == 0
    assert torch.allclose(change.effects(grad), brute, rtol=1e-9, atol=1e-12), (change.effects(grad), brute)


@pytest.mark.parametrize("lm_name", ["tiny_llama", "tiny_gemma"])
@pytest.mark.parametrize("point", ["attn.hook_q", "attn.hook_k"])
def test_qk_fix_is_exact_up_to_the_attention_pattern(request, lm_name, point):
    """The QK fix's estimate is (exact patched pattern - pattern) . d metric / d pattern: the
    pattern of a real patched run, read at the layer, must give the same number per cell."""
    vlm, clean, corr, metric = _pair(request.getfixturevalue(lm_name))
    layer = 1
    name, pat = f"blocks.{layer}.{point}", f"blocks.{layer}.attn.hook_pattern"
    star = atp_star_grid(vlm, clean, corr, metric, hooks=[name], drop_layers=())
    assert star.qk_fixed == [True]
    run = run_gradients(vlm, corr, metric, [pat])
    _, cache = vlm.run_with_cache(clean.batch, clean.features, names=[name], logits_at=None)
    want = []
    for p in star.positions:
        def write(t, hook, p=p):
            t = t.clone()
            t[:, p] = cache[name][:, p]
            return t

        got = {}
        vlm.run_with_hooks(corr.batch, corr.features, logits_at=None,
                           fwd_hooks=[(name, write), (pat, lambda t, hook: got.__setitem__("p", t.detach()))])
        want.append(float(((got["p"][0] - run.acts[pat]) * run.grads[0][pat]).sum()))
    want = torch.tensor(want)
    assert want.abs().max() > 1e-4
    assert torch.allclose(star.signed[0], want, rtol=0, atol=1e-3 * float(want.abs().max())), (star.signed[0], want)


@contextmanager
def _scaled_queries(lm, layer: int, factor: float):
    """Multiply one layer's query projection (tiny-llama: no q norm undoes it), restored after."""
    proj = unwrap(unwrap(unwrap(lm.hf.model.layers[layer]).self_attn).q_proj)
    saved = proj.weight.detach().clone()
    with torch.no_grad():
        proj.weight.mul_(factor)
    try:
        yield
    finally:
        with torch.no_grad():
            proj.weight.copy_(saved)


def test_qk_fix_beats_plain_attribution_where_attention_saturates(tiny_llama):
    """Last layer's logits x1000: each query puts ~95% on one key, the softmax gradient is ~0 and
    plain AtP's error on the query/key rows is several times the QK fix's."""
    vlm, clean, corr, metric = _pair(tiny_llama)
    layer = tiny_llama.n_layers - 1
    hooks = [f"blocks.{layer}.attn.hook_q", f"blocks.{layer}.attn.hook_k"]
    with _scaled_queries(tiny_llama, layer, 1000.0):
        _, cache = vlm.run_with_cache(corr.batch, corr.features, names=[f"blocks.{layer}.attn.hook_pattern"],
                                      logits_at=None)
        top = cache[f"blocks.{layer}.attn.hook_pattern"][0, :, 1:].max(-1).values.mean()
        assert top > 0.9, f"the construction should saturate attention (mean top weight {float(top):.2f})"
        exact = patch_grid(vlm, clean, corr, metric, hooks=hooks)
        atp = attribution_grid(vlm, clean, corr, metric, hooks=hooks)
        star = atp_star_grid(vlm, clean, corr, metric, hooks=hooks, drop_layers=())
    effect = exact - atp.corrupted
    assert effect.abs().sum() > 0.05
    atp_err, qk_err = (atp.grid - effect).abs().sum(1), (star.signed - effect).abs().sum(1)
    assert (qk_err < 0.5 * atp_err).all(), (qk_err, atp_err)


@pytest.mark.parametrize("lm_name", ["tiny_llama", "tiny_gemma"])
def test_atp_star_without_fixes_is_attribution_patching(request, lm_name):
    vlm, clean, corr, metric = _pair(request.getfixturevalue(lm_name))
    hooks = [f"blocks.{l}.{p}" for l in (0, 2) for p in ("hook_resid_pre", "attn.hook_k", "attn.hook_z")]
    att = attribution_grid(vlm, clean, corr, metric, hooks=hooks)
    plain = atp_star_grid(vlm, clean, corr, metric, hooks=hooks, qk_fix=False, drop_layers=())
    assert plain.qk_fixed == [False] * len(hooks) and plain.per_drop.shape == (0, len(hooks), len(plain.positions))
    assert att.grid.abs().max() > 0
    assert torch.allclose(plain.signed, att.grid, rtol=1e-5, atol=1e-7)
    assert torch.equal(plain.grid, plain.signed.abs())
    assert plain.corrupted == pytest.approx(att.corrupted) and plain.clean == pytest.approx(att.clean)


@pytest.mark.parametrize("lm_name", ["tiny_llama", "tiny_gemma"])
def test_a_dropped_layer_passes_gradient_only_through_the_residual_stream(request, lm_name):
    """With layer l dropped, d metric / d resid_pre(l) equals d metric / d resid_post(l): the
    gradient skips the block; without the drop they differ."""
    vlm, clean, corr, metric = _pair(request.getfixturevalue(lm_name))
    layer = 1
    pre, post = f"blocks.{layer}.hook_resid_pre", f"blocks.{layer}.hook_resid_post"
    run = run_gradients(vlm, corr, metric, [pre, post], drop_layers=[layer])
    assert run.drop_layers == [layer] and len(run.grads) == 2
    assert not torch.allclose(run.grads[0][pre], run.grads[0][post])
    assert torch.allclose(run.grads[1][pre], run.grads[1][post], atol=1e-6)
    assert torch.equal(run.grads[1][post], run.grads[0][post])  # the drop is upstream of resid_post


@pytest.mark.parametrize("lm_name", ["tiny_llama", "tiny_gemma"])
def test_run_gradients_equals_one_full_backward_pass_per_drop(request, lm_name):
    """run_gradients starts each dropped layer's pass at that layer's resid_post: it must give
    what a full backward pass from the metric, with the same gates, gives."""
    vlm, clean, corr, metric = _pair(request.getfixturevalue(lm_name))
    names = ["blocks.0.hook_resid_pre", "blocks.1.attn.hook_pattern", "blocks.1.hook_resid_post",
             "blocks.2.hook_attn_out", "blocks.2.attn.hook_k", "blocks.3.hook_mlp_out"]
    drops = [0, 1, 2, 3]
    run = run_gradients(vlm, corr, metric, names, drop_layers=drops)
    saved, state = {}, {"dropped": None}

    def keep(name):
        def hook(t, hook):
            saved[name] = t
            return t

        return hook

    embeds = vlm.embed(corr.batch, corr.features).detach().requires_grad_(True)
    resid = vlm.run_with_hooks(corr.batch, embeds=embeds, logits_at=None,
                               fwd_hooks=[(n, keep(n)) for n in names] + drop_hooks(drops, state)).resid
    m = metric(resid, corr.batch)[0]
    for d, drop in enumerate([None] + drops):
        state["dropped"] = drop
        for n, g in zip(names, torch.autograd.grad(m, [saved[n] for n in names], retain_graph=True)):
            scale = float(g.abs().max()) + 1e-12
            assert torch.allclose(run.grads[d][n], g[0], rtol=0, atol=1e-5 * scale), (drop, n)
    assert run.grads[3]["blocks.2.hook_attn_out"].abs().max() == 0  # a write of the dropped layer
    assert not torch.allclose(run.grads[2]["blocks.0.hook_resid_pre"], run.grads[0]["blocks.0.hook_resid_pre"])


def test_graddrop_per_drop_estimates_follow_the_paths_they_cut(tiny_gemma):
    """Dropping a layer before a row's changes nothing for it (GradDrop reduces to AtP there);
    dropping the layer that writes the row's activation zeroes it; AtP* is eq. 11 of the rest."""
    vlm, clean, corr, metric = _pair(tiny_gemma)
    hooks = ["blocks.2.hook_resid_pre", "blocks.2.hook_attn_out", "blocks.2.attn.hook_k"]
    star = atp_star_grid(vlm, clean, corr, metric, hooks=hooks)
    assert star.drop_layers == [0, 1, 2, 3] and star.qk_fixed == [False, False, True]
    for d in (0, 1):  # upstream of layer 2
        assert torch.allclose(star.per_drop[d], star.signed, rtol=1e-6, atol=1e-9)
    assert star.per_drop[2, 1:].abs().max() == 0  # attn_out and the keys of layer 2 act through layer 2 only
    assert star.per_drop[2, 0].abs().max() > 0  # resid_pre(2) still reaches the metric around layer 2
    assert not torch.allclose(star.per_drop[3], star.signed)  # layer 3 carries part of every row's effect
    assert torch.allclose(star.grid, star.per_drop.abs().sum(0) / 3)


def test_graddrop_score_keeps_cancelled_effects():
    # a direct path (+1) cancelled by a path through layer 1 (-1): AtP sees 0, GradDrop does not
    per_drop = torch.tensor([[0.0, 2.0], [1.0, 2.0], [0.0, 2.0]])  # drops: own layer, layer 1, a layer before
    assert torch.allclose(graddrop_score(per_drop), torch.tensor([0.5, 3.0]))
    with pytest.raises(ValueError, match="at least two"):
        graddrop_score(per_drop[:1])


def test_the_qk_fix_refuses_an_attention_it_cannot_reproduce(tiny_llama, monkeypatch):
    vlm, clean, corr, metric = _pair(tiny_llama)
    monkeypatch.setattr(tiny_llama, "attention_scale", lambda layer: (1.0, None))  # the real scaling is 0.25
    with pytest.raises(RuntimeError, match="cannot reproduce"):
        atp_star_grid(vlm, clean, corr, metric, hooks=["blocks.0.attn.hook_q"], drop_layers=())
    atp_star_grid(vlm, clean, corr, metric, hooks=["blocks.0.attn.hook_q"], drop_layers=(), qk_fix=False)


def test_qk_role():
    assert qk_role("blocks.3.attn.hook_q") == qk_role("blocks.0.attn.hook_rot_q") == "query"
    assert qk_role("blocks.3.attn.k.hook_out") == qk_role("blocks.1.attn.hook_k") == "key"
    assert qk_role("blocks.3.attn.hook_v") is qk_role("blocks.3.hook_resid_pre") is qk_role("attn.hook_q") is None


def test_atp_star_rejects_bad_inputs(tiny_llama):
    vlm, clean, corr, metric = _pair(tiny_llama)
    longer = PatchInput(vlm.build([vlm_item(0, "Is there a bird in the image today?")]).to("cpu"), clean.features)
    with pytest.raises(ValueError, match="aligned positions"):
        atp_star_grid(vlm, longer, corr, metric)
    with pytest.raises(ValueError, match="out of range"):
        atp_star_grid(vlm, clean, corr, metric, positions=[0, 99])
    with pytest.raises(ValueError, match="at least two layers"):
        atp_star_grid(vlm, clean, corr, metric, drop_layers=[1])
    with pytest.raises(ValueError, match="valid layers"):
        atp_star_grid(vlm, clean, corr, metric, drop_layers=[0, 7])
    with pytest.raises(ValueError, match="repeats"):
        atp_star_grid(vlm, clean, corr, metric, drop_layers=[1, 1])
    with pytest.raises(ValueError, match="unknown hook"):
        atp_star_grid(vlm, clean, corr, metric, hooks=["blocks.0.attn.hook_nope"])


# ------------------------------------------------------------------------------ validation
def test_ranking_measures_on_known_grids():
    exact = torch.tensor([[5.0, -4.0, 0.1], [0.2, 3.0, 0.0]])
    perfect = agreement(2 * exact, exact, k=3)
    assert perfect["pearson"] == pytest.approx(1.0) and perfect["topk_recall"] == 1.0
    assert perfect["false_negative_rate"] == 0.0 and perfect["cells_to_cover_topk"] == 3
    reversed_ = torch.tensor([[0.1, 0.2, 5.0], [4.0, 0.3, 3.0]])  # puts the small cells on top
    assert topk_recall(reversed_, exact, 3) == 0.0
    assert cells_to_cover(reversed_, exact, 3) == 6
    magnitude = agreement(exact.abs(), exact, k=2, signed=False)
    assert math.isnan(magnitude["pearson"]) and magnitude["spearman_abs"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="1 <= k"):
        agreement(exact, exact, k=0)
    with pytest.raises(ValueError, match="differ in shape"):
        agreement(exact[0], exact, k=1)


def test_compare_estimators_rows(tiny_gemma):
    vlm, clean, corr, metric = _pair(tiny_gemma)
    hooks = [f"blocks.{l}.{p}" for l in range(tiny_gemma.n_layers) for p in ("hook_resid_pre", "attn.hook_k")]
    rows = compare_estimators(vlm, clean, corr, metric, hooks=hooks, k=6)
    n_pos = clean.batch.shape[1]
    assert [r["estimator"] for r in rows] == list(ESTIMATORS)
    keys = {"estimator", "signed", "hooks", "positions", "cells", "k", "pearson", "spearman", "pearson_abs",
            "spearman_abs", "topk_recall", "false_negative_rate", "cells_to_cover_topk", "seconds", "exact_seconds",
            "cost_ratio"}
    exact_seconds = rows[0]["exact_seconds"]
    for r in rows:
        assert set(r) == keys
        assert r["cells"] == len(hooks) * n_pos and r["hooks"] == len(hooks) and r["k"] == 6
        assert 0.0 <= r["topk_recall"] <= 1.0 and r["false_negative_rate"] == pytest.approx(1 - r["topk_recall"])
        assert 6 <= r["cells_to_cover_topk"] <= r["cells"]
        assert -1.0 <= r["spearman_abs"] <= 1.0 and -1.0 <= r["pearson_abs"] <= 1.0
        assert r["signed"] == (r["estimator"] != "atp_star")
        assert r["signed"] == (not math.isnan(r["pearson"]))
        assert r["exact_seconds"] == exact_seconds > 0
        assert r["cost_ratio"] == pytest.approx(r["seconds"] / exact_seconds)
    # the recall is of the real grids: re-derive AtP's from attribution_grid and patch_grid
    exact = patch_grid(vlm, clean, corr, metric, hooks=hooks)
    att = attribution_grid(vlm, clean, corr, metric, hooks=hooks)
    assert rows[0]["topk_recall"] == topk_recall(att.grid, exact - att.corrupted, 6)
    one = compare_estimators(vlm, clean, corr, metric, hooks=hooks[:2], estimators=["atp_star"], drop_layers=[2, 3])
    assert [r["estimator"] for r in one] == ["atp_star"] and one[0]["k"] == max(1, 2 * n_pos // 10)


def test_compare_estimators_rejects_bad_inputs(tiny_llama):
    vlm, clean, corr, metric = _pair(tiny_llama)
    with pytest.raises(ValueError, match="choose from"):
        compare_estimators(vlm, clean, corr, metric, estimators=["atp", "magic"])
    with pytest.raises(ValueError, match="1 <= k"):
        compare_estimators(vlm, clean, corr, metric, hooks=["blocks.0.hook_resid_pre"], k=1000)
    longer = PatchInput(vlm.build([vlm_item(0, "Is there a bird in the image today?")]).to("cpu"), clean.features)
    with pytest.raises(ValueError, match="aligned positions"):
        compare_estimators(vlm, longer, corr, metric)
