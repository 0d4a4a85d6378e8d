"""What every task of the study needs: the VLM (from a trained projector checkpoint, a partial
one, or a fresh projector, per ``model.fallback``), the image features and the concept
images of the tasks' items."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from interp.models.encoders import load_encoder
from interp.models.hooked import HookedLM
from interp.models.lm import load_lm
from interp.studies.task_vectors.config import DTYPES, ModelConfig, TaskVectorConfig
from interp.studies.taxonomy.config import DataConfig as StudyData, StudyConfig
from interp.studies.taxonomy.run import load_data
from interp.vlm import HookedVLM, load_vlm


# -------------------------------------------------------------------- data
@dataclass
class Context:
    """The VLM and the image rows of every concept: ``example_row`` (a val-family rendering,
    used in image demonstrations) and ``query_row`` (the test-family rendering, used in image
    queries); ``features [n_rows, tokens, d_img]``."""

    vlm: Any
    features: torch.Tensor | None
    example_row: dict[str, int]
    query_row: dict[str, int]
    layers: list[int]


def resolve_projector(m: ModelConfig) -> dict[str, Any]:
    """Which projector the study will use, without loading the model:
    ``{"kind": "trained" | "partial" | "fresh", "path", "step", "description"}``."""
    ckpt = Path(m.checkpoint) if m.checkpoint else None
    if ckpt is not None and ckpt.exists():
        return {"kind": "trained", "path": str(ckpt), "step": None, "description": f"trained projector `{ckpt}`"}
    state = (ckpt.parent / "checkpoint.pt") if ckpt is not None else None
    if m.fallback == "partial" and state is not None and state.exists():
        step = int(torch.load(state, weights_only=True, map_location="cpu")["step"])
        return {"kind": "partial", "path": str(state), "step": step,
                "description": f"UNFINISHED training state `{state}` (step {step}; `{ckpt.name}` did not exist yet)"}
    if m.fallback == "fresh" or (m.fallback == "partial" and not m.checkpoint):
        return {"kind": "fresh", "path": None, "step": 0,
                "description": f"FRESH untrained projector (seed 0) for {m.lm} + {m.encoder}: image-query results mean little"}
    raise FileNotFoundError(f"no projector checkpoint at {ckpt}: train one with `python -m interp.run "
                            f"experiments/quick.toml`, set model.checkpoint, or set model.fallback to "
                            f"'partial' (an unfinished checkpoint.pt) or 'fresh' (an untrained projector)")


def load_study_vlm(m: ModelConfig, info: dict[str, Any] | None = None):
    """The HookedVLM of :func:`resolve_projector`'s choice, in ``m.dtype`` on ``m.device``."""

    info = info or resolve_projector(m)
    if info["kind"] == "trained":
        vlm = load_vlm(info["path"], device=m.device)
    else:
        lm = HookedLM(load_lm(m.lm, device=m.device))
        enc = load_encoder(m.encoder, device=m.device)
        proj = HookedVLM.new_projector(lm, enc.name, enc.d_model, enc.n_tokens, kind=m.projector,
                                       pool_to=m.pool_to or None, seed=0)
        if info["kind"] == "partial":
            proj.load_state_dict(torch.load(info["path"], weights_only=True, map_location="cpu")["projector"])
        vlm = HookedVLM(lm, proj.to(m.device), enc)
    if m.dtype != "float32":
        vlm = vlm.to(DTYPES[m.dtype])
    return vlm.eval()


def load_context(cfg: TaskVectorConfig, tasks: Sequence, progress: bool = True) -> Context:
    vlm = load_study_vlm(cfg.model)
    layers = list(cfg.method.layers) or list(range(vlm.lm.n_layers))
    for l in layers:
        vlm.lm.check_layer(int(l))
    concepts = sorted({it.concept for t in tasks if t.image for it in t.items})
    if not concepts:
        return Context(vlm, None, {}, {}, layers)
    data = load_data(StudyConfig(data=StudyData(seed=cfg.data.image_seed)), vlm.encoder, progress=progress)
    first: dict[tuple[str, str], int] = {}
    for split in ("val", "test", "train"):
        for i in data.splits[split]:
            first.setdefault((data.records[i].concept, split), i)
    rows, ex, q = [], {}, {}
    for c in concepts:
        e = first.get((c, "val"), first.get((c, "train")))
        t = first.get((c, "test"))
        if e is None or t is None:
            raise ValueError(f"concept {c!r} has no val/train or test image in the embedded image set")
        ex[c], q[c] = len(rows), len(rows) + 1
        rows += [e, t]
    feats = data.features[torch.tensor(rows)].clone()
    del data
    return Context(vlm, feats, ex, q, layers)
