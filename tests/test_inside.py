"""`python -m interp.analyze` end to end on the small embedded LM (fresh projector, few concepts),
and the image-token readouts (``image_lens``) on a tiny random LM (unit lane)."""

import csv
import json
import statistics

import pytest
import torch

from conftest import fresh_smollm_checkpoint, make_vlm
from interp.analysis.collect import ConceptActs, concept_activations
from interp.data.taxonomy import Taxonomy
from interp.io import write_csv, write_json
from interp.studies.inside import InsideConfig
from interp.studies.inside.analyses import (READOUTS, Context, answer_margins, causal, image_lens, lens_targets,
                                            most_specific_hypernym, patch_pair)
from interp.studies.inside.figures import build_figures
from interp.studies.inside.page import build_page, is_run_dir, write_report_page
from interp.studies.inside.report import findings
from page_helpers import parse_page


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, smollm):
    return fresh_smollm_checkpoint(tmp_path_factory, smollm, pool_to=1)


@pytest.mark.integration
def test_analyze_writes_every_table_figure_and_report(checkpoint, tmp_path, capsys):
    from interp.analyze import main

    out = tmp_path / "inside"
    main([str(checkpoint), "--out", str(out), "--set", "max_concepts=80", "--set", "min_members=5",
          "--set", "folds=3", "--set", "steering_scales=0,2", "--set", "steering_hypernyms=2",
          "--set", "patch_clean=flamingo", "--set", "patch_corrupt=dolphin", "--set", "split=train",
          "--set", "causal_hypernyms=2", "--set", "causal_pairs=2", "--set", "causal_min_gap=0"])
    for name in ("probes", "directions", "steering", "lens_ranks", "lens_top", "image_lens", "image_lens_first",
                 "similarity", "umap", "patching", "causal"):
        assert (out / f"{name}.csv").exists(), name
    for fig in ("probes", "directions", "steering", "lens_ranks", "image_lens_first", "similarity", "umap",
                "patching_exact", "patching_attribution", "patching_agreement", "causal"):
        assert (out / f"{fig}.html").exists() and (out / f"{fig}.png").exists(), fig
    probes = list(csv.DictReader(open(out / "probes.csv")))
    hyps = {r["hypernym"] for r in probes}
    assert len(probes) == len(hyps) * 30 * 5  # SmolLM2: 30 layers x (text, image, last, 2 transfers)
    assert all(0.0 <= float(r["balanced_accuracy"]) <= 1.0 for r in probes)
    steer = list(csv.DictReader(open(out / "steering.csv")))
    assert {r["condition"] for r in steer} >= {"target", "random-direction"}
    assert {r["direction"] for r in steer} == {"image", "text"}
    report = (out / "report.md").read_text()
    for section in ("## The answer", "**Answer:**", "## Probes", "## Hypernym directions", "## Steering",
                    "## Logit lens", "## Readouts of the image token", "## Similarity", "## Patching", "## Causal"):
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


@pytest.mark.integration
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


# ------------------------------------------------------------------ image_lens on a tiny random LM
HYPERNYMS = {"robin": ["bird", "animal"], "sparrow": ["bird", "animal"], "trout": ["fish", "animal"],
             "high heel": ["footwear", "clothing"], "sandal": ["footwear", "clothing"]}
DEPTHS = {"animal": 1, "bird": 2, "fish": 2, "clothing": 1, "footwear": 2}


def tiny_taxonomy() -> Taxonomy:
    pairs = [(c, h) for c, hs in HYPERNYMS.items() for h in hs]
    other = {"animal": "clothing", "bird": "footwear", "fish": "footwear", "clothing": "animal", "footwear": "bird"}
    return Taxonomy(list(HYPERNYMS), list(DEPTHS), pairs, {"bird": "animal", "fish": "animal", "footwear": "clothing",
                    "animal": None, "clothing": None}, DEPTHS, {p: other[p[1]] for p in pairs})


