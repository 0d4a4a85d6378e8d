"""End to end: the taxonomic study on a small slice of the embedded set with the small LM.

Checks the pipeline (data -> features -> train -> evaluate -> table/report/figures), the
skip of finished runs, the recorded provenance and the conditions; not the F1 values
(a few steps on 16 concepts cannot learn much)."""

import csv
import json
from pathlib import Path

import pytest

from interp.data.images import verify

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    ok, why = verify()
    if not ok:
        pytest.skip(f"embedded image set not built ({why}): run `python -m interp.data.build`")
    from interp.studies.taxonomy.config import load_config
    from interp.studies.taxonomy.run import run_study

    out = tmp_path_factory.mktemp("study")
    cfg = load_config(Path(__file__).resolve().parents[1] / "experiments" / "quick.toml", {
        "out_dir": str(out), "data.max_concepts": 16, "model.lm": "smollm2-135m", "model.pool_to": 4,
        "train.epochs": 1.0, "train.max_steps": 6, "grid.worlds": ("original", "across", "within"), "grid.ablations": ("random:0.5",),
        "grid.control_ablations": ("random:1.0",), "eval.lm_only_things": False,
        "prototypes.refine_steps": 100})  # the preset's 400 is for 456 concepts; 16 need fewer
    result = run_study(cfg, progress=False)
    return cfg, out, result


def test_outputs_exist(study):
    cfg, out, result = study
    rows = list(csv.DictReader(open(out / "results.csv")))
    runs = {r["run_id"] for r in rows}
    assert runs == {"lm-original-50pct-s42", "lm-across-50pct-s42", "lm-within-50pct-s42", "randlm-original-100pct-s42"}
    assert {r["split"] for r in rows} == {"all", "seen", "unseen"}
    assert all(0.0 <= float(r["f1"]) <= 100.0 for r in rows if r["f1"] != "nan")
    report = (out / "report.md").read_text()
    assert "| original |" in report and "Qwen3-0.6B original" in report and "LM-only" in report
    for stem in ("f1_vs_deprivation", "f1_vs_coherence", "f1_by_depth"):
        assert (out / "figures" / f"{stem}.html").exists()
        assert (out / "figures" / f"{stem}.png").stat().st_size > 1000
    assert result["lm_only"][0]["n_pairs"] > 0


def test_provenance_and_conditions(study):
    cfg, out, _ = study
    run = out / "runs" / "lm-across-50pct-s42"
    train = json.loads((run / "train.json").read_text())
    assert train["meta"]["config_hash"] == cfg.hash and train["meta"]["data_manifest"]
    assert train["environment"]["packages"]["torch"].startswith("2.13")
    cond = json.loads((run / "conditions.json").read_text())
    assert all(k != v for k, v in cond["mapping"].items())  # across: no concept keeps its own questions
    assert sorted(cond["mapping"]) == sorted(cond["mapping"].values())
    assert (run / "projector.safetensors").exists() and not (run / "checkpoint.pt").exists()
    # the run's learning history: the readout stage (monitored), then a few fine-tuning steps
    diag = list(csv.DictReader(open(run / "diagnostics.csv")))
    assert [d["stage"] for d in diag][0] == "readout" and diag[-1]["stage"] == "fine-tune"
    steps = [int(d["step"]) for d in diag]
    readout = train["meta"]["readout"]
    assert steps == sorted(set(steps)) and steps[-1] == readout["steps"] + 6
    assert len(readout["losses"]) == readout["steps"] and readout["diagnostics"][0]["step"] == 0
    learning = {r["run_id"]: r for r in csv.DictReader(open(out / "learning.csv"))}
    assert int(learning[run.name]["readout_steps"]) == readout["steps"] and int(learning[run.name]["steps"]) == 6


def test_rerun_skips_finished_runs(study):
    from interp.studies.taxonomy.run import run_study

    cfg, out, result = study
    written = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/*") if p.is_file()}
    assert any(p.name == "projector.safetensors" for p in written)
    again = run_study(cfg, progress=False)
    assert again["grid_unseen"] == result["grid_unseen"]
    # no training the second time: no run file is rewritten
    assert {p: p.stat().st_mtime_ns for p in written} == written
