"""One run of the taxonomic study as a job: in one process or under ``torchrun`` (DDP on the
projector, optionally FSDP on the LM), and the cache warm-up every job needs first. The
commands ``python -m interp.train`` and ``python -m interp.sweep`` call these."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

from interp import distributed as D
from interp.io import read_json
from interp.models.encoders import load_encoder
from interp.studies.taxonomy import run as study


def warm_caches(cfg, progress: bool = True) -> None:
    """Build the image set, cache the encoder features and learn the LMs' concept prototypes
    (when the warm start uses them: the pretrained LM and each random-init control LM of the
    grid) once, so that parallel ranks or jobs started afterwards only read the caches."""
    data = study.load_data(cfg, load_encoder(cfg.model.encoder, device=cfg.model.device), progress=progress)
    if cfg.warm_start.kind != "prototypes":
        return
    lms = sorted({(r.random_init, r.seed if r.random_init else 0) for r in study.grid_runs(cfg)})
    for random_init, seed in lms:
        lm = study.load_study_lm(cfg, random_init, seed)
        study.study_prototypes(lm, data, cfg, progress)
        del lm


def run_spec(cfg, spec, *, evaluate: bool = True, progress: bool = True, shard_lm: bool = False) -> list[dict]:
    """Train (and evaluate) one run of a study config, in one process or under torchrun.

    One process: :func:`interp.studies.taxonomy.run.single_run`. Under torchrun: rank 0 warms
    the caches while the others wait, every rank loads the LM (``cfg.model.device="cuda"``
    puts rank r on ``cuda:LOCAL_RANK``) and trains (DDP on the projector); with
    ``shard_lm`` the LM's blocks are sharded across ranks (FSDP2) and every rank takes part
    in scoring the test questions, else rank 0 scores them alone. Rank 0 writes.
    Returns the result rows (empty on ranks > 0 or with ``evaluate=False``).
    """
    info = D.setup(cfg.model.device)
    if not info.enabled:
        if shard_lm:
            raise ValueError("shard_lm needs several processes: launch with torchrun --nproc_per_node N")
        return study.single_run(cfg, spec, evaluate=evaluate, progress=progress)
    cfg = replace(cfg, model=replace(cfg.model, device=str(D.local_device(cfg.model.device, info))))
    out, show = Path(cfg.out_dir), progress and info.is_main
    rows_path = out / "runs" / spec.run_id / "rows.json"
    encoder = load_encoder(cfg.model.encoder, device=cfg.model.device)
    data = D.main_first(lambda: study.load_data(cfg, encoder, progress=show), info)  # rank 0 builds the caches
    lm = study.load_study_lm(cfg, spec.random_init, spec.seed)
    if shard_lm:
        D.shard_lm(lm, info)
    vlm = study.new_study_vlm(lm, encoder, cfg, spec.seed)
    summary = study.train_run(vlm, data, spec, cfg, out, show)
    if not evaluate or rows_path.exists() or not (info.is_main or shard_lm):
        return read_json(rows_path)["rows"] if evaluate and info.is_main and rows_path.exists() else []
    if shard_lm and not info.is_main:  # a sharded LM scores collectively: same forwards, scratch files
        with tempfile.TemporaryDirectory() as scratch:
            study.evaluate_run(vlm, data, spec, cfg, Path(scratch), False, summary)
        return []
    return study.evaluate_run(vlm, data, spec, cfg, out, show, summary)
