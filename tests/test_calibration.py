"""Answer calibration (interp.calibration) on a tiny random LM: like the study's random-init
control, it puts almost no mass on " Yes"/" No", so its Yes/No threshold is wherever the
random weights put it."""

import csv

import pytest
import torch

from conftest import make_vlm
from interp.calibration import calibrate_answer_bias, output_bias
from interp.examples import Example
from interp.scoring import score_examples
from interp.train_projector import TrainConfig, train_projector

WORDS = ["bird", "fish", "tool", "fruit", "vehicle", "item of clothing"]


def balanced(n: int = 24) -> list[Example]:
    """Image i asked about its own word (Yes) and the next word (No)."""
    out = []
    for i in range(n // 2):
        for shift, ans in ((0, "Yes"), (1, "No")):
            out.append(Example(i % 6, f"Is there a {WORDS[(i + shift) % 6]} in the image?", ans, "leaf", "c",
                               WORDS[(i + shift) % 6]))
    return out


def features() -> torch.Tensor:
    return torch.randn(6, 16, 32, generator=torch.Generator().manual_seed(0))


def biased_vlm(lm, towards: float):
    """A fresh projector whose output bias pushes every margin far from 0 (by ``towards``)."""
    vlm = make_vlm(lm, seed=2)
    ex, feats = balanced(), features()
    from interp.calibration import margin_gradient

    g = margin_gradient(vlm, feats, ex)
    with torch.no_grad():
        output_bias(vlm.projector).add_(towards * g / g.norm())
    return vlm


def test_calibration_centres_the_margins_and_moves_only_the_output_bias(tiny_gemma):
    vlm = biased_vlm(tiny_gemma, 50.0)
    ex, feats = balanced(), features()
    before = score_examples(vlm, feats, ex, progress=False)
    assert (before > 0).float().mean() > 0.9  # the failure calibration exists for: Yes to nearly everything
    params = {k: v.detach().clone() for k, v in vlm.projector.named_parameters()}
    res = calibrate_answer_bias(vlm, feats, ex)
    assert res["applied"] and res["answer_mass"] < 0.5
    after = score_examples(vlm, feats, ex, progress=False)
    assert abs(float(after.median())) < abs(float(before.median())) / 10
    assert 25 <= res["yes_rate_after"] <= 75 and res["yes_rate_before"] > 90
    assert res["median_margin_after"] == pytest.approx(float(after.median()), abs=1e-5)
    changed = [k for k, v in vlm.projector.named_parameters() if not torch.equal(v, params[k])]
    assert changed == ["net.2.bias"]


def test_calibration_is_skipped_when_the_lm_puts_its_mass_on_the_answers(tiny_gemma):
    vlm = biased_vlm(tiny_gemma, 50.0)
    params = [p.detach().clone() for p in vlm.projector.parameters()]
    res = calibrate_answer_bias(vlm, features(), balanced(), mass_floor=0.0)
    assert not res["applied"] and res["shift_norm"] == 0.0
    assert all(torch.equal(a, b) for a, b in zip(params, vlm.projector.parameters()))
    with pytest.raises(ValueError, match="at least one question"):
        calibrate_answer_bias(vlm, features(), [])


def test_trainer_calibrates_at_the_end_and_records_it(tiny_gemma, tmp_path):
    monitor = lambda: {"heldout_leaf_f1": 50.0, "token_cosine": 0.2}  # noqa: E731
    cfg = TrainConfig(epochs=1, batch_size=4, eval_every=3, seed=3, calibrate_images=6)
    vlm = make_vlm(tiny_gemma, seed=1)
    summary = train_projector(vlm, features(), balanced(), cfg, tmp_path / "r", progress=False, monitor=monitor,
                              calibrate=balanced(12))
    cal = summary["calibration"]
    assert cal["applied"] and cal["n_questions"] == 12 and cal["diagnostics"][0]["step"] == summary["steps"]
    rows = list(csv.DictReader(open(tmp_path / "r" / "diagnostics.csv")))
    assert rows[-1]["stage"] == "calibrated" and rows[-1]["step"] == str(summary["steps"])
    # the saved projector is the calibrated one
    from interp.projector import Projector

    saved, _ = Projector.load(tmp_path / "r" / "projector.safetensors")
    assert torch.equal(saved.state_dict()["net.2.bias"], vlm.projector.state_dict()["net.2.bias"])
    with pytest.raises(ValueError, match="calibrate_images=-1"):
        TrainConfig(calibrate_images=-1)


def test_per_hypernym_rows_score_pairs_without_a_threshold():
    """``pairwise``: the true question's margin above its distractor's for the same image, per
    group; it ignores where the Yes/No threshold sits, the F1 does not."""
    from interp.studies.taxonomy.run import RunSpec, per_hypernym_rows

    ex = []
    for img in range(4):
        ex += [Example(img, "Is there a robin?", "Yes", "leaf", "robin", "robin"),
               Example(img, "Is there a trout?", "No", "leaf", "robin", "trout"),
               Example(img, "Is there a bird?", "Yes", "hypernym", "robin", "bird", "bird", 1, False),
               Example(img, "Is there a fish?", "No", "hypernym", "robin", "fish", "bird", 1, False)]
    # every margin positive (Yes to all: F1 at its floor); true above distractor for 3 of 4 images
    scores = torch.tensor([s for img in range(4) for s in (5.0, 1.0, 3.0 if img else 0.5, 2.0)])
    rows = {r["hypernym"]: r for r in per_hypernym_rows(ex, scores, RunSpec("original", "random:1.0", 0), {})}
    assert rows["<leaf>"]["pairwise"] == 100.0 and rows["bird"]["pairwise"] == 75.0
    assert rows["<leaf>"]["yes_rate"] == 1.0 and rows["<leaf>"]["f1"] < 50
