"""Activation store (stream to disk, resume, lazy reductions) and steering by a direction."""

import pytest
import torch

from conftest import make_vlm
from interp.analysis.steering import hypernym_question, steering_table, yes_probability
from interp.analysis.store import ActivationStore, collect_to_store
from interp.sequence import vlm_item


def _batches(vlm, n_batches: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    prompts = ["Is there a bird in the image?", "What is this?", "Is it a fish?"]
    out = []
    for k in range(n_batches):
        b = vlm.build([vlm_item(j, prompts[(k + j) % 3]) for j in range(3)])
        out.append((b, torch.randn(3, 16, 32, generator=g)))
    return out


def test_store_streams_resumes_and_matches_in_memory_cache(tiny_llama, tmp_path):
    vlm = make_vlm(tiny_llama, pool_to=4)
    names = [f"blocks.{i}.hook_resid_post" for i in range(tiny_llama.n_layers)]
    batches = _batches(vlm, 3)
    store = ActivationStore.create(tmp_path / "s", names, meta={"model": "tiny"})
    collect_to_store(vlm, batches[:2], store, progress=False)  # "interrupted" after two batches
    reopened = ActivationStore.create(tmp_path / "s", names, meta={"model": "tiny"})
    assert len(reopened.shards) == 2
    collect_to_store(vlm, batches, reopened, progress=False)  # resumes with the third
    store = ActivationStore.open(tmp_path / "s")
    assert store.rows == 9 and len(store.shards) == 3 and store.nbytes() > 0
    name = names[-1]
    got = store.reduce(name, "image")
    last = store.reduce(name, "text", how="last")
    want, want_last = [], []
    for b, f in batches:
        _, cache = vlm.run_with_cache(b, f, names=[name], logits_at=None)
        want.append(cache.mean_over(name, "image"))
        want_last.append(cache.last(name, "text"))
    assert torch.allclose(got, torch.cat(want), atol=1e-5)
    assert torch.allclose(last, torch.cat(want_last), atol=1e-5)
    with pytest.raises(ValueError, match="other hook points"):
        ActivationStore.create(tmp_path / "s", names[:1])
    with pytest.raises(KeyError, match="not in this store"):
        next(store.iter_shards("blocks.0.hook_attn_out"))
    with pytest.raises(FileNotFoundError, match="no activation store"):
        ActivationStore.open(tmp_path / "nothing")


def test_steering_changes_p_yes_only_when_it_should(tiny_llama):
    vlm = make_vlm(tiny_llama, pool_to=4)
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(4, 16, 32, generator=g)
    qs = [hypernym_question("bird"), hypernym_question("animal")]
    base = yes_probability(vlm, feats, qs)
    assert base.shape == (4, 2) and bool(((base > 0) & (base < 1)).all())
    direction = torch.randn(tiny_llama.d_model, generator=g)
    zero = yes_probability(vlm, feats, qs, direction=direction, layer=0, alpha=0.0)
    assert torch.equal(zero, base)
    pushed = yes_probability(vlm, feats, qs, direction=direction, layer=0, alpha=50.0)
    assert (pushed - base).abs().max() > 1e-3, "the steering hook silently did nothing"
    assert hypernym_question("apple") == "Is there an apple in the image?"


def test_steering_table_rows(tiny_llama):
    vlm = make_vlm(tiny_llama, pool_to=4)
    g = torch.Generator().manual_seed(2)
    concepts = ["robin", "eagle", "salmon", "cod", "apple", "pear"]
    members = {"bird": {"robin", "eagle"}, "fish": {"salmon", "cod"}, "fruit": {"apple", "pear"}}
    dirs = {h: torch.randn(tiny_llama.d_model, generator=g) for h in members}
    rows = steering_table(vlm, torch.randn(6, 16, 32, generator=g), concepts, members, dirs, layer=1,
                          scales=[0.0, 1.0], resid_norm=10.0, n_controls=1)
    conds = {(r["hypernym"], r["scale"], r["condition"]) for r in rows}
    assert ("bird", 1.0, "target") in conds and ("bird", 1.0, "random-direction") in conds
    assert all(r["n"] >= 1 for r in rows)
    zero = [r for r in rows if r["scale"] == 0.0]
    assert all(abs(r["delta_p_yes"]) < 1e-6 for r in zero)
    assert any(abs(r["delta_p_yes"]) > 1e-4 for r in rows if r["scale"] == 1.0)
