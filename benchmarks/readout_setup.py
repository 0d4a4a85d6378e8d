"""The set-up shared by the one-token readout labs (bench_readout.py, superpose_lab.py): the quick
study's data and LM, the LM's cached concept prototypes, and the val images' leaf questions (one
true leaf, one seeded random distractor leaf each)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from interp.models.encoders import load_encoder
from interp.studies.taxonomy import run as study
from interp.studies.taxonomy.config import load_config
from interp.studies.taxonomy.prototypes import ImageTokenQuestions, Prototypes, cached_prototypes

ROOT = Path(__file__).resolve().parents[1]
QUICK = {"model.lm": "smollm2-135m", "data.max_concepts": 40, "prototypes.format_steps": 5,
         "prototypes.refine_steps": 10, "prototypes.batch_size": 16}
"""--quick: a small LM, 40 concepts, a short table: the same code in a minute."""


@dataclass
class ReadoutSetup:
    cfg: Any
    data: Any  # study.StudyData
    lm: Any  # HookedLM
    concepts: list[str]
    protos: Prototypes
    ask: ImageTokenQuestions
    tr: list[int]  # train rows of data.features
    ev: list[int]  # val rows
    ytr: torch.Tensor  # [n_train] prototype row of each train image
    yev: torch.Tensor  # [n_val]
    own: list[str]  # the true leaf of each val image (Yes)
    dist: list[str]  # a random other leaf (No)


def readout_setup(quick: bool) -> ReadoutSetup:
    cfg = load_config(ROOT / "experiments" / "quick.toml", QUICK if quick else {})
    data = study.load_data(cfg, load_encoder(cfg.model.encoder), progress=not quick)
    lm = study.load_study_lm(cfg, False, 0)
    concepts = sorted(data.taxonomy.leaves)
    protos = cached_prototypes(lm, data.taxonomy, concepts, cfg.prototypes, progress=not quick)
    tr, ev = data.splits["train"], data.splits["val"]
    ytr, yev = protos.index([data.records[i].concept for i in tr]), protos.index([data.records[i].concept for i in ev])
    rng = random.Random(0)
    own = [concepts[y] for y in yev.tolist()]
    dist = [rng.choice([c for c in concepts if c != o]) for o in own]
    return ReadoutSetup(cfg, data, lm, concepts, protos, ImageTokenQuestions(lm, data.taxonomy.phrase), tr, ev, ytr,
                        yev, own, dist)
