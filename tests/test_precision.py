"""GPU readiness checked on CPU: the dtype and device options (``model.dtype``, ``model.device``,
``precision``) drive the same code the GPU set-up runs (frozen LM held in bf16, bf16 autocast,
fp32 projector and optimizer state), here in float32 vs bfloat16 on the CPU:

- a study run configured with ``model.dtype = "bfloat16"`` trains and scores through
  ``interp.studies.taxonomy.jobs.run_spec`` (the CLI's path), and re-scoring an fp32-trained run with the
  LM in bf16 gives nearly the same scores;
- scoring and caching with a bf16-held LM and an fp32 projector;
- the embedded default (gemma-3-270m) under bf16 autocast and with the LM held in bf16:
  answer loss and Yes-No margins close to float32's; on ``cuda`` too (with the projector
  gradient of a training step) when a GPU is present (skipped here).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from conftest import make_vlm
from interp.examples import Example, QuestionTokens, example_batch
from interp.train_projector import answer_ce_sum, autocast, resolve_precision

ROOT = Path(__file__).resolve().parents[1]
QUICK = ROOT / "experiments" / "quick.toml"
# one run of the embedded study, tiny LM, 6 concepts
TINY = ["data.max_concepts=6", "model.lm='tiny-llama'", "model.pool_to=1", "train.epochs=2.0", "train.batch_size=8",
        "train.max_steps=1000",  # the preset's fine-tuning is off (max_steps = 0); here it must run
        "grid.worlds=('original',)", "grid.control_ablations=()", "eval.lm_only=False", "eval.batch_size=32",
        "prototypes.refine_steps=100"]
WORDS = ["bird", "fish", "musical instrument", "vegetable", "item of clothing", "tool", "vehicle", "fruit"]


def _cfg(out: Path, dtype: str):
    from interp.studies.taxonomy.config import load_config
    from interp.sweep import parse_overrides

    return load_config(QUICK, parse_overrides(TINY + [f"model.dtype='{dtype}'"], str(out)))


def _scores(run_dir: Path) -> torch.Tensor:
    import csv

    with open(run_dir / "scores.csv") as f:
        return torch.tensor([float(r["score"]) for r in csv.DictReader(f)])


@pytest.fixture(scope="module")
def embedded_ok():
    from interp.data.images import verify

    ok, why = verify()
    if not ok:
        pytest.skip(f"embedded image set not built ({why}): run `python -m interp.data.build`")


def _run(cfg):
    from interp.studies.taxonomy.run import grid_runs
    from interp.studies.taxonomy.jobs import run_spec

    (spec,) = grid_runs(cfg)
    return spec, run_spec(cfg, spec, progress=False)


@pytest.mark.integration
def test_study_run_from_config_in_bf16_and_rescoring(embedded_ok, tmp_path):
    """``model.dtype = "bfloat16"`` (what paper.toml sets for the GPU) through the CLI's path:
    the LM is held in bf16, training picks bf16 autocast with fp32 projector weights, the
    test questions are scored; an fp32-trained projector re-scored with the LM in bf16 keeps
    its decisions."""
    from interp.io import read_json
    from interp.studies.taxonomy.run import evaluate_run_dir

    spec, rows32 = _run(_cfg(tmp_path / "fp32", "float32"))
    _, rows16 = _run(_cfg(tmp_path / "bf16", "bfloat16"))
    d32, d16 = (tmp_path / w / "runs" / spec.run_id for w in ("fp32", "bf16"))
    t32, t16 = read_json(d32 / "train.json"), read_json(d16 / "train.json")
    assert (t32["precision"], t32["lm_dtype"]) == ("float32", "float32")
    assert (t16["precision"], t16["lm_dtype"]) == ("bfloat16-autocast", "bfloat16")
    assert t16["steps"] == t32["steps"] >= 4
    assert all(torch.isfinite(torch.tensor(t16["losses"])))
    assert t16["losses"] != t32["losses"]  # the bf16 path really ran
    assert t16["losses"][0] == pytest.approx(t32["losses"][0], rel=0.05)
    assert sorted(r["hypernym"] for r in rows16) == sorted(r["hypernym"] for r in rows32) and rows32

    # re-score the fp32-trained run with the LM held in bf16
    rescored = tmp_path / "rescore" / "runs" / spec.run_id
    shutil.copytree(d32, rescored)
    for name in ("rows.json", "scores.csv"):
        (rescored / name).unlink()
    evaluate_run_dir(_cfg(tmp_path / "rescore", "bfloat16"), spec.run_id, progress=False)
    s32, s16 = _scores(d32), _scores(rescored)
    assert len(s16) == len(s32) > 20 and torch.isfinite(s16).all()
    assert not torch.equal(s16, s32)
    assert torch.corrcoef(torch.stack([s32, s16]))[0, 1] > 0.95
    close_calls = s32.abs() < 0.05 * s32.abs().max()  # decisions within bf16 noise of the threshold
    agree = ((s32 > 0) == (s16 > 0)) | close_calls
    assert agree.float().mean() > 0.95


@pytest.mark.integration
def test_bf16_lm_with_fp32_projector_scores_and_caches(tiny_llama):
    """A frozen LM held in bf16 with an fp32 projector (no autocast: the scoring path): image
    rows are cast to the LM's dtype, caches are bf16, logits are close to the fp32 LM's."""
    from interp.models.hooked import HookedLM
    from interp.models.lm import load_lm
    from interp.sequence import vlm_item

    lm16 = HookedLM(load_lm("tiny-llama", seed=0, dtype=torch.bfloat16))
    v32, v16 = make_vlm(tiny_llama, seed=1), make_vlm(lm16, seed=1)
    assert lm16.dtype == torch.bfloat16 and all(p.dtype == torch.float32 for p in v16.projector.parameters())
    batch = v32.build([vlm_item(0, "Is there a bird in the image?"), vlm_item(1, "Is there a fish in the image?")])
    feats = torch.randn(2, 16, 32, generator=torch.Generator().manual_seed(0))
    assert v16.embed(batch, feats).dtype == torch.bfloat16
    _, cache = v16.run_with_cache(batch, feats, names=["blocks.2.hook_resid_post"])
    act = cache["blocks.2.hook_resid_post"]
    assert act.dtype == torch.bfloat16 and torch.isfinite(act.float()).all()
    ids = torch.tensor(tiny_llama.tokenizer.encode(" Yes No", add_special_tokens=False)[:2])
    l32 = v32.token_logits(batch, feats, ids).detach()
    l16 = v16.token_logits(batch, feats, ids).detach().float()
    assert not torch.equal(l16, l32)
    scale = float(l32.detach().abs().max())
    assert float((l16 - l32).abs().max()) < 0.05 * scale + 1e-3, (l16, l32)


def _devices() -> list:
    cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
    return ["cpu", pytest.param("cuda", marks=cuda)]


@pytest.mark.integration
@pytest.mark.parametrize("device", _devices())
def test_embedded_default_in_bf16(device, request):
    """gemma-3-270m with a fixed projector on real prompts: the answer loss and the Yes-No
    margins of the LM held in bf16 (auto precision: the GPU set-up) and of the fp32 LM under
    bf16 autocast (``precision="bfloat16"``) against float32. On CPU forward only (bf16
    backward through the LM takes ~60 s per step here; the tiny-LM tests train in bf16);
    on CUDA also the projector gradient of one training step."""
    from interp.scoring import yes_no_ids
    from interp.models.hooked import HookedLM
    from interp.models.lm import load_lm
    from interp.sequence import vlm_item
    from interp.vlm import HookedVLM

    dev = torch.device(device)
    lm32 = request.getfixturevalue("gemma") if device == "cpu" else HookedLM(load_lm("gemma-3-270m", device=device))
    lm16 = HookedLM(load_lm("gemma-3-270m", device=device, dtype=torch.bfloat16))
    assert resolve_precision(None, lm16.dtype, dev) == torch.bfloat16 and resolve_precision(None, lm32.dtype, dev) is None
    exs = [Example(i % 4, f"Is there a {WORDS[i]} in the image?", "Yes" if i % 2 else "No", "hypernym", "c", WORDS[i])
           for i in range(8)]
    feats = torch.randn(4, 49, 1280, generator=torch.Generator().manual_seed(0))
    ids = yes_no_ids(lm32.tokenizer).to(dev)

    def run(lm, amp):
        vlm = HookedVLM(lm, HookedVLM.new_projector(lm, "efficientnet-lite0", 1280, 49, pool_to=1, seed=0))
        with autocast(dev, amp):
            batch, f = example_batch(QuestionTokens(lm.tokenizer), exs, feats, vlm.n_image_tokens, with_answer=True)
            ce, n = answer_ce_sum(vlm, batch.to(dev), f)
            with torch.no_grad():
                q = vlm.build([vlm_item(e.image, e.question) for e in exs])
                logits = vlm.token_logits(q, feats, ids).float()
        grad = None
        if dev.type == "cuda":
            (ce / n).backward()
            assert all(p.grad.dtype == torch.float32 for p in vlm.projector.parameters())
            grad = torch.cat([p.grad.flatten() for p in vlm.projector.parameters()]).float().cpu()
        return float(ce.detach() / n), (logits[:, 0] - logits[:, 1]).cpu(), grad

    loss32, m32, g32 = run(lm32, None)
    assert float(m32.std()) > 0.1  # the margins vary across questions: the comparison has something to match
    for loss, m, g in (run(lm32, torch.bfloat16), run(lm16, resolve_precision(None, lm16.dtype, dev))):
        assert torch.isfinite(m).all() and not torch.equal(m, m32)  # the bf16 path really ran
        assert loss == pytest.approx(loss32, rel=0.05)
        assert torch.corrcoef(torch.stack([m, m32]))[0, 1] > 0.9
        if g is not None:
            assert torch.isfinite(g).all() and float(torch.nn.functional.cosine_similarity(g, g32, dim=0)) > 0.8
