"""Helpers for the results-page tests: a small taxonomic run folder and a small SAE run folder
written by hand (no model), and a parse of a page's HTML (resources it would load, tables,
figures, gallery cards)."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from PIL import Image

from interp.studies.taxonomy.tables import RESULT_COLUMNS

RUNS = {"lm-original-100pct-s42": ("original", False), "lm-across-100pct-s42": ("across", False),
        "randlm-original-100pct-s42": ("original", True)}
HYPERNYMS = ("animal", "bird", "food", "fruit")
CONCEPTS = ("robin", "eagle", "apple", "banana", "shark")


def _write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def make_taxonomy_run(out: Path, *, images: bool = True) -> Path:
    """A taxonomic study folder as a run leaves it (results.csv, config.json, summary.json,
    learning.csv, lm_only.csv, images.csv and runs/<run>/{scores.csv, rows.json, conditions.json,
    train.json}), with made-up numbers and real PNG files for the gallery."""
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for k, (run, (world, rnd)) in enumerate(RUNS.items()):
        base = {"run_id": run, "world": world, "ablation": "100%", "rate": 1.0,
                "lm_init": "random" if rnd else "pretrained", "seed": 42}
        rows.append({**base, "hypernym": "<leaf>", "split": "all", "depth": 0, "n": 20, "f1": 61.25 - k,
                     "chance_f1": 49.5, "yes_rate": 0.5, "pairwise": 80.0 - k, "coherence": float("nan")})
        for j, h in enumerate(HYPERNYMS):
            for split in ("seen", "unseen"):
                rows.append({**base, "hypernym": h, "split": split, "depth": 1 + j % 2, "n": 8 + j,
                             "f1": 40.0 + 7.3 * j - 3.1 * k + (5.5 if split == "seen" else 0.0),
                             "chance_f1": 38.2 + 0.7 * j, "yes_rate": 0.25 * (j % 4), "pairwise": 50.0 + 2.5 * j - k,
                             "coherence": 0.91 + 0.01 * j})
    _write_csv(out / "results.csv", [{c: r[c] for c in RESULT_COLUMNS} for r in rows])
    cfg = {"name": "tiny", "out_dir": str(out), "grid": {"worlds": ["original", "across"], "seeds": [42]},
           "model": {"lm": "tiny-llama", "encoder": "tiny-encoder", "projector": "mlp2x_softmax"}}
    env = {"python": "3.11.7", "platform": "test", "packages": {"torch": "2.13.0", "plotly": "7.1.0"},
           "interp_code": "abc"}
    (out / "config.json").write_text(json.dumps({"config": cfg, "hash": "h123", "environment": env,
                                                 "source": "experiments/quick.toml --set=data.max_concepts=5"}))
    (out / "summary.json").write_text(json.dumps({"vision_ceiling": {"test_top1": 50.0, "test_leaf_f1": 70.0}}))
    _write_csv(out / "learning.csv", [{"run_id": r, "steps": 10, "train_leaf_f1": 60.0, "heldout_leaf_f1": 55.5,
                                       "token_cosine": 0.9, "warnings": ""} for r in RUNS])
    _write_csv(out / "lm_only.csv", [{"lm": "tiny-llama", "taxonomy": "embedded", "n_pairs": 9, "macro_f1": 33.3,
                                      "majority_f1": 33.3, "yes_rate": 1.0, "pairwise_acc": 50.0, "cloze_acc": 55.0}])
    if images:
        img_rows = []
        for i, c in enumerate(CONCEPTS):
            path = out / "img" / f"{c}.png"
            path.parent.mkdir(exist_ok=True)
            Image.new("RGBA", (40 + 10 * i, 50), (40 * i, 120, 200, 255)).save(path)
            img_rows.append({"image": 10 + i, "split": "test", "key": f"{c}/x.png", "concept": c, "source": "x",
                             "path": str(path)})
        img_rows.append({"image": 99, "split": "test", "key": "gone/x.png", "concept": "gone", "source": "x",
                         "path": str(out / "img" / "gone.png")})  # a file that is not there
        _write_csv(out / "images.csv", img_rows)
    for k, (run, (world, rnd)) in enumerate(RUNS.items()):
        d = out / "runs" / run
        d.mkdir(parents=True, exist_ok=True)
        scores = []
        for i, c in enumerate(CONCEPTS + ("gone",)):
            for j, h in enumerate(HYPERNYMS):
                for answer, sign in (("Yes", 1), ("No", -1)):
                    scores.append({"image": 99 if c == "gone" else 10 + i, "question": f"Is there a {h} in the image?",
                                   "answer": answer, "kind": "hypernym", "concept": c, "target": h, "hypernym": h,
                                   "depth": 1, "seen": (i + j) % 2 == 0, "score": sign * (0.5 - 0.2 * ((i + j + k) % 4))})
            scores.append({"image": 10 + i if c != "gone" else 99, "question": f"Is there a {c} in the image?",
                           "answer": "Yes", "kind": "leaf", "concept": c, "target": c, "hypernym": "", "depth": 0,
                           "seen": True, "score": 1.0})
        _write_csv(d / "scores.csv", scores)
        (d / "rows.json").write_text(json.dumps({"rows": [r for r in rows if r["run_id"] == run]}))
        (d / "conditions.json").write_text(json.dumps({"spec": {"world": world, "ablation": "random:1.0", "seed": 42,
                                                                "random_init": rnd}}))
        (d / "train.json").write_text(json.dumps({
            "steps": 10, "final_loss": 1.0, "losses": [2.0 - 0.1 * s for s in range(10)],
            "diagnostics": [{"step": s, "heldout_leaf_f1": 50.0 + s, "token_cosine": 0.9} for s in (0, 5, 10)]}))
    return out


@dataclass
class ParsedPage:
    """What a page holds, read from its HTML: every URL an element would load (``src``, ``href``,
    ``srcset``, ``data``, ``poster``, plus ``<link>`` and ``<script src>``), the cells of each table
    by name (text, data-value), the figure names and the gallery cards (attributes and image src)."""

    urls: list[tuple[str, str, str]] = field(default_factory=list)  # (tag, attribute, value)
    tables: dict[str, list[list[tuple[str, str | None]]]] = field(default_factory=dict)
    headers: dict[str, list[str]] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)
    cards: list[dict] = field(default_factory=list)
    scripts: int = 0


class _Parser(HTMLParser):
    LOADING = {"src", "href", "srcset", "data", "poster", "action", "formaction"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = ParsedPage()
        self.table: str | None = None
        self.cell: list | None = None
        self.in_th = False
        self.card: dict | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for name, value in attrs:
            if name in self.LOADING and value is not None:
                self.page.urls.append((tag, name, value))
        if tag == "script":
            self.page.scripts += 1
        if tag == "table" and (a.get("id") or "").startswith("table-"):
            self.table = a["id"].removeprefix("table-")
            self.page.tables[self.table] = []
            self.page.headers[self.table] = []
        elif tag == "tr" and self.table is not None:
            self.page.tables[self.table].append([])
        elif tag == "td" and self.table is not None:
            self.cell = ["", a.get("data-value")]
        elif tag == "th" and self.table is not None:
            self.in_th = True
            self.page.headers[self.table].append("")
        elif tag == "figure" and "data-figure" in a:
            self.page.figures.append(a["data-figure"])
        elif tag == "div" and "card" in (a.get("class") or "").split():
            self.card = dict(a)
            self.page.cards.append(self.card)
        elif tag == "img" and self.card is not None:
            self.card["img"] = a.get("src")
        elif tag == "div" and "no-image" in (a.get("class") or "").split() and self.card is not None:
            self.card["img"] = None

    def handle_endtag(self, tag):
        if tag == "table":
            if self.table is not None:
                self.page.tables[self.table] = [r for r in self.page.tables[self.table] if r]
            self.table = None
        elif tag == "td" and self.cell is not None and self.table is not None:
            self.page.tables[self.table][-1].append((self.cell[0].strip(), self.cell[1]))
            self.cell = None
        elif tag == "th":
            self.in_th = False

    def handle_data(self, data):
        if self.cell is not None:
            self.cell[0] += data
        elif self.in_th and self.table is not None:
            self.page.headers[self.table][-1] += data.strip()


def parse_page(html: str) -> ParsedPage:
    p = _Parser()
    p.feed(html)
    p.close()
    return p.page


def network_urls(page: ParsedPage) -> list[tuple[str, str, str]]:
    """Every loading attribute that points anywhere but this file (#anchor) or a data: URI."""
    return [(t, a, v) for t, a, v in page.urls if not (v.startswith("#") or v.startswith("data:"))]


SAE_LAYERS = (2, 4)


def make_sae_run(out: Path) -> Path:
    """An SAE study folder as a run leaves it (config.json, summary.csv, sharing.csv,
    latents.csv, top_images.csv, top_tokens.csv, train_curve.csv, report.md), with the real
    column names, made-up numbers and real PNG files for the top images (one file missing)."""
    out.mkdir(parents=True, exist_ok=True)
    hook = "blocks.{}.hook_resid_post"
    _write_csv(out / "summary.csv", [
        {"d_in": 64, "d_sae": 256, "dead_frac": 0.125 + 0.25 * i, "explained_variance": 0.9125 - 0.1 * i,
         "final_train_fvu": 0.08 + 0.01 * i, "hook_name": hook.format(l), "k": 8, "l0": 7.75 + i, "layer": l,
         "loss_ablated": 9.5, "loss_clean": 6.5, "loss_delta": 0.25 - 0.5 * i, "loss_recovered": 0.917 + 0.1 * i,
         "loss_spliced": 6.75 - 0.5 * i, "mse": 12.5 * (i + 1), "n_answer_tokens": 40, "n_tokens": 300,
         "sae_folder": f"runs/sae/saes/{hook.format(l)}", "tokens_per_s": 1234.5, "train_seconds": 30.25 + i,
         "train_tokens": 900} for i, l in enumerate(SAE_LAYERS)])
    _write_csv(out / "sharing.csv", [
        {"both-unaligned": 3 + i, "hook_name": hook.format(l), "image-only": 11 + i, "layer": l, "n_concepts": 5,
         "none": 200 - i, "p_value": 0.01 if i == 0 else 0.6, "shared": 17 if i == 0 else 4,
         "shuffled_shared_hi": 9.0 + i, "shuffled_shared_lo": 2.0, "shuffled_shared_mean": 5.35 + i, "shuffles": 20,
         "text-only": 30 + i} for i, l in enumerate(SAE_LAYERS)])
    classes = ("shared", "image-only", "text-only", "none")
    _write_csv(out / "latents.csv", [
        {"class": classes[j % 4], "hook_name": hook.format(l), "image_share": round(0.1 * j, 3), "latent": 3 * j + i,
         "layer": l, "mass": 100.5 * (j + 1) + i, "n_concepts_image": j % 3, "n_concepts_text": (j + 1) % 3,
         "n_image_tokens": 4 * j, "n_tokens": 10 + j,
         "shared_concepts": "|".join(CONCEPTS + ("owl", "hen")[:j % 3]) if classes[j % 4] == "shared" else ""}
        for i, l in enumerate(SAE_LAYERS) for j in range(9)])
    images = []
    for i, l in enumerate(SAE_LAYERS):
        for rank in range(2):
            for n, c in enumerate(CONCEPTS[:2]):
                path = out / "img" / f"{c}-{l}-{rank}.png"
                path.parent.mkdir(exist_ok=True)
                if not (i == 1 and rank == 1 and n == 1):  # one file that is not there
                    Image.new("RGB", (48, 40), (60 * n, 100 + 20 * rank, 50 * i)).save(path)
                images.append({"activation": 50.5 - 10 * rank - n, "concept": c, "hook_name": hook.format(l),
                               "latent": 3 * rank + i, "layer": l, "path": str(path), "rank": rank,
                               "record": 10 * rank + n})
    _write_csv(out / "top_images.csv", images)
    _write_csv(out / "top_tokens.csv", [
        {"activation": 20.25 - j, "concept": CONCEPTS[j], "hook_name": hook.format(l),
         "kind": "text" if j % 2 else "image", "latent": 3 * (j % 2) + i, "layer": l,
         "prompt": f"Is there a {CONCEPTS[j]} in the image?", "rank": j % 2,
         "token": " 1" if j == 0 else f" {CONCEPTS[j]}"}  # a token that reads as a number stays text
        for i, l in enumerate(SAE_LAYERS) for j in range(3)])
    _write_csv(out / "train_curve.csv", [
        {"epoch": e, "hook_name": hook.format(l), "layer": l, "train_fvu": 0.5 / e + 0.01 * i}
        for i, l in enumerate(SAE_LAYERS) for e in (1, 2, 3)])
    cfg = {"name": "sae-tiny", "out_dir": str(out),
           "data": {"checkpoint": "", "lm": "tiny-llama", "seed": 0, "study_config": "experiments/quick.toml",
                    "holdout_frac": 0.25},
           "model": {"device": "cpu", "layers": list(SAE_LAYERS)},
           "train": {"expansion_factor": 4, "k": 8, "epochs": 3, "seed": 1},
           "eval": {"fire_frac": 0.5, "shuffles": 20, "seed": 2, "top_latents": 2}}
    env = {"python": "3.11.7", "platform": "test", "packages": {"torch": "2.13.0", "plotly": "7.1.0"},
           "interp_code": "abc"}
    (out / "config.json").write_text(json.dumps({
        "config": cfg, "hash": "h456", "source": "experiments/sae_quick.toml --set=model.layers=[2,4]",
        "seeds": {"data": 0, "train": 1, "eval": 2}, "sae_library": {"eai-sparsify": "1.3.3"}, "environment": env}))
    (out / "report.md").write_text("# Sparse autoencoders on VLM residuals: sae-tiny\n")
    return out
