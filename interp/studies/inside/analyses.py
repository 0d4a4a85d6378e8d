"""The look-inside study's analyses over one checkpoint: the shared :class:`Context` (the VLM,
one image per concept and the concepts' activations, cached as safetensors) and one function
per analysis, each returning tidy rows (see :mod:`interp.studies.inside`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from interp.analysis.attribution import attribution_grid, compare_to_exact
from interp.analysis.collect import ConceptActs, concept_activations, one_image_per_concept, word_span
from interp.analysis.directions import cosine_per_layer, mean_difference
from interp.analysis.image_lenses import (concept_readout, first_naming_rows, nearest_embeddings, patchscope,
                                         readout_rows)
from interp.analysis.lens import logit_lens
from interp.analysis.patching import PatchInput, cross_patch, logit_diff_metric, patch_grid
from interp.analysis.probes import probe_layers, transfer_layers
from interp.analysis.similarity import linear_cka, rsa
from interp.analysis.steering import steering_table, yes_probability
from interp.io import load_tensors, save_tensors, sha256_file
from interp.sequence import Segment, single_token_id, vlm_item
from interp.studies.inside.config import InsideConfig
from interp.studies.taxonomy.config import load_config
from interp.studies.taxonomy.questions import image_question
from interp.studies.taxonomy.run import load_data
from interp.vlm import load_vlm


@dataclass
class Context:
    """What every analysis needs: the VLM, the concepts, their activations and the taxonomy."""

    vlm: Any
    taxonomy: Any
    concepts: list[str]
    features: torch.Tensor       # [n_concepts, tokens, d_img] one image per concept
    acts: Any                    # interp.analysis.collect.ConceptActs ([layers, n, d] per modality)
    hypernyms: list[str]
    members: dict[str, set[str]] = field(default_factory=dict)
    checkpoint_sha256: str = ""  # the projector file's bytes (what the activation cache and the summary key on)


# --------------------------------------------------------------------- context
def build_context(cfg: InsideConfig, progress: bool = True) -> Context:
    ckpt = Path(cfg.checkpoint)
    if not ckpt.exists():
        raise FileNotFoundError(f"no projector checkpoint at {ckpt}: train one with `python -m interp.train "
                                f"{cfg.study_config}` (or `python -m interp.run {cfg.study_config}`)")
    vlm = load_vlm(ckpt, device=cfg.device)
    overrides = {"model.lm": vlm.lm.name.split("+random")[0], "model.encoder": vlm.projector.config.encoder}
    if cfg.max_concepts is not None:
        overrides["data.max_concepts"] = cfg.max_concepts
    study = load_config(cfg.study_config, overrides)
    data = load_data(study, vlm.encoder, progress=progress)
    if cfg.split not in data.splits:
        raise ValueError(f"split {cfg.split!r} not in the study's splits {sorted(data.splits)}")
    concepts, rows = one_image_per_concept(data.records, data.splits[cfg.split])
    tax = data.taxonomy
    features = data.features[rows]
    out = Path(cfg.out_dir)
    sha = sha256_file(ckpt)
    cache = out / f"acts-{sha[:16]}-{cfg.split}.safetensors"
    acts = None
    if cache.exists():
        t, meta = load_tensors(cache)
        if meta.get("concepts") == concepts:
            acts = ConceptActs(concepts, t["text"], t["image"], t["last"])
    if acts is None:
        acts = concept_activations(vlm, concepts, [tax.phrase(c) for c in concepts], features,
                                   batch_size=cfg.batch_size)
        save_tensors(cache, {"text": acts.text, "image": acts.image, "last": acts.last},
                     {"concepts": concepts, "checkpoint": str(ckpt), "lm": vlm.lm.name})
    present = set(concepts)
    members = {h: set(tax.leaves_of(h)) & present for h in tax.hypernyms}
    hyps = sorted(h for h, m in members.items() if cfg.min_members <= len(m) <= len(concepts) - cfg.min_members)
    if not hyps:
        raise ValueError(f"no hypernym has >= {cfg.min_members} member and non-member concepts among "
                         f"{len(concepts)}; lower min_members")
    return Context(vlm, tax, concepts, features, acts, hyps, members, sha)


def labels(ctx: Context, h: str) -> np.ndarray:
    return np.array([c in ctx.members[h] for c in ctx.concepts])


# --------------------------------------------------------------------- analyses
def probes(ctx: Context, cfg: InsideConfig) -> list[dict]:
    """Balanced accuracy per (hypernym, layer, probe): on each modality (k-fold) and across."""
    a = ctx.acts
    rows = []
    for h in ctx.hypernyms:
        y = labels(ctx, h)
        res = {f"{m}": probe_layers(getattr(a, m), y, folds=cfg.folds, seed=cfg.seed, scoring="balanced_accuracy")
               for m in ("text", "image", "last")}
        res["text->image"] = transfer_layers(a.text, y, a.image, y, seed=cfg.seed, scoring="balanced_accuracy")
        res["image->text"] = transfer_layers(a.image, y, a.text, y, seed=cfg.seed, scoring="balanced_accuracy")
        for probe, vals in res.items():
            rows += [{"hypernym": h, "n_members": int(y.sum()), "layer": l, "probe": probe, "balanced_accuracy": float(v)}
                     for l, v in enumerate(vals)]
    return rows


def directions(ctx: Context, cfg: InsideConfig) -> list[dict]:
    """Cosine between text- and image-derived difference-of-means directions, per hypernym and
    layer, with a permutation baseline (same sizes, shuffled membership)."""
    g = torch.Generator().manual_seed(cfg.seed)
    rows = []
    for h in ctx.hypernyms:
        y = torch.tensor(labels(ctx, h))
        cos = cosine_per_layer(mean_difference(ctx.acts.text, y), mean_difference(ctx.acts.image, y))
        perm = y[torch.randperm(len(y), generator=g)]
        base = cosine_per_layer(mean_difference(ctx.acts.text, perm), mean_difference(ctx.acts.image, perm))
        rows += [{"hypernym": h, "layer": l, "cosine": float(c), "shuffled_cosine": float(b)}
                 for l, (c, b) in enumerate(zip(cos, base))]
    return rows


def best_transfer_layer(probe_rows: list[dict], n_layers: int) -> int:
    """The steering layer by default: the layer of best mean text->image probe transfer, among
    the layers whose ``hook_resid_post`` at the image position can still reach the answer. The
    last block's output at a non-final position feeds no later block, so steering there is a
    no-op by construction (and with transfer at chance everywhere, the last layer's noise can be
    the largest)."""
    by_layer: dict[int, list[float]] = {}
    for r in probe_rows:
        if r["probe"] == "text->image" and int(r["layer"]) < n_layers - 1:
            by_layer.setdefault(int(r["layer"]), []).append(float(r["balanced_accuracy"]))
    if not by_layer:
        raise ValueError(f"no text->image probe rows below the last layer ({n_layers - 1}) to choose a steering "
                         "layer from: run the probes analysis or set steering_layer")
    return max(by_layer, key=lambda l: np.mean(by_layer[l]))


def steering(ctx: Context, cfg: InsideConfig, layer: int) -> list[dict]:
    """Steering rows (:func:`steering_table`) for the largest hypernyms, once with directions
    derived from the concepts' image states and once from their text states (the word in
    "This is a picture of a robin."), both added at the image positions; column ``direction``."""
    hyps = sorted(ctx.hypernyms, key=lambda h: -len(ctx.members[h]))[:cfg.steering_hypernyms]
    norm = float(ctx.acts.image[layer].norm(dim=-1).mean())
    rows: list[dict] = []
    for source in ("image", "text"):
        states = getattr(ctx.acts, source)[layer : layer + 1]
        dirs = {h: mean_difference(states, torch.tensor(labels(ctx, h)))[0] for h in hyps}
        rows += [dict(r, direction=source) for r in
                 steering_table(ctx.vlm, ctx.features, ctx.concepts, ctx.members, dirs, layer=layer,
                                scales=cfg.steering_scales, resid_norm=norm, seed=cfg.seed,
                                question=lambda h: image_question(ctx.taxonomy.phrase(h)))]
    return rows


def answer_margins(vlm, features: torch.Tensor, question: str, batch_size: int = 64) -> torch.Tensor:
    """logit(" Yes") - logit(" No") at the last token of [BOS, image, question] for every image:
    ``features [n, tokens, d_img]`` -> ``[n]`` (:func:`yes_probability`'s forward)."""
    return yes_probability(vlm, features, [question], batch_size=batch_size, margin=True)[:, 0]


def ranked_by_margin(ctx: Context, hypernym: str, batch_size: int) -> tuple[str, torch.Tensor, list[int], list[int]]:
    """Every concept's image asked ``hypernym``'s question: (question, margins ``[n_concepts]``
    of logit(Yes) - logit(No), member indices by decreasing margin, non-member indices by
    increasing margin), so the LM's firmest right answers come first in both lists."""
    question = image_question(ctx.taxonomy.phrase(hypernym))
    margin = answer_margins(ctx.vlm, ctx.features, question, batch_size=batch_size)
    y = labels(ctx, hypernym)
    order = torch.argsort(margin, descending=True).tolist()
    return question, margin, [i for i in order if y[i]], [i for i in reversed(order) if not y[i]]


def word_input(vlm, phrase: str) -> tuple[PatchInput, list[int]]:
    """The text prompt "This is a picture of a robin." (the states of ``concept_activations``'
    text modality) and the positions of the concept word in it."""
    batch = vlm.build([[Segment("bos"), Segment("text", f"This is a picture of {phrase}.")]])
    word = phrase.split(" ", 1)[1] if " " in phrase else phrase
    return PatchInput(batch, None), word_span(vlm.tokenizer, batch.input_ids[0].tolist(), word)


def causal(ctx: Context, cfg: InsideConfig, progress: bool = False) -> tuple[list[dict], dict]:
    """Causal evidence, layer by layer: can a state written at the image position make the LM
    answer "Is there a(n) H in the image?" as it does for an image of a member of H?

    Per hypernym H (the ``causal_hypernyms`` largest) every concept's image is asked H's
    question; the ``causal_pairs`` members with the largest margin logit(Yes) - logit(No) are
    the clean runs, paired in order with the non-members of smallest margin (the corrupted runs;
    pairs whose clean margin exceeds the corrupted one by less than ``causal_min_gap`` are
    dropped: the share below divides by that gap). For each pair and
    layer l, one state is written over the corrupted run's image positions at
    ``blocks.{l}.hook_resid_pre`` (:func:`cross_patch`):

    - ``image``: the clean image's own states there, token by token (image -> image patching;
      at layer 0 it is the clean run itself, so 1 by construction);
    - ``word``: the clean concept word's text state (its tokens' mean in "This is a picture of
      a robin."): the cross-modal patch;
    - ``control word``: the corrupted concept's own word, written the same way: the operation
      with the wrong concept (what writing any text state does).

    ``restored = (m_patched - m_corrupt) / (m_clean - m_corrupt)``: 1 is the clean answer, 0 no
    change. Returns tidy rows and a summary (hypernyms, questions, pairs)."""
    vlm, tax = ctx.vlm, ctx.taxonomy
    metric = logit_diff_metric(vlm, single_token_id(vlm.tokenizer, " Yes"), single_token_id(vlm.tokenizer, " No"))
    hooks = [f"blocks.{l}.hook_resid_pre" for l in range(vlm.lm.n_layers)]
    hyps = sorted(ctx.hypernyms, key=lambda h: (-len(ctx.members[h]), h))[:cfg.causal_hypernyms]
    rows: list[dict] = []
    pairs: list[dict] = []
    bar = tqdm(total=len(hyps) * cfg.causal_pairs, desc="causal patches (pairs)", disable=not progress)
    for h in hyps:
        question, margin, members, others = ranked_by_margin(ctx, h, cfg.batch_size)
        for ci, ki in zip(members[:cfg.causal_pairs], others[:cfg.causal_pairs]):
            m_clean, m_corr = float(margin[ci]), float(margin[ki])
            bar.update(1)
            if m_clean - m_corr < max(cfg.causal_min_gap, 1e-6):
                continue
            clean = PatchInput(vlm.build([vlm_item(0, question)]), ctx.features[[ci]])
            corrupt = PatchInput(vlm.build([vlm_item(0, question)]), ctx.features[[ki]])
            img_pos = corrupt.batch.mask("image")[0].nonzero().flatten().tolist()
            word, word_pos = word_input(vlm, tax.phrase(ctx.concepts[ci]))
            ctrl, ctrl_pos = word_input(vlm, tax.phrase(ctx.concepts[ki]))
            values = {"image": cross_patch(vlm, clean, img_pos, corrupt, img_pos, metric, hooks=hooks, average=False),
                      "word": cross_patch(vlm, word, word_pos, corrupt, img_pos, metric, hooks=hooks),
                      "control word": cross_patch(vlm, ctrl, ctrl_pos, corrupt, img_pos, metric, hooks=hooks)}
            pairs.append({"hypernym": h, "clean": ctx.concepts[ci], "corrupt": ctx.concepts[ki],
                          "clean_margin": m_clean, "corrupt_margin": m_corr})
            rows += [{**pairs[-1], "layer": l, "source": src, "margin": float(v[l]),
                      "restored": (float(v[l]) - m_corr) / (m_clean - m_corr)}
                     for src, v in values.items() for l in range(len(hooks))]
    bar.close()
    return rows, {"hypernyms": hyps, "questions": {h: image_question(tax.phrase(h)) for h in hyps},
                  "pairs": pairs, "hook": "blocks.{l}.hook_resid_pre", "positions": "image"}


def lens(ctx: Context, cfg: InsideConfig) -> tuple[list[dict], list[dict]]:
    """(rank rows: concept, hypernym, layer, rank of the hypernym's first word token at the image
    position; top rows: concept, layer, top-k tokens) from the logit lens over image positions."""
    tok = ctx.vlm.tokenizer
    words = sorted({h for c in ctx.concepts for h in ctx.taxonomy.hypernyms_of(c)})
    first = {h: tok(" " + h.split()[-1], add_special_tokens=False)["input_ids"][0] for h in words}
    targets = sorted(set(first.values()))
    col = {t: i for i, t in enumerate(targets)}
    res = logit_lens(ctx.vlm.lm, ctx.acts.image, top_k=cfg.lens_top_k, targets=targets)
    ranks, top = [], []
    n_layers = ctx.acts.image.shape[0]
    for j, c in enumerate(ctx.concepts):
        for h in sorted(ctx.taxonomy.hypernyms_of(c)):
            ranks += [{"concept": c, "hypernym": h, "token": tok.decode(first[h]), "layer": l,
                       "rank": int(res["ranks"][l, j, col[first[h]]])} for l in range(n_layers)]
        top += [{"concept": c, "layer": l, "top_tokens": " | ".join(tok.decode(int(i)) for i in res["top_ids"][l, j])}
                for l in range(n_layers)]
    return ranks, top


READOUTS = ("logit lens", "nearest embedding", "patchscope")  # the image_lens analysis's readouts, in order
MODALITIES = ("image", "text")  # the image tokens, and the concept word's text tokens as a positive control


@dataclass(frozen=True)
class LensTarget:
    """One concept's targets for the image-token readouts: the concept word and the word of its
    most specific hypernym, with the first token id of each (``" " + word``)."""

    index: int          # the concept's position on the concept axis of ``ctx.acts``
    concept: str
    word: str
    hypernym: str
    hypernym_word: str
    concept_id: int
    hypernym_id: int


def last_word(phrase: str) -> str:
    """The head word of a phrase without its article: "a high heel" -> "heel"."""
    return phrase.split()[-1]


def most_specific_hypernym(taxonomy: Any, concept: str) -> str | None:
    """The deepest of the concept's hypernyms (ties: the first by name); None without any."""
    hyps = taxonomy.hypernyms_of(concept)
    return min(hyps, key=lambda h: (-taxonomy.depth(h), h)) if hyps else None


def first_token(tokenizer: Any, word: str) -> int:
    """The first token id of ``" " + word`` (the convention of :func:`lens`)."""
    return int(tokenizer(" " + word, add_special_tokens=False)["input_ids"][0])


def lens_targets(ctx: Context) -> list[LensTarget]:
    """The targets of every concept that has a hypernym (in ``ctx.concepts`` order)."""
    tax, tok = ctx.taxonomy, ctx.vlm.tokenizer
    out = []
    for i, c in enumerate(ctx.concepts):
        h = most_specific_hypernym(tax, c)
        if h is None:
            continue
        word, hword = last_word(tax.phrase(c)), last_word(tax.phrase(h))
        out.append(LensTarget(i, c, word, h, hword, first_token(tok, word), first_token(tok, hword)))
    return out


def patchscope_layers(n_layers: int) -> list[int]:
    """The layer each layer's state is written at in the Patchscope: its own, except the last
    block's ``hook_resid_post``, where a written state changes nothing (no block follows to carry
    it to the read position after ``->``; see :func:`interp.analysis.image_lenses.patchscope`):
    that state is written one block lower."""
    return [max(0, min(layer, n_layers - 2)) for layer in range(n_layers)]


def run_readouts(ctx: Context, cfg: InsideConfig, states: torch.Tensor, targets: list[int]
                 ) -> dict[str, dict[str, torch.Tensor]]:
    """The three readouts of ``states [layers, n_concepts, d_model]`` (resid_post per block), each
    with the ranks and scores of ``targets`` ``[layers, n_concepts, len(targets)]``."""
    k = cfg.image_lens_top_k
    return {"logit lens": logit_lens(ctx.vlm.lm, states, top_k=k, targets=targets),
            "nearest embedding": nearest_embeddings(ctx.vlm.lm, states, top_k=k, targets=targets),
            "patchscope": patchscope(ctx.vlm, states, target_layers=patchscope_layers(states.shape[0]), top_k=k,
                                     targets=targets, batch_size=cfg.patchscope_batch)}


def modality_rows(results: dict[str, dict[str, torch.Tensor]], targets: list[int], wanted: list[LensTarget],
                  modality: str) -> list[dict]:
    """:func:`readout_rows` of every (concept, readout), with the concept's hypernym, the
    modality and the word each row ranks."""
    rows = []
    for t in wanted:
        words = {"concept": t.word, "hypernym": t.hypernym_word}
        for name in READOUTS:
            r = concept_readout(t.concept, name, results[name], targets=targets, concept_id=t.concept_id,
                                hypernym_id=t.hypernym_id, positions=[t.index])
            rows += [{"concept": t.concept, "hypernym": t.hypernym, "modality": modality, **row,
                      "word": words[row["target"]]} for row in readout_rows([r])]
    return rows


def image_lens(ctx: Context, cfg: InsideConfig) -> tuple[list[dict], list[dict]]:
    """(rows, first-naming rows) of the readouts made for image tokens: the logit lens, the
    nearest input embedding and a Patchscope, each ranking the concept word and the word of its
    most specific hypernym, per layer, on the image states (``ctx.acts.image``, resid_post
    averaged over the image positions) and, as a positive control, on the concept word's text
    states (``ctx.acts.text``), both ``[layers, n_concepts, d_model]``: a readout that does not
    name the word from its text cannot be
    expected to from the image. Rows: concept, hypernym, modality, readout, layer, target
    (concept|hypernym), rank, score (log-prob or cosine), word; first-naming rows (per concept,
    modality, readout, target): the first layer whose rank is below ``cfg.image_lens_top_k``.
    Concepts without a hypernym are left out."""
    wanted = lens_targets(ctx)
    targets = sorted({t.concept_id for t in wanted} | {t.hypernym_id for t in wanted})
    by_concept = {t.concept: t for t in wanted}
    rows, first = [], []
    for modality in MODALITIES:
        results = run_readouts(ctx, cfg, getattr(ctx.acts, modality), targets)
        mod_rows = modality_rows(results, targets, wanted, modality)
        rows += mod_rows
        for f in first_naming_rows(mod_rows, top_k=cfg.image_lens_top_k):
            t = by_concept[f["concept"]]
            first.append({"concept": t.concept, "hypernym": t.hypernym, "modality": modality, **f,
                          "word": t.word if f["target"] == "concept" else t.hypernym_word})
    return rows, first


def similarity(ctx: Context, cfg: InsideConfig) -> list[dict]:
    a = ctx.acts
    g = torch.Generator().manual_seed(cfg.seed)
    perm = torch.randperm(len(ctx.concepts), generator=g)
    return [{"layer": l, "cka": linear_cka(a.text[l], a.image[l]), "rsa": rsa(a.text[l], a.image[l]),
             "cka_shuffled": linear_cka(a.text[l], a.image[l][perm]), "rsa_shuffled": rsa(a.text[l], a.image[l][perm])}
            for l in range(a.text.shape[0])]


def patch_pair(ctx: Context, cfg: InsideConfig) -> tuple[str, str, str]:
    """(clean concept, corrupted concept, question) of the patching example. A concept named
    "auto" is chosen by the LM's own margins on ``patch_hypernym``'s question: the member it
    most firmly answers Yes (clean), the non-member it most firmly answers No (corrupted), so
    the grid explains an answer the model gets right."""
    auto = "auto" in (cfg.patch_clean, cfg.patch_corrupt)
    if auto and cfg.patch_hypernym not in ctx.members:
        raise ValueError(f"patch_hypernym {cfg.patch_hypernym!r} is not a hypernym of the {len(ctx.concepts)} "
                         f"{cfg.split} concepts; choose one of {sorted(ctx.members)[:8]}...")
    for c in (cfg.patch_clean, cfg.patch_corrupt):
        if c != "auto" and c not in ctx.concepts:
            raise ValueError(f"patch concept {c!r} is not among the {len(ctx.concepts)} {cfg.split} concepts")
    if not auto:
        return cfg.patch_clean, cfg.patch_corrupt, cfg.patch_question
    question, _, members, others = ranked_by_margin(ctx, cfg.patch_hypernym, cfg.batch_size)
    clean = cfg.patch_clean if cfg.patch_clean != "auto" else ctx.concepts[members[0]]
    corrupt = cfg.patch_corrupt if cfg.patch_corrupt != "auto" else ctx.concepts[others[0]]
    return clean, corrupt, question


def patching(ctx: Context, cfg: InsideConfig) -> tuple[list[dict], dict]:
    """Exact and attribution resid_pre grids for clean vs corrupted image; their agreement."""

    vlm = ctx.vlm
    clean_c, corrupt_c, question = patch_pair(ctx, cfg)
    batch = vlm.build([vlm_item(0, question)])
    clean = PatchInput(batch, ctx.features[[ctx.concepts.index(clean_c)]])
    corr = PatchInput(batch, ctx.features[[ctx.concepts.index(corrupt_c)]])
    metric = logit_diff_metric(vlm, single_token_id(vlm.tokenizer, " Yes"), single_token_id(vlm.tokenizer, " No"))
    t = time.perf_counter()
    exact = patch_grid(vlm, clean, corr, metric)
    t_exact = time.perf_counter() - t
    t = time.perf_counter()
    att = attribution_grid(vlm, clean, corr, metric)
    t_att = time.perf_counter() - t
    agree = compare_to_exact(att.grid, exact - att.corrupted)
    labels = batch.labels(0)
    toks = [vlm.tokenizer.decode(int(i)) for i in batch.input_ids[0]]
    rows = [{"layer": l, "position": p, "modality": labels[p], "token": toks[p] if labels[p] != "image" else "<img>",
             "exact_effect": float(exact[l, p] - att.corrupted), "attribution": float(att.grid[l, p])}
            for l in range(exact.shape[0]) for p in range(exact.shape[1])]
    summary = {"clean": clean_c, "corrupt": corrupt_c, "question": question,
               "chosen": "auto" if "auto" in (cfg.patch_clean, cfg.patch_corrupt) else "by hand",
               "clean_metric": att.clean, "corrupted_metric": att.corrupted, "agreement": agree.as_dict(),
               "seconds_exact": t_exact, "seconds_attribution": t_att}
    return rows, summary
