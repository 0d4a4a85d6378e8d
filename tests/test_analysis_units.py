"""Analysis primitives on synthetic data with known answers."""

import numpy as np
import pytest
import torch

from interp.analysis.directions import cosine_per_layer, mean_difference, steering_hook
from interp.analysis.lens import logit_lens
from interp.analysis.probes import probe_layers, transfer_layers
from interp.analysis.similarity import linear_cka, rsa


def test_probe_finds_signal_only_where_it_is():
    g = torch.Generator().manual_seed(0)
    y = np.array([0, 1] * 30)
    noise = torch.randn(60, 8, generator=g)
    signal = noise.clone()
    signal[:, 0] += torch.tensor(y * 4.0, dtype=torch.float)
    acc = probe_layers(torch.stack([noise, signal]), y)
    assert acc[0] < 0.75 and acc[1] >= 0.9
    tr = transfer_layers(torch.stack([signal]), y, torch.stack([signal + 0.1]), y)
    assert tr[0] > 0.95


def test_mean_difference_and_cosine():
    acts = torch.zeros(2, 4, 3)
    acts[:, :2, 0] = 1.0
    d = mean_difference(acts, torch.tensor([1, 1, 0, 0]))
    assert torch.allclose(d, torch.tensor([[1.0, 0, 0], [1.0, 0, 0]]))
    assert torch.allclose(cosine_per_layer(d, -d), torch.tensor([-1.0, -1.0]))
    with pytest.raises(ValueError):
        mean_difference(acts, torch.ones(4))
    h = steering_hook(torch.tensor([2.0, 0, 0]), torch.tensor([[True, False]]), alpha=3.0)
    out = h(torch.zeros(1, 2, 3), None)
    assert torch.allclose(out[0, 0], torch.tensor([3.0, 0, 0])) and out[0, 1].abs().sum() == 0


def test_cka_and_rsa():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(20, 5, generator=g)
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=g))
    assert linear_cka(x, x @ q) == pytest.approx(1.0, abs=1e-6)  # rotation invariant
    assert rsa(x, 3 * x) == pytest.approx(1.0)
    assert linear_cka(x, torch.randn(20, 5, generator=g)) < 0.6


def test_logit_lens_ranks(tiny_llama):
    lm = tiny_llama
    resid = torch.randn(3, 4, lm.d_model, generator=torch.Generator().manual_seed(0))  # not the suite's RNG state
    out = logit_lens(lm, resid, top_k=3, targets=[5, 7], chunk=5)
    logits = lm.unembed(lm.final_norm(resid))
    assert torch.equal(out["top_ids"], logits.topk(3, -1).indices)
    assert torch.equal(out["ranks"][..., 0], (logits > logits[..., 5:6]).sum(-1))


def test_concept_activations_shapes_and_text_span(tiny_gemma):
    from conftest import make_vlm
    from interp.analysis.collect import concept_activations

    vlm = make_vlm(tiny_gemma, pool_to=4)
    acts = concept_activations(vlm, ["robin", "hot_dog", "apple"], ["a robin", "a hot dog", "an apple"],
                               torch.randn(3, 16, 32), batch_size=2)
    L, d = tiny_gemma.n_layers, tiny_gemma.d_model
    assert acts.text.shape == acts.image.shape == acts.last.shape == (L, 3, d)
    # the text representation does not depend on the image features, the image one does
    acts2 = concept_activations(vlm, ["robin", "hot_dog", "apple"], ["a robin", "a hot dog", "an apple"],
                                torch.randn(3, 16, 32), batch_size=3)
    assert torch.allclose(acts.text, acts2.text, atol=1e-5) and not torch.allclose(acts.image, acts2.image)


def test_rank_counting_equals_broadcast_comparison_with_ties():
    from interp.analysis.lens import count_above

    g = torch.Generator().manual_seed(0)
    for rows, vocab, k in [(7, 1000, 5), (3, 50, 20), (4, 300, 1)]:
        logits = torch.randn(rows, vocab, generator=g).round(decimals=1)  # many ties
        values = logits.gather(1, torch.randint(0, vocab, (rows, k), generator=g))
        expected = (logits.unsqueeze(1) > values.unsqueeze(-1)).sum(-1)
        assert torch.equal(count_above(logits, values), expected)


def test_balanced_accuracy_probes_are_class_weighted():
    """A rare membership label (12 of 400) with a real signal: the unweighted probe predicts the
    majority and scores chance; the default probe for balanced accuracy finds the signal."""
    import numpy as np

    from interp.analysis.probes import probe_layers

    g = torch.Generator().manual_seed(0)
    y = np.zeros(400, dtype=bool)
    y[:12] = True
    x = torch.randn(1, 400, 64, generator=g)
    x[0, :12, :8] += 1.5
    weighted = probe_layers(x, y, scoring="balanced_accuracy")[0]
    plain = probe_layers(x, y, scoring="balanced_accuracy", class_weight=None)[0]
    assert weighted > 0.75 and weighted > plain + 0.15, (weighted, plain)
