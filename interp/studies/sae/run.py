"""The SAE study's driver: the taxonomic study's VLM and images, the sequences' residuals
into an activation store (resumable), one library TopK SAE per layer (resumable per epoch,
exported in SAELens's format), its measures and latents, then the tables, report.md, the
figures and the results page (report.html). Finished pieces are skipped on a re-run (store
shards, SAEs, per-layer results)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from interp.analysis.store import ActivationStore, collect_to_store
from interp.io import environment, read_json, sha256_file, stable_hash, write_csv, write_json
from interp.models.encoders import load_encoder
from interp.projector import Projector
from interp.studies.alignment.config import parse_layers
from interp.studies.sae.config import SaeConfig
from interp.studies.sae.data import (SeqInfo, batch_mask, build_batches, iter_batches, layer_acts, name_roles,
                                     sequence_mask, split_batches, study_sequences, token_groups, token_table)
from interp.studies.sae.evaluate import encode_chunks, group_quality, quality, recovered_share, splice_losses
from interp.studies.sae.export import export_saelens, from_sparse_coder, load_saelens
from interp.studies.sae.latents import latent_firing, latent_rows, sharing_summary, top_examples
from interp.studies.sae.page import write_report_page
from interp.studies.sae.report import write_outputs
from interp.studies.sae.train import train_key, train_sae
from interp.studies.taxonomy.config import load_config as load_study_config
from interp.studies.taxonomy.run import load_data, load_study_lm, new_study_vlm
from interp.vlm import load_vlm

TABLES = ("summary", "sharing", "latents", "top_images", "top_tokens", "train_curve")
#: version of the per-layer measures: a layer's cached rows are recomputed (its SAE is not
#: retrained) when the measures change (2: per token group, the image-position splice)
MEASURES = 2


@dataclass
class Setting:
    """What the study runs on: the VLM, the taxonomy, the image records, the rows of the
    chosen split, the images' encoder features ``[n_images, tokens, d_img]`` and a tag of the
    projector (checkpoint hash or "untrained")."""

    vlm: Any
    taxonomy: Any
    records: list
    rows: list[int]
    features: torch.Tensor
    projector: str


def split_rows(splits: dict[str, list[int]], name: str) -> list[int]:
    """The record indices of split ``name``; "all" = every split's, in record order."""
    return sorted(r for rows in splits.values() for r in rows) if name == "all" else list(splits[name])


def check_checkpoint(cfg: SaeConfig) -> None:
    """Before anything loads: ``data.checkpoint``, when set, is a projector checkpoint (its
    header is read; ``FileNotFoundError`` or ``ValueError`` otherwise)."""
    if cfg.data.checkpoint:
        if not Path(cfg.data.checkpoint).exists():
            raise FileNotFoundError(f"data.checkpoint {cfg.data.checkpoint}: no such projector checkpoint "
                                    "(train one with python -m interp.run experiments/quick.toml)")
        Projector.read_config(cfg.data.checkpoint)


def load_setting(cfg: SaeConfig, progress: bool = True) -> Setting:
    """The taxonomic study's data and VLM: the checkpoint's projector (its LM and encoder), or
    an untrained projector of the study config's kind for its (or ``data.lm``'s) LM."""
    d = cfg.data
    overrides: dict[str, Any] = {}
    if d.checkpoint:
        check_checkpoint(cfg)
        vlm = load_vlm(d.checkpoint, lm=d.lm or None, device=cfg.model.device)
        overrides = {"model.lm": vlm.lm.name.split("+random")[0], "model.encoder": vlm.projector.config.encoder}
        study = load_study_config(d.study_config, overrides)
        encoder, tag = vlm.encoder, sha256_file(d.checkpoint)[:16]
    else:
        overrides = {k: v for k, v in (("model.lm", d.lm), ("model.encoder", d.encoder)) if v}
        study = load_study_config(d.study_config, overrides | {"model.device": cfg.model.device})
        encoder = load_encoder(study.model.encoder, device=cfg.model.device)
        vlm = new_study_vlm(load_study_lm(study, False, d.seed), encoder, study, d.seed)
        tag = f"untrained-{study.model.projector}-s{d.seed}"
    data = load_data(study, encoder, progress=progress)
    return Setting(vlm, data.taxonomy, data.records, split_rows(data.splits, d.split), data.features, tag)