@pytest.fixture(scope="module")
def tiny_context(tiny_llama) -> Context:
    vlm = make_vlm(tiny_llama, n_tokens=4)
    tax = tiny_taxonomy()
    concepts = sorted(HYPERNYMS)
    feats = torch.randn(len(concepts), 4, 32, generator=torch.Generator().manual_seed(0))
    acts = concept_activations(vlm, concepts, [tax.phrase(c) for c in concepts], feats, batch_size=2)
    members = {h: set(tax.leaves_of(h)) for h in tax.hypernyms}
    return Context(vlm, tax, concepts, feats, acts, ["animal", "clothing"], members)


@pytest.fixture(scope="module")
def tiny_run(tiny_context, tmp_path_factory):
    """A look-inside folder holding only the image_lens tables (and summary.json) of the tiny context."""
    cfg = InsideConfig(checkpoint="tiny.safetensors", analyses=("image_lens",), image_lens_top_k=50,
                       image_lens_concepts=2, patchscope_batch=7)
    rows, first = image_lens(tiny_context, cfg)
    out = tmp_path_factory.mktemp("inside")
    write_csv(out / "image_lens.csv", rows)
    write_csv(out / "image_lens_first.csv", first)
    write_json(out / "summary.json", {"config": {"checkpoint": cfg.checkpoint, "analyses": ["image_lens"],
                                                 "image_lens_concepts": 2, "study_config": "x.toml"},
                                      "lm": "tiny-llama", "n_concepts": len(tiny_context.concepts),
                                      "hypernyms": tiny_context.hypernyms})
    return out, rows, first


def test_image_lens_targets_are_the_head_words_of_the_most_specific_hypernym(tiny_context):
    tax = tiny_context.taxonomy
    assert most_specific_hypernym(tax, "robin") == "bird" and most_specific_hypernym(tax, "high heel") == "footwear"
    heel = next(t for t in lens_targets(tiny_context) if t.concept == "high heel")
    assert (heel.word, heel.hypernym, heel.hypernym_word) == ("heel", "footwear", "footwear")
    tok = tiny_context.vlm.tokenizer
    assert heel.concept_id == tok(" heel", add_special_tokens=False)["input_ids"][0]


def test_image_lens_tables_have_one_row_per_concept_readout_modality_layer_target(tiny_run, tiny_context):
    out, rows, first = tiny_run
    n_layers, vocab = tiny_context.vlm.lm.n_layers, tiny_context.vlm.lm.vocab_size
    table = list(csv.DictReader(open(out / "image_lens.csv")))
    assert list(table[0]) == ["concept", "hypernym", "modality", "readout", "layer", "target", "rank", "score", "word"]
    keys = [(r["concept"], r["readout"], r["modality"], r["layer"], r["target"]) for r in table]
    assert len(keys) == len(set(keys)) == len(HYPERNYMS) * len(READOUTS) * 2 * n_layers * 2
    assert {r["readout"] for r in table} == set(READOUTS) and {r["modality"] for r in table} == {"image", "text"}
    assert all(0 <= int(r["rank"]) < vocab for r in table)
    assert {(r["concept"], r["hypernym"]) for r in table} == {(c, max(h, key=DEPTHS.get)) for c, h in HYPERNYMS.items()}
    head = list(csv.DictReader(open(out / "image_lens_first.csv")))
    assert list(head[0]) == ["concept", "hypernym", "modality", "readout", "target", "first_layer", "best_rank",
                             "top_k", "word"]
    assert len(head) == len(HYPERNYMS) * len(READOUTS) * 2 * 2
    for f in first:  # the first layer and best rank agree with the per-layer rows
        ranks = {r["layer"]: r["rank"] for r in rows if all(r[k] == f[k] for k in ("concept", "readout", "modality",
                                                                                    "target"))}
        assert len(ranks) == n_layers and f["best_rank"] == min(ranks.values())
        named = [layer for layer, rank in ranks.items() if rank < 50]
        assert f["first_layer"] == (min(named) if named else None)


