"""The binding study's results page (issue 17), without a browser and without a model: built
from the committed quick-preset tables (figures/out/binding/) and from tiny hand-written
tables over two seeds; one self-contained file whose tables hold the CSV's numbers."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import pytest
from plotly.offline import get_plotlyjs

from interp.io import read_csv
from interp.metrics import mean_ci
from interp.report import detect
from interp.report import main as report_main
from interp.studies.alignment import page as alignment_page
from interp.studies.binding import page as binding_page
from interp.studies.binding.config import load_config
from interp.studies.inside import page as inside_page
from interp.studies.task_vectors import page as task_vectors_page
from interp.studies.taxonomy import page as taxonomy_page
from page_helpers import network_urls, parse_page

ROOT = Path(__file__).resolve().parents[1]
BINDING = ROOT / "figures" / "out" / "binding"  # the quick preset's tables (committed, without config.json)


def _config_json(out: Path, overrides: dict | None = None) -> dict:
    cfg = load_config(ROOT / "experiments" / "binding_quick.toml", overrides)
    rec = {"config": cfg.to_dict(), "hash": cfg.hash, "result_hash": cfg.result_hash,
           "source": "experiments/binding_quick.toml", "environment": {"python": "3.11.7",
                                                                      "packages": {"torch": "2.13.0"}}}
    (out / "config.json").write_text(json.dumps(rec))
    return rec["config"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("binding") / "run"
    shutil.copytree(BINDING, out)
    assert not binding_page.is_run_dir(out)  # the committed copy has no config.json
    _config_json(out)
    page = binding_page.write_report_page(out)
    return out, page.read_text()


def _cell(page, table: str, header: str, row: int) -> tuple[str, str | None]:
    return page.tables[table][row][page.headers[table].index(header)]


def test_the_binding_folder_is_recognised_as_binding_only(quick_run):
    out, _ = quick_run
    assert binding_page.is_run_dir(out) and detect(out).name == "binding"
    for other in (taxonomy_page, inside_page, task_vectors_page, alignment_page):
        assert not other.is_run_dir(out)


def test_the_page_is_self_contained_and_has_the_figures(quick_run):
    _, html = quick_run
    page = parse_page(html)
    assert network_urls(page) == []
    assert "<link" not in html and "<iframe" not in html
    assert html.count(get_plotlyjs()[:400]) == 1
    assert set(page.figures) == {"headline_accuracy", "accuracy", "interchange", "symbolic_share", "knockout",
                                 "probes", "training"}
    assert len(html) < 8e6


def test_the_headline_holds_the_accuracy_the_brief_the_chance_and_the_flag(quick_run):
    out, html = quick_run
    page = parse_page(html)
    acc = read_csv(out / "accuracy.csv")
    rows = {r[0][0]: i for i, r in enumerate(page.tables["headline"])}
    assert list(rows) == ["phase1", "text", "noise-text", "image-text", "noise-image-text"]
    for regime, i in rows.items():
        id_acc = [r["acc"] for r in acc if r["regime"] == regime and r["set"] == "text@4"]
        ood = [sum(r["acc"] for r in acc if r["regime"] == regime and r["seed"] == s and r["set"] in ("text@6", "text@8"))
               / 2 for s in sorted({r["seed"] for r in acc})]
        assert float(_cell(page, "headline", "in distribution (%)", i)[1]) == pytest.approx(100 * mean_ci(id_acc)[0])
        assert float(_cell(page, "headline", "OOD mean (%)", i)[1]) == pytest.approx(100 * mean_ci(ood)[0])
        assert _cell(page, "headline", "chance in episode (%)", i)[0] == "25.0"
        assert _cell(page, "headline", "learned", i)[0] == "not learned"  # the quick preset learns nothing
    assert _cell(page, "headline", "brief, OOD (%)", rows["text"])[0] == "37.2"
    assert _cell(page, "headline", "brief, OOD (%)", rows["image-text"])[0] == "69.5"
    assert _cell(page, "headline", "brief, in distribution (%)", rows["text"])[0] == "~100"
    assert "Not learned: phase1, text, noise-text, image-text, noise-image-text" in html


def test_the_tables_hold_the_csvs_numbers(quick_run):
    out, html = quick_run
    page = parse_page(html)
    acc = read_csv(out / "accuracy.csv")  # one seed: each row is its own mean
    assert len(page.tables["per_set"]) == len(acc)
    shown = {(r[0][0], r[1][0]): float(r[page.headers["per_set"].index("accuracy (%)")][1])
             for r in page.tables["per_set"]}
    assert shown == pytest.approx({(r["regime"], r["set"]): 100 * r["acc"] for r in acc})
    inter = read_csv(out / "interchange.csv")
    col = page.headers["interchange_per_layer"].index("symbolic share")
    share = {(r[0][0], int(r[1][1])): r[col] for r in page.tables["interchange_per_layer"]}
    assert set(share) == {(r["regime"], r["layer"]) for r in inter}
    for r in inter:  # no symbolic or positional outcome at all: no share, shown as "-"
        text, value = share[(r["regime"], r["layer"])]
        assert (text, value) == ("-", None) if math.isnan(r["sym_share"]) else float(value) == r["sym_share"]
    assert len(page.tables["knockout_per_layer"]) == len(read_csv(out / "knockout.csv"))
    assert len(page.tables["probes_per_layer"]) == len(read_csv(out / "probes.csv"))
    train = read_csv(out / "training.csv")
    last = {r[0][0]: float(r[page.headers["training_last"].index("last loss")][1]) for r in page.tables["training_last"]}
    for regime, loss in last.items():
        rows = [r for r in train if r["regime"] == regime]
        assert loss == max(rows, key=lambda r: r["step"])["loss"]
    assert "python -m interp.binding experiments/binding_quick.toml" in html
    assert f"python -m interp.report {out}" in html  # the provenance carries both commands


def _write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_two_seeds_give_intervals_and_missing_mechanism_tables_are_left_out(tmp_path, capsys):
    out = tmp_path / "tiny"
    out.mkdir()
    cfg = _config_json(out, {"seeds": [0, 1], "regimes": ["text"], "eval.mechanisms": False})
    rows = []
    for seed, base in ((0, 0.95), (1, 0.99)):
        for regime in ("phase1", "text"):
            for n, drop in ((4, 0.0), (6, 0.3), (8, 0.5)):
                rows.append({"regime": regime, "seed": seed, "set": f"text@{n}", "kind": "text", "n": n, "size": 100,
                             "acc": round(base - drop - (0.1 if regime == "phase1" else 0.0), 3),
                             "acc_in_episode": 0.9, "chance_in_episode": 1 / n, "logp": -0.1})
    _write_csv(out / "accuracy.csv", rows)
    _write_csv(out / "training.csv", [{"regime": g, "seed": s, "step": k, "slot": "text", "loss": 2.0 / k, "acc": 0.5,
                                       "lr": 1e-3} for g in ("phase1", "text") for s in (0, 1) for k in (1, 2)])
    capsys.readouterr()
    report_main([str(out), "--no-progress"])  # python -m interp.report rebuilds it from the folder
    assert "binding page written" in capsys.readouterr().out
    html = (out / "report.html").read_text()
    page = parse_page(html)
    assert network_urls(page) == []
    assert "interchange_per_layer" not in page.tables and "interchange" not in page.figures
    text = {r[0][0]: r for r in page.tables["headline"]}["text"]
    id_cell = text[page.headers["headline"].index("in distribution (%)")]
    m, h, _ = mean_ci([0.95, 0.99])
    assert float(id_cell[1]) == pytest.approx(100 * m) and id_cell[0] == f"{100 * m:.1f} ± {100 * h:.1f}"
    assert text[page.headers["headline"].index("learned")][0] == "yes"
    assert text[page.headers["headline"].index("seeds")][0] == "2"
    assert "Not learned" not in html
    assert list(cfg["seeds"]) == [0, 1] and "2.13.0" in html  # provenance: the package versions
