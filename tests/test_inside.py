"""`python -m interp.analyze` end to end on the small embedded LM (fresh projector, few concepts)."""

import csv
import json

import pytest

from conftest import fresh_smollm_checkpoint

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, smollm):
    return fresh_smollm_checkpoint(tmp_path_factory, smollm, pool_to=1)


def test_analyze_writes_every_table_figure_and_report(checkpoint, tmp_path, capsys):
    from interp.analyze import main

    out = tmp_path / "inside"
    main([str(checkpoint), "--out", str(out), "--set", "max_concepts=80", "--set", "min_members=5",
          "--set", "folds=3", "--set", "steering_scales=0,2", "--set", "steering_hypernyms=2",
          "--set", "patch_clean=flamingo", "--set", "patch_corrupt=dolphin", "--set", "split=train"])
    for name in ("probes", "directions", "steering", "lens_ranks", "lens_top", "similarity", "umap", "patching"):
        assert (out / f"{name}.csv").exists(), name
    for fig in ("probes", "directions", "steering", "lens_ranks", "similarity", "umap", "patching_exact",
                "patching_attribution", "patching_agreement"):
        assert (out / f"{fig}.html").exists() and (out / f"{fig}.png").exists(), fig
    probes = list(csv.DictReader(open(out / "probes.csv")))
    hyps = {r["hypernym"] for r in probes}
    assert len(probes) == len(hyps) * 30 * 5  # SmolLM2: 30 layers x (text, image, last, 2 transfers)
    assert all(0.0 <= float(r["balanced_accuracy"]) <= 1.0 for r in probes)
    steer = list(csv.DictReader(open(out / "steering.csv")))
    assert {r["condition"] for r in steer} >= {"target", "random-direction"}
    report = (out / "report.md").read_text()
    for section in ("## Probes", "## Hypernym directions", "## Steering", "## Logit lens", "## Similarity", "## Patching"):
        assert section in report
    assert "attribution vs exact" in report
    # the figures redraw from the tables alone
    from interp.studies.inside.figures import figures

    assert len(figures(out)) >= 18
    # a partial re-run (one analysis) keeps what the others recorded
    main([str(checkpoint), "--out", str(out), "--only", "similarity", "--set", "max_concepts=80",
          "--set", "min_members=5", "--set", "split=train"])
    summary = json.loads((out / "summary.json").read_text())
    assert "patching" in summary and set(summary["seconds_by_analysis"]) >= {"probes", "patching", "similarity"}
    assert "## Patching" in (out / "report.md").read_text()


def test_analyze_bad_inputs(checkpoint, tmp_path, capsys):
    from interp.analyze import main
    from interp.studies.inside import InsideConfig

    with pytest.raises(ValueError, match="unknown analyses"):
        InsideConfig(checkpoint=str(checkpoint), analyses=("probes", "tarot"))
    # a missing checkpoint or a pickle: one line and exit 2, before any model loads (issue 18)
    pickled = tmp_path / "x.safetensors"
    pickled.write_bytes(b"\x80\x04K\x01.")
    for path, message in ((tmp_path / "missing.safetensors", "no projector checkpoint"),
                          (pickled, "pickles are refused")):
        with pytest.raises(SystemExit) as e:
            main([str(path), "--out", str(tmp_path)])
        assert e.value.code == 2 and message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(checkpoint), "--set", "nonsense=1"])