def test_image_lens_wires_concept_and_hypernym_columns_and_positions(tiny_context):
    """States that ARE the words' input embeddings: the nearest-embedding readout must put the
    concept word (text states) and the hypernym word (image states) at rank 0 on every layer."""
    lm = tiny_context.vlm.lm
    lens = lens_targets(tiny_context)
    emb = lm.hf.get_input_embeddings().weight.detach()
    text = torch.stack([emb[t.concept_id] for t in lens]).expand(lm.n_layers, -1, -1)
    image = torch.stack([emb[t.hypernym_id] for t in lens]).expand(lm.n_layers, -1, -1)
    ctx = Context(tiny_context.vlm, tiny_context.taxonomy, tiny_context.concepts, tiny_context.features,
                  ConceptActs(tiny_context.concepts, 2.5 * text, 2.5 * image, image),
                  tiny_context.hypernyms, tiny_context.members)
    rows, first = image_lens(ctx, InsideConfig(checkpoint="x", image_lens_top_k=1))
    near = {(r["concept"], r["modality"], r["target"]): r for r in first if r["readout"] == "nearest embedding"}
    for c in HYPERNYMS:
        assert near[(c, "text", "concept")]["first_layer"] == 0 and near[(c, "text", "concept")]["best_rank"] == 0
        assert near[(c, "image", "hypernym")]["first_layer"] == 0
    assert all(r["rank"] == 0 for r in rows if r["readout"] == "nearest embedding"
               and (r["modality"], r["target"]) in (("text", "concept"), ("image", "hypernym")))


def test_image_lens_report_figures_and_page(tiny_run):
    out, rows, first = tiny_run
    report = findings(out)
    assert "## Readouts of the image token (logit lens, nearest embedding, Patchscope)" in report
    for readout in READOUTS:  # every number recomputed from the CSVs
        for modality in ("image", "text"):
            sel = [r for r in first if r["readout"] == readout and r["modality"] == modality]
            concepts = {r["concept"] for r in sel}
            cells = []
            for target in ("concept", "hypernym"):
                layers = [r["first_layer"] for r in sel if r["target"] == target and r["first_layer"] is not None]
                cells += [f"{100 * len(layers) / len(concepts):.0f}% ({len(layers)}/{len(concepts)})",
                          f"{statistics.median(layers):g}" if layers else "-"]
            by_layer = {}
            for r in rows:
                if r["readout"] == readout and r["modality"] == modality:
                    by_layer.setdefault((r["concept"], r["layer"]), {})[r["target"]] = r["rank"]
            only = {c for (c, _), rk in by_layer.items() if rk["hypernym"] < 50 <= rk["concept"]}
            cells.append(f"{100 * len(only) / len(concepts):.0f}% ({len(only)}/{len(concepts)})")
            states = "text (control)" if modality == "text" else "image"
            assert f"| {readout} | {states} | " + " | ".join(cells) + " |" in report, (readout, modality)
    assert "- positive control" in report
    figs = build_figures(out)
    assert {"image_lens_first", "image_lens_ranks_high_heel", "image_lens_ranks_robin"} <= set(figs)
    assert not any(name.startswith("image_lens_ranks_") for name in set(figs) - {"image_lens_ranks_high_heel",
                                                                                  "image_lens_ranks_robin"})
    assert is_run_dir(out)
    page = build_page(out)
    names = {getattr(b, "name", None) for s in page.sections for b in s.blocks}
    assert {"image_lens_summary", "image_lens_first_naming", "image_lens_first", "image_lens_ranks_robin"} <= names
    parsed = parse_page(write_report_page(out).read_text())  # renders: block names unique
    assert {"image_lens_first", "image_lens_ranks_robin"} <= set(parsed.figures)
    assert len(parsed.tables["image_lens_first_naming"]) == len(first)
    assert len(parsed.tables["image_lens_summary"]) == len(READOUTS) * 2


