"""The binding study's driver (resumable; its config is :mod:`~interp.studies.binding.config`).

``run_study(cfg)`` for every seed trains the shared text-only segment once, then each
regime's curriculum from it, evaluates every model on the fixed evaluation sets (text in
and out of distribution, image and noise versions) and runs the mechanism analyses on text
episodes (interchange interventions, attention knockout, probes). Every unit writes its
own result file (``seed<k>/<regime>/eval.json``, ``mech.json``) and is skipped when that
file exists; the tidy tables, report, figures and results page are rebuilt from them at the end.

Layout of ``out_dir``::

    config.json  accuracy.csv  interchange.csv  knockout.csv  probes.csv  training.csv
    summary.json  report.md  report.html  figures/*.html|png
    seed<k>/phase1/          model.safetensors, train.json  (text-only segment, shared)
    seed<k>/<regime>/        model.safetensors, train.json, eval.json, mech.json
    seed<k>/<regime>/lr<x>/  with ``train.continuation_lrs``: each candidate continuation
                             (model.safetensors, train.json, val.json); the chosen one is copied
                             up and named in seed<k>/<regime>/selection.json
"""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from interp.io import atomic_path, environment, read_json, write_json
from interp.models.encoders import load_encoder
from interp.studies.binding.bank import context_bank, noise_pool
from interp.studies.binding.config import BindingConfig
from interp.studies.binding.evaluate import EvalSet, accuracy
from interp.studies.binding.interventions import interchange, knockout, probes
from interp.studies.binding.model import BindingModel
from interp.studies.binding.page import write_report_page
from interp.studies.binding.report import write_outputs
from interp.studies.binding.task import Vocab
from interp.studies.binding.train import REGIMES, Sources, curriculum, text_segment, train_segment

#: the seeds of the rendered banks: training contexts, held-out (evaluation) contexts, noise
#: images, validation contexts (``train.continuation_lrs``)
BANK_SEEDS = {"train": 1, "eval": 2, "noise": 3, "validation": 5}


def eval_sets(cfg: BindingConfig, kinds: tuple[str, ...]) -> list[EvalSet]:
    """The evaluation sets of a model trained with slot kinds ``kinds``: text in and out of
    distribution always, plus the image / noise versions it was trained on (in distribution)."""
    t, e = cfg.task, cfg.eval
    sets = [EvalSet("text", n, e.size, e.seed) for n in (t.n_objects, *t.ood_objects)]
    for kind in kinds:
        if kind != "text":
            size = e.image_size if "image" in kind else e.size
            sets.append(EvalSet(kind, t.n_objects, size, e.seed))
    return sets


def validation_set(cfg: BindingConfig, kind: str) -> EvalSet:
    """The validation episodes of slot kind ``kind`` at ``n_objects`` (``train.continuation_lrs``):
    drawn from seed ``eval.seed + 1``, so never the evaluation sets' episodes; image kinds read
    them from the validation bank (:data:`BANK_SEEDS`)."""
    size = cfg.eval.image_size if "image" in kind else cfg.eval.size
    return EvalSet(kind, cfg.task.n_objects, size, cfg.eval.seed + 1)


def _read_or(path: Path, fn):
    if path.exists():
        return read_json(path)
    result = fn()
    write_json(path, result)
    return result


def run_regime(cfg: BindingConfig, seed: int, regime: str, phase1: dict[str, torch.Tensor], sources: Sources,
               eval_bank, out: Path, progress: bool = True, val_bank=None) -> dict:
    """Train (or load) one regime from the phase-1 weights, evaluate it, analyse it.

    With ``train.continuation_lrs`` the continuation is trained at each candidate rate and the
    best on the validation episodes is kept (:func:`select_continuation`; ``val_bank``: the
    validation contexts of image kinds)."""
    phases = curriculum(regime, cfg.train)
    selection = None
    if cfg.train.continuation_lrs and phases:
        model, log, selection = select_continuation(cfg, seed, regime, phase1, sources, val_bank, out, progress)
    else:
        model = _start(cfg, seed, phase1, sources)
        log = train_segment(model, sources, phases, cfg.train, out, seed=seed, name=f"seed{seed}/{regime}",
                            progress=progress) if phases else {"seconds": 0.0, "history": []}
    kinds = tuple(sorted({p.slot for p in phases})) or ("text",)
    res = _evaluate_and_analyse(cfg, model, sources, eval_bank, out, regime, seed, kinds, log)
    if selection is not None:
        res["selection"] = selection
    return res


