"""The SAE study's results page, without a browser and without a model: built from a small
hand-written SAE run folder (the real column names) and from the committed run's tables
(figures/out/sae-gemma/); one self-contained file whose tables hold the CSV's numbers, found
by `interp.report`'s detector as the SAE study's and by no other study's."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from plotly.offline import get_plotlyjs

from interp.io import read_csv
from interp.report import STUDIES, detect
from interp.report import main as report_main
from interp.studies.sae import page as sae_page
from page_helpers import make_sae_run, make_taxonomy_run, network_urls, parse_page

ROOT = Path(__file__).resolve().parents[1]
SAE_GEMMA = ROOT / "figures" / "out" / "sae-gemma"  # a real run's tables (committed, with config.json)
OTHER_RUNS = {name: ROOT / "figures" / "out" / folder for name, folder in (
    ("inside", "inside-gemma"), ("task_vectors", "task_vectors"), ("alignment", "alignment"), ("binding", "binding"))}


@pytest.fixture(scope="module")
def sae_run(tmp_path_factory):
    out = make_sae_run(tmp_path_factory.mktemp("sae") / "run")
    page = sae_page.write_report_page(out)
    return out, page.read_text()


def _column(page, table: str, header: str) -> list[tuple[str, str | None]]:
    i = page.headers[table].index(header)
    return [r[i] for r in page.tables[table]]


def test_the_sae_folder_is_recognised_as_sae_only(sae_run):
    out, _ = sae_run
    assert sae_page.is_run_dir(out) and detect(out).name == "sae"
    assert [s.name for s in STUDIES if s.is_run_dir(out)] == ["sae"]


def test_other_studies_folders_are_not_sae_folders(tmp_path):
    assert not sae_page.is_run_dir(make_taxonomy_run(tmp_path / "taxonomy", images=False))
    for name, folder in OTHER_RUNS.items():
        copy = tmp_path / name
        shutil.copytree(folder, copy)
        (copy / "config.json").write_text(json.dumps({"config": {"name": name, "task": {"n_objects": 4}}}))
        assert not sae_page.is_run_dir(copy), name
    empty = tmp_path / "no-config"
    shutil.copytree(SAE_GEMMA, empty, ignore=shutil.ignore_patterns("config.json"))
    assert not sae_page.is_run_dir(empty)  # the tables alone do not say which study


def test_the_page_is_self_contained_and_has_the_figures(sae_run):
    _, html = sae_run
    page = parse_page(html)
    assert network_urls(page) == []
    assert "<link" not in html and "<iframe" not in html
    assert html.count(get_plotlyjs()[:400]) == 1
    assert set(page.figures) == {"headline_sharing", "quality", "sharing", "latent_map", "train_curve"}
    assert len(page.cards) == 8 and sum(c["img"] is None for c in page.cards) == 1  # the missing file: a placeholder


def test_the_headline_holds_each_layers_numbers_and_the_control(sae_run):
    out, html = sae_run
    page = parse_page(html)
    summary, sharing = read_csv(out / "summary.csv"), read_csv(out / "sharing.csv")
    assert [int(v) for _, v in _column(page, "headline", "layer")] == [r["layer"] for r in summary]
    assert [float(v) for _, v in _column(page, "headline", "explained variance")] == [
        r["explained_variance"] for r in summary]
    assert [float(v) for _, v in _column(page, "headline", "L0")] == [r["l0"] for r in summary]
    assert [float(v) for _, v in _column(page, "headline", "dead (%)")] == pytest.approx(
        [100 * r["dead_frac"] for r in summary])
    assert [float(v) for _, v in _column(page, "headline", "shared latents")] == [r["shared"] for r in sharing]
    assert [float(v) for _, v in _column(page, "headline", "shuffled (mean)")] == [
        r["shuffled_shared_mean"] for r in sharing]
    assert [t for t, _ in _column(page, "headline", "shuffled 95%")] == ["[2, 9]", "[2, 10]"]
    assert [float(v) for _, v in _column(page, "headline", "shared - shuffled")] == pytest.approx(
        [r["shared"] - r["shuffled_shared_mean"] for r in sharing])
    assert _column(page, "headline", "shared - shuffled")[0][0] == "+11.7"
    assert "above the shuffled control&#39;s 95% range at layer(s) 2." in html


def test_the_tables_hold_the_csvs_numbers(sae_run):
    out, html = sae_run
    page = parse_page(html)
    latents = read_csv(out / "latents.csv")
    assert [float(v) for _, v in _column(page, "latents", "total activation")] == [r["mass"] for r in latents]
    assert [t for t, _ in _column(page, "latents", "class")] == [r["class"] for r in latents]
    assert _column(page, "latents", "shared on (first 5)")[4][0] == "robin, eagle, apple, banana, shark (+1 more)"
    images = read_csv(out / "top_images.csv")
    assert [float(v) for _, v in _column(page, "top_images", "activation")] == [r["activation"] for r in images]
    tokens = read_csv(out / "top_tokens.csv", {})
    assert [t for t, _ in _column(page, "top_tokens", "token")] == [r["token"].strip() for r in tokens]
    assert _column(page, "top_tokens", "token")[0] == ("1", None)  # a token stays text
    curve = read_csv(out / "train_curve.csv")
    assert [float(v) for _, v in _column(page, "train_curve_points", "train FVU")] == [r["train_fvu"] for r in curve]
    assert [float(v) for _, v in _column(page, "per_layer", "loss recovered")] == [
        r["loss_recovered"] for r in read_csv(out / "summary.csv")]
    assert [int(v) for _, v in _column(page, "sharing_per_layer", "image-only")] == [
        r["image-only"] for r in read_csv(out / "sharing.csv")]


def test_the_provenance_has_the_commands_seeds_and_versions(sae_run):
    out, html = sae_run
    assert "python -m interp.sae experiments/sae_quick.toml --set=model.layers=[2,4]" in html
    assert f"python -m interp.report {out}" in html
    assert "eai-sparsify" in html and "1.3.3" in html and "2.13.0" in html
    assert "data 0, train 1, eval 2" in html


def test_report_command_rebuilds_the_sae_page(sae_run, capsys):
    out, _ = sae_run
    (out / "report.html").unlink()
    report_main([str(out), "--no-progress"])
    printed = capsys.readouterr().out
    assert (out / "report.html").exists() and "sae page written" in printed and "--open" in printed


def test_the_page_from_the_committed_runs_tables(tmp_path):
    out = tmp_path / "sae-gemma"
    shutil.copytree(SAE_GEMMA, out, ignore=shutil.ignore_patterns("report.html"))
    assert detect(out).name == "sae"
    page = parse_page(sae_page.write_report_page(out).read_text())
    assert network_urls(page) == []
    assert len(page.tables["latents"]) == len(read_csv(out / "latents.csv"))
    assert len(page.tables["top_tokens"]) == len(read_csv(out / "top_tokens.csv"))
    assert len(page.cards) == len(read_csv(out / "top_images.csv"))
    assert [int(t) for t, _ in _column(page, "headline", "shared latents")] == [
        r["shared"] for r in read_csv(out / "sharing.csv")]


def test_report_command_on_damaged_sae_tables_is_one_line_and_exit_2(tmp_path, capsys):
    out = make_sae_run(tmp_path / "run")
    (out / "latents.csv").write_text("layer,latent\n2,1\n")  # the class and concept counts are missing
    with pytest.raises(SystemExit) as e:
        report_main([str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "the sae tables are incomplete or damaged" in err