def test_causal_patches_restore_the_clean_answer_where_they_must(tiny_context, tmp_path):
    """The causal analysis on the tiny LM: pairs are (member, non-member) images ordered by the
    LM's own margins; writing the member image's states at layer 0 is the member's run itself
    (restored exactly 1); the rows hold every (pair, source, layer); the report section and the
    answer are computed from the table alone."""
    ctx = tiny_context
    cfg = InsideConfig(checkpoint="tiny.safetensors", causal_hypernyms=2, causal_pairs=2, causal_min_gap=0.0)
    rows, summ = causal(ctx, cfg)
    n_layers = ctx.vlm.lm.n_layers
    assert summ["pairs"] and len(rows) == len(summ["pairs"]) * 3 * n_layers
    for p in summ["pairs"]:
        h = p["hypernym"]
        assert p["clean"] in ctx.members[h] and p["corrupt"] not in ctx.members[h]
        assert p["clean_margin"] > p["corrupt_margin"]
        margins = answer_margins(ctx.vlm, ctx.features, summ["questions"][h])
        assert p["clean_margin"] == pytest.approx(float(margins[ctx.concepts.index(p["clean"])]))
    zero = [r for r in rows if r["source"] == "image" and r["layer"] == 0]
    assert all(r["restored"] == pytest.approx(1.0, abs=1e-4) for r in zero)
    assert {r["source"] for r in rows} == {"image", "word", "control word"}
    # the word and control word write different states, so they give different answers
    word = {(r["clean"], r["layer"]): r["margin"] for r in rows if r["source"] == "word"}
    ctrl = {(r["clean"], r["layer"]): r["margin"] for r in rows if r["source"] == "control word"}
    assert any(abs(word[k] - ctrl[k]) > 1e-4 for k in word)
    out = tmp_path / "inside"
    out.mkdir()
    write_csv(out / "causal.csv", rows)
    write_json(out / "summary.json", {"config": {"checkpoint": "tiny.safetensors"}, "lm": "tiny-llama",
                                      "n_concepts": len(ctx.concepts), "hypernyms": ctx.hypernyms, "causal": summ})
    report = findings(out)
    assert "## Causal" in report and "**Answer:**" in report
    assert sum(line.startswith("| ") and line[2].isdigit() for line in report.splitlines()) == n_layers
    with pytest.raises(ValueError, match="as many source as destination"):
        from interp.analysis.patching import PatchInput, cross_patch
        from interp.sequence import vlm_item

        inp = PatchInput(ctx.vlm.build([vlm_item(0, "Is it?")]), ctx.features[[0]])
        cross_patch(ctx.vlm, inp, [1, 2], inp, [1], lambda r, b: r[:, 0, 0], hooks=["blocks.0.hook_resid_pre"],
                    average=False)


def test_the_auto_patching_pair_is_the_models_firmest_right_answers(tiny_context):
    ctx = tiny_context
    cfg = InsideConfig(checkpoint="tiny.safetensors", patch_hypernym="animal")
    clean, corrupt, question = patch_pair(ctx, cfg)
    margins = answer_margins(ctx.vlm, ctx.features, question)
    members = [i for i, c in enumerate(ctx.concepts) if c in ctx.members["animal"]]
    others = [i for i in range(len(ctx.concepts)) if i not in members]
    assert ctx.concepts.index(clean) == max(members, key=lambda i: float(margins[i]))
    assert ctx.concepts.index(corrupt) == min(others, key=lambda i: float(margins[i]))
    assert question == "Is there an animal in the image?"
    by_hand = InsideConfig(checkpoint="x", patch_clean="robin", patch_corrupt="sandal", patch_question="Q?")
    assert patch_pair(ctx, by_hand) == ("robin", "sandal", "Q?")
    with pytest.raises(ValueError, match="patch_hypernym 'reptile'"):
        patch_pair(ctx, InsideConfig(checkpoint="x", patch_hypernym="reptile"))