def record_run(cfg: SaeConfig, out: Path, source: str) -> None:
    """config.json: the config, its seeds, the command, the versions (incl. the SAE library)."""
    try:
        lib = metadata.version("eai-sparsify")
    except metadata.PackageNotFoundError:
        lib = None
    write_json(out / "config.json", {"config": cfg.to_dict(), "hash": cfg.hash, "source": source,
                                     "seeds": {"data": cfg.data.seed, "train": cfg.train.seed, "eval": cfg.eval.seed},
                                     "sae_library": {"eai-sparsify": lib}, "environment": environment()})


def run(cfg: SaeConfig, *, progress: bool = True, source: str = "", setting: Setting | None = None) -> dict[str, Any]:
    """Run (or resume) the study; returns the summary and sharing rows, the output folder, the
    paths of report.md and of the results page (report.html) and the time."""
    start = time.perf_counter()
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    record_run(cfg, out, source)
    st = setting or load_setting(cfg, progress)
    vlm, tok = st.vlm, st.vlm.tokenizer
    layers = parse_layers(cfg.model.layers, vlm.lm.n_layers)
    seqs = study_sequences(st.taxonomy, st.records, st.rows, images_per_concept=cfg.data.images_per_concept,
                           text_per_concept=cfg.data.text_per_concept, max_concepts=cfg.data.max_concepts,
                           templates=cfg.data.text_templates,
                           seed=cfg.data.seed)
    write_json(out / "sequences.json", [asdict(s) for s in seqs])
    batches = build_batches(tok, vlm.n_image_tokens, seqs, st.features, cfg.data.batch_size)
    bs = cfg.data.batch_size
    roles = [name_roles(tok, b, seqs[i * bs:(i + 1) * bs], st.taxonomy) for i, (b, _) in enumerate(batches)]
    names = [f"blocks.{l}.hook_resid_post" for l in layers]
    store = ActivationStore.create(out / "store", names, meta={
        "lm": vlm.lm.name, "projector": st.projector, "sequences": stable_hash([asdict(s) for s in seqs]),
        "batch_size": bs})
    collect_to_store(vlm, iter_batches(batches, vlm.lm.device), store, progress=progress, total=len(batches))
    tokens = token_table(batches, roles)
    train_b, held_b = split_batches(len(batches), cfg.data.holdout_frac)
    results = [layer_results(cfg, out, st, store, l, seqs, batches, tokens, train_b, held_b or train_b, progress)
               for l in layers]
    tables = {t: [r for res in results for r in res[t]] for t in TABLES}
    for t, rows in tables.items():
        write_csv(out / f"{t}.csv", rows)
    report = write_outputs(out, cfg)
    page = write_report_page(out, progress=progress)  # from the tables just written
    return {"summary": tables["summary"], "sharing": tables["sharing"], "out": str(out), "report": str(report),
            "page": str(page), "seconds": time.perf_counter() - start}