def _start(cfg: BindingConfig, seed: int, phase1: dict[str, torch.Tensor], sources: Sources) -> BindingModel:
    """A regime's model before its continuation: the phase-1 weights, and with ``model.ext_norm``
    the token statistics of its training bank (or noise pool)."""
    model = BindingModel(cfg.model, sources.vocab, seed=seed).to(cfg.device)
    model.load_state(phase1)
    if cfg.model.ext_norm != "none" and (sources.bank is not None or sources.noise_pool is not None):
        model.fit_ext_norm(sources.bank.features if sources.bank is not None else sources.noise_pool)
    return model


def select_continuation(cfg: BindingConfig, seed: int, regime: str, phase1: dict[str, torch.Tensor],
                        sources: Sources, val_bank, out: Path, progress: bool = True) -> tuple[BindingModel, dict, dict]:
    """Train ``regime``'s continuation at every rate of ``train.continuation_lrs`` (each in
    ``out/lr<x>``, resumable, all on the same batches), score each on the validation episodes of
    the regime's slot kind (:func:`validation_set`), keep the best (ties: the first listed) and
    copy its weights and log to ``out``. Returns (the chosen model, its training log, the
    selection: every candidate's validation accuracy and the chosen rate)."""
    out = Path(out)
    kind = REGIMES[regime]
    vs = validation_set(cfg, kind)
    bank = val_bank if "image" in kind else None
    if "image" in kind and bank is None:
        raise ValueError(f"regime {regime!r} selects its continuation on validation pictures: pass val_bank")
    candidates, models = [], []
    for lr in cfg.train.continuation_lrs:
        tcfg = replace(cfg.train, lr=lr, continuation_lrs=())
        sub = out / f"lr{lr:g}"
        model = _start(cfg, seed, phase1, sources)
        train_segment(model, sources, curriculum(regime, tcfg), tcfg, sub, seed=seed, name=f"seed{seed}/{regime}",
                      progress=progress)
        val = _read_or(sub / "val.json", lambda: accuracy(model, sources, vs, batch_size=cfg.eval.batch_size, bank=bank))
        candidates.append({"lr": lr, "folder": sub.name, "set": val["set"], "val_acc": val["acc"]})
        models.append(model)
    best = max(range(len(candidates)), key=lambda i: (candidates[i]["val_acc"], -i))
    chosen = candidates[best]
    selection = {"regime": regime, "seed": seed, "kind": kind, "lr": chosen["lr"], "candidates": candidates}
    done = (out / "selection.json").exists() and read_json(out / "selection.json") == selection
    if not (done and (out / "model.safetensors").exists() and (out / "train.json").exists()):
        for name in ("model.safetensors", "train.json"):  # selection.json last: it marks the copy finished
            with atomic_path(out / name) as tmp:
                shutil.copyfile(out / chosen["folder"] / name, tmp)
        write_json(out / "selection.json", selection)
    models[best].eval()  # the kept candidate, already trained or loaded: the copy above is its file
    return models[best], read_json(out / "train.json"), selection


def _evaluate_and_analyse(cfg, model, sources, eval_bank, out: Path, regime: str, seed: int, kinds, log) -> dict:
    def do_eval():
        rows = [accuracy(model, sources, es, batch_size=cfg.eval.batch_size,
                         bank=eval_bank if "image" in es.kind else None) for es in eval_sets(cfg, kinds)]
        return {"regime": regime, "seed": seed, "rows": rows}

    ev = _read_or(out / "eval.json", do_eval)
    mech = None
    if cfg.eval.mechanisms:
        def do_mech():
            hooked = model.hooked()
            return {"regime": regime, "seed": seed,
                    "interchange": interchange(hooked, model, cfg.task, sources.vocab, cfg.mech),
                    "knockout": knockout(hooked, model, cfg.task, sources.vocab, cfg.mech),
                    "probes": probes(hooked, model, cfg.task, sources.vocab, cfg.mech)}

        mech = _read_or(out / "mech.json", do_mech)
    return {"eval": ev, "mech": mech, "train_seconds": log.get("seconds", 0.0), "history": log.get("history", [])}


