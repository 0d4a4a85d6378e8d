"""The results pages (issue 17), without a browser: one self-contained file, tables holding the
CSV's numbers, the gallery, the page builder's checks and `python -m interp.report`'s bad input.
The browser test is tests/test_report_browser.py (integration)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import plotly.graph_objects as go
import pytest
from plotly.offline import get_plotlyjs

from interp.io import read_csv
from interp.pages import Card, Column, Gallery, Page, Plot, Section, Table, Text, render
from interp.pages.render import inline_script
from interp.report import main as report_main
from interp.studies.alignment import page as alignment_page
from interp.studies.inside import page as inside_page
from interp.studies.task_vectors import page as task_vectors_page
from interp.studies.taxonomy import page as taxonomy_page
from interp.studies.taxonomy.gallery import pick_questions
from interp.studies.taxonomy.tables import headline_rows, read_results
from page_helpers import make_taxonomy_run, network_urls, parse_page

ROOT = Path(__file__).resolve().parents[1]
INSIDE = ROOT / "figures" / "out" / "inside-gemma"  # real runs' tables (committed)
TASK_VECTORS = ROOT / "figures" / "out" / "task_vectors"
ALIGNMENT = ROOT / "figures" / "out" / "alignment"


@pytest.fixture(scope="module")
def taxonomy_run(tmp_path_factory):
    out = make_taxonomy_run(tmp_path_factory.mktemp("taxonomy") / "run")
    page = taxonomy_page.write_report_page(out)
    return out, page.read_text()


def test_the_page_loads_nothing_from_the_network_and_inlines_plotly_once(taxonomy_run):
    out, html = taxonomy_run
    page = parse_page(html)
    assert network_urls(page) == []  # every src/href is an #anchor or a data: URI
    assert all(v.startswith("data:image/jpeg;base64,") for t, a, v in page.urls if t == "img")
    assert "<link" not in html and "<iframe" not in html
    assert html.count(get_plotlyjs()[:400]) == 1  # the bundle once, whatever the number of figures
    assert set(page.figures) >= {"f1_vs_deprivation", "f1_vs_coherence", "f1_by_depth",
                                 "learning_lm-original-100pct-s42"}
    assert len(html) < 8e6


def test_the_per_hypernym_table_holds_the_csv(taxonomy_run):
    out, html = taxonomy_run
    page = parse_page(html)
    csv_rows = read_csv(out / "results.csv", {})  # the cells as written
    cells = page.tables["per_hypernym"]
    header = page.headers["per_hypernym"]
    assert len(cells) == len(csv_rows)
    for key in ("f1", "chance_f1", "yes_rate", "n", "depth"):
        col = [c.key for c in taxonomy_page.RESULT_TABLE_COLUMNS].index(key)
        assert [row[col][1] for row in cells] == [r[key] for r in csv_rows], key
    f1 = header.index("F1")
    assert [row[f1][0] for row in cells] == [f"{float(r['f1']):.1f}" for r in csv_rows]
    assert [row[0][0] for row in cells] == [r["run_id"] for r in csv_rows]


def test_the_headline_table_holds_the_aggregates_and_published_numbers(taxonomy_run):
    out, html = taxonomy_run
    cells = parse_page(html).tables["headline"]
    want = headline_rows(read_results(out / "results.csv"))
    assert [(r[0][0], r[1][0]) for r in cells] == [(w["condition"], w["ablation"]) for w in want]
    keys = [c.key for c in taxonomy_page.HEADLINE_COLUMNS]
    for row, w in zip(cells, want):
        for key in ("unseen", "chance", "seen", "leaf"):
            assert float(row[keys.index(key)][1]) == pytest.approx(w[key][0], abs=1e-12)
        mean, half = w["unseen"][:2]
        assert row[keys.index("unseen")][0] == f"{mean:.1f} ± {half:.1f}"
    published = {r[0][0]: r[keys.index("published")][0] for r in cells}
    assert published["original"] == "74.1" and published["across"] == "46.4"  # the brief's 100% column


def test_the_gallery_shows_right_and_wrong_seen_and_unseen(taxonomy_run):
    out, html = taxonomy_run
    cards = parse_page(html).cards
    assert 0 < len(cards) <= 200
    assert {c["data-split"] for c in cards} == {"seen", "unseen"}
    assert {c["data-result"] for c in cards} == {"right", "wrong"}
    assert {c["data-hypernym"] for c in cards} == {"animal", "bird", "food", "fruit"}
    assert any(c["img"] is None for c in cards)  # the missing file: a placeholder, not a broken image
    assert all(c["img"].startswith("data:image/jpeg;base64,") for c in cards if c["img"] is not None)
    assert all(("good" in c["class"]) == (c["data-result"] == "right") for c in cards)
    # the gallery shows the pretrained original-world run
    assert "lm-original-100pct-s42" in html.split('id="gallery-answers"')[1][:400]


def test_pick_questions_spreads_over_hypernyms_and_strata():
    scores = [{"kind": "hypernym", "hypernym": h, "seen": s, "answer": a, "score": sc, "image": i}
              for i in range(40) for h in ("a", "b") for s in ("True", "False") for a, sc in (("Yes", 1.0), ("No", 1.0))]
    picked = pick_questions(scores, 8)
    assert len(picked) == 8
    assert {p["hypernym"] for p in picked} == {"a", "b"}
    assert len({(p["hypernym"], p["seen"], (p["score"] > 0) == (p["answer"] == "Yes")) for p in picked}) == 8
    assert len({p["image"] for p in picked}) == 8  # new images first
    assert pick_questions(scores, 10_000) and len(pick_questions(scores, 10_000)) == len(scores)


def test_a_run_without_images_csv_gets_a_note_not_a_gallery(tmp_path):
    out = make_taxonomy_run(tmp_path / "run", images=False)
    html = taxonomy_page.write_report_page(out).read_text()
    assert "no images.csv" in html and parse_page(html).cards == []


def test_the_inside_page_from_a_real_run_holds_its_tables(tmp_path):
    out = tmp_path / "inside"
    shutil.copytree(INSIDE, out)
    assert inside_page.is_run_dir(out) and not taxonomy_page.is_run_dir(out)
    html = inside_page.write_report_page(out).read_text()
    page = parse_page(html)
    assert network_urls(page) == []
    assert set(page.figures) >= {"probes", "directions", "steering", "lens_ranks", "similarity", "umap",
                                 "patching_exact", "patching_attribution", "patching_agreement"}
    probes = read_csv(out / "probes.csv")
    best = {}
    for r in probes:
        key = (r["hypernym"], r["probe"])
        best[key] = max(best.get(key, -1.0), r["balanced_accuracy"])
    header = page.headers["per_hypernym"]
    col = header.index("text->image probe (best)")
    shown = {row[0][0]: float(row[col][1]) for row in page.tables["per_hypernym"]}
    assert shown == {h: v for (h, p), v in best.items() if p == "text->image"}
    summary = {r[0][0]: r for r in page.tables["probes_summary"]}
    assert set(summary) == {"text", "image", "last", "text->image", "image->text"}
    assert "python -m interp.analyze runs/quick/runs/lm-original-100pct-s42/projector.safetensors" in html


def test_the_task_vector_page_from_a_real_run_holds_its_tables(tmp_path):
    out = tmp_path / "tv"
    shutil.copytree(TASK_VECTORS, out)
    assert task_vectors_page.is_run_dir(out) and not taxonomy_page.is_run_dir(out)
    html = task_vectors_page.write_report_page(out).read_text()
    page = parse_page(html)
    assert network_urls(page) == []
    assert {"cosine_control", "examples_text", "examples_image"} <= set(page.figures)
    assert any(f.startswith("layers_") for f in page.figures)
    rows = read_csv(out / "results.csv", {})
    em = [c.key for c in task_vectors_page.TEST_COLUMNS].index("em")
    assert [r[em][1] for r in page.tables["per_task"]] == [r["em"] for r in rows]
    head = {r[0][0]: r for r in page.tables["headline"]}
    header = page.headers["headline"]
    want = {(r["task"], r["target"]): float(r["em"]) for r in rows if r["method"] == "text_examples"}
    for (task, target), v in want.items():
        assert float(head["patch: text examples"][header.index(f"{task} ({target})")][1]) == v
    assert head["patch: text examples"][header.index("published image")][0] == "0.51"


def test_the_alignment_page_from_a_real_runs_tables(tmp_path):
    out = tmp_path / "alignment"
    shutil.copytree(ALIGNMENT, out)
    assert not alignment_page.is_run_dir(out)  # the committed copy has no config.json
    (out / "config.json").write_text(json.dumps({"config": {"name": "alignment_quick", "split": {"seeds": [0, 1, 2]},
                                                            "head": {}, "models": {"score_layer": -1}},
                                                 "source": "experiments/alignment_quick.toml"}))
    assert alignment_page.is_run_dir(out) and not taxonomy_page.is_run_dir(out)
    html = alignment_page.write_report_page(out).read_text()
    page = parse_page(html)
    assert network_urls(page) == []
    assert {"score_by_layer_concept", "score_vs_lm_only_hypernym"} <= set(page.figures)
    scores = read_csv(out / "scores.csv", {})
    top1 = [c.key for c in alignment_page.SCORE_COLUMNS].index("top1")
    assert [r[top1][1] for r in page.tables["headline"]] == [s["top1"] for s in scores]
    assert len(page.tables["per_layer"]) == len(read_csv(out / "summary.csv"))
    assert "python -m interp.alignment experiments/alignment_quick.toml" in html


def test_column_cells_format_and_keep_the_exact_value():
    assert Column("f", fmt=".1f").cell(0.123456789).value == "0.123456789"
    assert Column("f", fmt=".1f").cell(0.123456789).text == "0.1"
    assert Column("f", fmt=".1f").cell(float("nan")).text == "-" and Column("f").cell(None).value == ""
    assert Column("f", fmt=".1f", interval=True).cell((2.0, 0.55, 3)).text == "2.0 ± 0.6"
    assert Column("f", fmt=".1f", interval=True).cell((2.0, float("nan"), 1)).text == "2.0"
    assert Column("t").cell("<b>").text == "<b>" and Column("t").cell(True).value == ""
    # an infinite ratio sorts as a number in the page's script (parseFloat("inf") is NaN there)
    assert Column("r").cell(float("inf")).value == "Infinity" and Column("r").cell(float("-inf")).value == "-Infinity"
    assert Column("r", interval=True).cell((float("inf"), 0.0, 2)).value == "Infinity"
    assert Column("n").cell(3).value == "3"


def test_the_page_escapes_text_and_refuses_bad_blocks():
    page = Page("a <script>", [Section("s", [Text(["x < y & <img src=http://x>"]),
                                             Table("t", [Column("a")], [{"a": "<i>"}])])])
    html = render(page)
    assert "<img src=http://x>" not in html and "&lt;img src=http://x&gt;" in html and "&lt;i&gt;" in html
    assert "Plotly" not in html  # no figure: no plotly.js
    with pytest.raises(ValueError, match="used twice"):
        render(Page("p", [Section("s", [Plot("x", go.Figure()), Table("x", [Column("a")], [])])]))
    with pytest.raises(ValueError, match="tag keys"):
        Gallery("g", [Card(None, "t", tags=(("Bad Key", "v"),))])
    assert "</script" not in inline_script("a</script>b")


def test_report_command_rebuilds_the_page(taxonomy_run, capsys, monkeypatch):
    out, _ = taxonomy_run
    (out / "report.html").unlink()
    report_main([str(out), "--no-progress"])
    printed = capsys.readouterr().out
    assert (out / "report.html").exists() and "taxonomy page written" in printed and "--open" in printed
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    report_main([str(out), "--no-progress", "--open"])
    assert "no graphical browser here" in capsys.readouterr().out


@pytest.mark.parametrize("case,message", [
    ("missing", "no such folder"), ("file", "is a file, not a run folder"), ("empty", "not a study run folder"),
    ("bad-json", "unreadable run files"), ("broken-tables", "incomplete or damaged")])
def test_report_command_bad_input_is_one_line_and_exit_2(tmp_path, capsys, case, message):
    target = tmp_path / case
    if case == "file":
        target.write_text("x")
    elif case == "empty":
        target.mkdir()
    elif case == "bad-json":
        target.mkdir()
        (target / "results.csv").write_text("a\n")
        (target / "config.json").write_text("{not json")
    elif case == "broken-tables":
        make_taxonomy_run(target)
        (target / "results.csv").write_text("run_id,world\nx,original\n")  # columns missing
    with pytest.raises(SystemExit) as e:
        report_main([str(target), "--no-progress"])
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert err.count("\n") == 1 and message in err and str(target) in err and "Traceback" not in err


def test_report_command_dry_run_detects_the_study(taxonomy_run, capsys):
    out, _ = taxonomy_run
    with pytest.raises(SystemExit) as e:
        report_main([str(out), "--dry-run"])
    assert e.value.code == 0 and "a taxonomy run folder" in capsys.readouterr().err


def test_config_json_records_the_source(taxonomy_run):
    out, html = taxonomy_run
    assert json.loads((out / "config.json").read_text())["source"] in html
    assert f"python -m interp.report {out}" in html