def test_the_report_warns_when_a_patching_pair_is_answered_the_wrong_way_round(tmp_path):
    patch = {"clean": "eagle", "corrupt": "shark", "question": "Is there a bird in the image?", "chosen": "by hand",
             "clean_metric": -2.2, "corrupted_metric": -1.8, "seconds_exact": 1.0, "seconds_attribution": 0.1,
             "agreement": {"n_cells": 4, "pearson": 0.5, "spearman": 0.5, "sign_agreement": 0.75}}
    for clean, warned in ((-2.2, True), (3.6, False)):
        write_json(tmp_path / "summary.json", {"config": {"checkpoint": "x"}, "lm": "tiny", "n_concepts": 2,
                                               "hypernyms": [], "patching": dict(patch, clean_metric=clean)})
        assert ("WARNING: the LM answers this pair the wrong way round" in findings(tmp_path)) == warned


def test_merge_summary_keys_on_checkpoint_bytes(tmp_path):
    """A partial re-run keeps the other analyses' records only for the same weights: the same
    path with other bytes (a study re-run on another CPU) starts the summary over."""
    from interp.io import write_json
    from interp.studies.inside.run import merge_summary

    path = tmp_path / "summary.json"
    old = {"config": {"checkpoint": "ck.safetensors", "analyses": ["probes"]}, "lm": "tiny",
           "checkpoint_sha256": "a" * 64, "probes": 1, "seconds_by_analysis": {"probes": 2.0}}
    write_json(path, old)
    new = {"config": {"checkpoint": "ck.safetensors", "analyses": ["lens"]}, "lm": "tiny",
           "checkpoint_sha256": "a" * 64, "seconds_by_analysis": {"lens": 1.0}}
    merged = merge_summary(path, new)
    assert merged["probes"] == 1 and merged["config"]["analyses"] == ["lens", "probes"]
    assert merged["seconds_by_analysis"] == {"probes": 2.0, "lens": 1.0}
    other = {**new, "checkpoint_sha256": "b" * 64}
    assert merge_summary(path, other) == other
    legacy = {k: v for k, v in old.items() if k != "checkpoint_sha256"}  # written before the sha was recorded
    write_json(path, legacy)
    assert merge_summary(path, new) == new


def test_clear_outputs_removes_only_analysis_files(tmp_path):
    """Starting over on other weights removes the earlier analyses' tables and figures, and
    nothing else in the folder (the activation cache, the user's own files)."""
    from interp.studies.inside.tables import ANALYSIS_OUTPUTS, clear_outputs

    ours = ["probes.csv", "probes.png", "probes.html", "lens_ranks.csv", "lens_top.csv", "image_lens.csv",
            "image_lens_first.png", "image_lens_ranks_robin.html", "umap.csv", "patching.csv",
            "patching_exact.png", "causal.csv", "similarity.html", "steering.csv", "directions.png"]
    kept = ["acts-0123456789abcdef-test.safetensors", "notes.md", "summary.json", "report.md"]
    for name in ours + kept:
        (tmp_path / name).write_text("x")
    gone = clear_outputs(tmp_path)
    assert sorted(p.name for p in gone) == sorted(ours)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)
    from interp.studies.inside.config import ANALYSES

    assert set(ANALYSIS_OUTPUTS) == set(ANALYSES)  # every analysis's files are known


def test_best_transfer_layer_skips_the_last_layer():
    """Steering at the last block's output of the image position cannot reach the answer: the
    default steering layer is the best transfer layer below it."""
    from interp.studies.inside.analyses import best_transfer_layer

    rows = [{"probe": "text->image", "layer": l, "balanced_accuracy": acc}
            for l, acc in ((0, 0.50), (1, 0.55), (2, 0.52), (3, 0.60))] + \
           [{"probe": "image", "layer": 2, "balanced_accuracy": 0.9}]
    assert best_transfer_layer(rows, n_layers=4) == 1
    assert best_transfer_layer(rows, n_layers=5) == 3
    with pytest.raises(ValueError, match="steering_layer"):
        best_transfer_layer(rows[3:4], n_layers=4)