def run_study(cfg: BindingConfig, *, progress: bool = True, source: str = "CONFIG") -> dict[str, Any]:
    """Run every (seed, regime) of ``cfg`` (finished units are skipped) and write the tables,
    the report, the figures and the results page (report.html) to ``cfg.out_dir``."""
    t0 = time.perf_counter()
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if (out / "config.json").exists():
        old = read_json(out / "config.json").get("result_hash")
        if old is not None and old != cfg.result_hash:
            raise ValueError(f"{out} holds results of a different config (result hash {old}, this config "
                             f"{cfg.result_hash}); finished units would be reused: pass --out NEW_DIR or delete {out}")
    write_json(out / "config.json", {"config": cfg.to_dict(), "hash": cfg.hash, "result_hash": cfg.result_hash,
                                     "source": str(source), "environment": environment()})
    vocab = Vocab(cfg.task, lookups=cfg.train.lookups)
    bank = eval_bank = val_bank = pool = None
    stage_banks: dict = {}
    n_image = 0
    if cfg.needs_images:
        encoder = load_encoder(cfg.image.encoder, device=cfg.device)
        if encoder.d_model != cfg.model.d_ext:
            raise ValueError(f"model.d_ext={cfg.model.d_ext} but encoder {encoder.name} gives {encoder.d_model}-dim tokens")
        n_image = encoder.n_tokens
        bank = context_bank(cfg.task, cfg.image, encoder, cfg.task.n_objects, cfg.image.bank_size,
                            seed=BANK_SEEDS["train"], progress=progress)
        eval_bank = context_bank(cfg.task, cfg.image, encoder, cfg.task.n_objects, cfg.image.eval_bank_size,
                                 seed=BANK_SEEDS["eval"], progress=progress)
        if cfg.train.continuation_lrs:
            val_bank = context_bank(cfg.task, cfg.image, encoder, cfg.task.n_objects, cfg.image.eval_bank_size,
                                    seed=BANK_SEEDS["validation"], progress=progress)
        pool = noise_pool(encoder, cfg.image, bank.features, seed=BANK_SEEDS["noise"])
        stage_banks = {n: context_bank(cfg.task, cfg.image, encoder, n, cfg.image.bank_size, seed=BANK_SEEDS["train"],
                                       progress=progress)
                       for n in sorted({n for n, _ in cfg.train.image_stages} - {cfg.task.n_objects})}
        del encoder
    sources = Sources(cfg.task, vocab, bank, pool, n_noise=cfg.image.n_noise, n_image=n_image,
                      stage_banks=stage_banks, noise_every=cfg.image.noise_every(n_image) if n_image else 1)
    results = []
    for seed in cfg.seeds:
        sdir = out / f"seed{seed}"
        model = BindingModel(cfg.model, vocab, seed=seed).to(cfg.device)
        log1 = train_segment(model, sources, text_segment(cfg.train), cfg.train, sdir / "phase1",
                             seed=seed, name=f"seed{seed}/phase1", progress=progress)
        phase1 = {k: v.clone() for k, v in model.state().items()}
        res = _evaluate_and_analyse(cfg, model, sources, eval_bank, sdir / "phase1", "phase1", seed, ("text",), log1)
        results.append(res)
        for regime in cfg.regimes:
            results.append(run_regime(cfg, seed, regime, phase1, sources, eval_bank, sdir / regime, progress,
                                      val_bank=val_bank))
    return finish_study(cfg, results, out, seconds=time.perf_counter() - t0, progress=progress)


def finish_study(cfg: BindingConfig, results: list[dict], out: Path, *, seconds: float | None,
                 progress: bool = True) -> dict[str, Any]:
    """The study's last step from its per-unit results: tables, report, figures, ``summary.json``
    and the results page. ``seconds``: the wall time (None when the units ran in separate
    processes, e.g. one per seed, merged by ``scripts/binding_merge.py``)."""
    summary = write_outputs(cfg, results, out, seconds=seconds, figures=cfg.figures)
    summary["seconds"] = seconds
    write_json(out / "summary.json", summary)
    summary["page"] = str(write_report_page(out, progress=progress))  # from the tables just written
    return summary