def with_recovered_shares(rows: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """The summary rows' loss-recovered shares derived again from their losses (the rule of
    :func:`~interp.studies.sae.evaluate.recovered_share`, for rows cached before it)."""
    for r in rows["summary"]:
        for p in ("loss_", "image_loss_"):
            if f"{p}clean" in r:
                r[f"{p}recovered"] = recovered_share(r[f"{p}clean"], r[f"{p}spliced"], r[f"{p}ablated"])
    return rows


def layer_results(cfg: SaeConfig, out: Path, st: Setting, store: ActivationStore, layer: int, seqs: list[SeqInfo],
                  batches, tokens, train_b: list[int], held_b: list[int], progress: bool) -> dict[str, list[dict]]:
    """One layer: train (or resume, or reuse) its SAE, export it, measure it and describe its
    latents; the rows are cached in ``layers/<layer>.json`` under the training key."""
    name = f"blocks.{layer}.hook_resid_post"
    x_all = layer_acts(store, name)
    bs = cfg.data.batch_size
    in_train, in_held = batch_mask(tokens, bs, train_b), batch_mask(tokens, bs, held_b)
    x_train = x_all[in_train & sequence_mask(tokens, seqs, cfg.train.sequences)]
    key = f"{train_key(cfg.train, x_train)}-{stable_hash(asdict(cfg.eval))}-m{MEASURES}"
    cache = out / "layers" / f"{layer}.json"
    if cache.exists() and read_json(cache).get("key") == key:
        return with_recovered_shares(read_json(cache)["rows"])
    folder = out / "saes" / name
    res = train_sae(x_train, cfg.train, out / "train" / name, progress=progress)
    export_saelens(from_sparse_coder(res.coder), folder, hook_name=name, model_name=st.vlm.lm.name,
                   context_size=int(batches[0][0].shape[1]), dataset_path=str(out / "store"),
                   extra={"interp_projector": st.projector, "interp_trainer": "eai-sparsify SparseCoder (TopK)",
                          "interp_train_tokens": int(x_train.shape[0]), "interp_train_sequences": cfg.train.sequences})
    sae, _ = load_saelens(folder)  # what is measured is what was exported
    groups = token_groups(tokens, seqs)
    q = quality(sae, x_all[in_held]) | group_quality(sae, x_all[in_held], {g: m[in_held] for g, m in groups.items()})
    held = [batches[i] for i in held_b]
    losses = splice_losses(st.vlm, held, sae, layer, x_train.mean(0))
    x_image = x_all[in_train & groups["image_tokens"]]
    image_mean = x_image.mean(0) if len(x_image) else x_train.mean(0)
    losses |= {k.replace("loss_", "image_loss_", 1): v for k, v in
               splice_losses(st.vlm, held, sae, layer, image_mean, image_only=True).items()}
    vals, idx = encode_chunks(sae, x_all)
    firing = latent_firing(tokens, vals, idx, seqs, sae.d_sae, cfg.eval.fire_frac)
    share = sharing_summary(firing.image, firing.text, shuffles=cfg.eval.shuffles, seed=cfg.eval.seed)
    lat = latent_rows(firing, tokens, vals, idx)
    top = [r["latent"] for r in sorted(lat, key=lambda r: -r["mass"])[:cfg.eval.top_latents]]
    imgs, toks = top_examples(top, tokens, vals, idx, seqs, st.records, st.vlm.tokenizer.decode,
                              n_images=cfg.eval.top_images, n_tokens=cfg.eval.top_tokens)
    base = {"layer": layer, "hook_name": name}
    rows = {"summary": [{**base, "train_sequences": cfg.train.sequences, "d_in": sae.d_in, "d_sae": sae.d_sae,
                         "k": sae.k, **q, **losses,
                         "train_tokens": int(x_train.shape[0]), "train_seconds": res.seconds,
                         "tokens_per_s": res.tokens_seen / res.seconds if res.seconds > 0 else float("nan"),
                         "final_train_fvu": res.epoch_fvu[-1], "sae_folder": str(folder)}],
            "sharing": [{**base, **share, "n_concepts": len(firing.concepts)}],
            "latents": [{**base, **r} for r in lat],
            "top_images": [{**base, **r} for r in imgs], "top_tokens": [{**base, **r} for r in toks],
            "train_curve": [{**base, "epoch": e + 1, "train_fvu": v} for e, v in enumerate(res.epoch_fvu)]}
    write_json(cache, {"key": key, "rows": rows})
    return rows
