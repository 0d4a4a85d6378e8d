"""Learning diagnostics of projector training: is the model learning, are its image tokens distinct?

- :func:`token_stats`: mean pairwise cosine of projected image tokens across images of different
  concepts (1 = every image gives the same token: the projector learned a constant) and their
  norm against the LM's text-token norm.
- :func:`verdict`: plain-word warnings from a run's diagnostic history (a leaf score at chance,
  collapsed tokens; near-constant tokens whose small image-dependent part still carries the
  image are named as such).
- :func:`learning_curve_figure`: loss and held-out scores against steps (plotly).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

# a leaf F1 below this on held-out images after training means "not learned" (chance is ~50 with
# balanced Yes/No questions, ~33-40 for a constant answer)
CHANCE_F1 = 60.0
COLLAPSED_COSINE = 0.95


@torch.no_grad()
def token_stats(vlm, features: torch.Tensor, groups: Sequence[str], text_norm: float) -> dict[str, float]:
    """Collapse statistics of ``vlm.projector`` on ``features [n, tokens, d_img]``.

    ``groups[i]``: the concept of image ``i``; cosines are averaged over pairs of images of
    different concepts (each image's tokens averaged first). Returns ``token_cosine``,
    ``centred_cosine`` (the same after removing the mean token over the images: how distinct
    the image-dependent parts are), ``image_part`` (mean norm of the image-dependent part over
    the norm of the mean token), ``token_norm`` (mean, residual scale) and ``norm_ratio``
    (= token_norm / text_norm).
    """
    z = vlm.projector(features.to(vlm.lm.device)).float() * vlm.lm.embed_scale  # [n, t, d]
    norms = z.norm(dim=-1).mean()
    z = z.mean(1)
    g = list(groups)
    diff = torch.tensor([[a != b for b in g] for a in g], device=z.device)

    def mean_cos(x: torch.Tensor) -> float:
        x = nn.functional.normalize(x, dim=-1)
        return float((x @ x.T)[diff].mean()) if bool(diff.any()) else float("nan")

    mean = z.mean(0)
    part = float((z - mean).norm(dim=-1).mean() / mean.norm().clamp(min=1e-12))
    return {"token_cosine": mean_cos(z), "centred_cosine": mean_cos(z - mean), "image_part": part,
            "token_norm": float(norms), "norm_ratio": float(norms) / text_norm}


def verdict(history: Sequence[dict], *, f1_key: str = "heldout_leaf_f1") -> list[str]:
    """Warnings, in plain words, from the last diagnostic record of a run (empty if all is well)."""
    if not history:
        return []
    last = history[-1]
    out = []
    f1 = last.get(f1_key)
    if f1 is not None and f1 == f1 and f1 < CHANCE_F1:
        out.append(f"NOT LEARNING: held-out leaf F1 is {f1:.1f} at step {last['step']} (chance is about 50; "
                   f"below {CHANCE_F1:.0f} the model does not see its images)")
    cos = last.get("token_cosine")
    if cos is not None and cos == cos and cos > COLLAPSED_COSINE:
        part = last.get("image_part")
        share = f"; their image-dependent part is {100 * part:.0f}% of the shared token" if part is not None else ""
        if f1 is not None and f1 == f1 and f1 >= CHANCE_F1:
            out.append(f"NEAR-CONSTANT TOKENS: image tokens of different concepts have mean cosine {cos:.3f} at step "
                       f"{last['step']}{share}, which still carries the image (held-out leaf F1 {f1:.1f})")
        else:
            out.append(f"COLLAPSED: image tokens of different concepts have mean cosine {cos:.3f} at step "
                       f"{last['step']}{share} (nearly the same token for every image)")
    return out


def stage_history(summary: dict) -> tuple[list[dict], list[float]]:
    """The whole learning history of a trained projector from its ``train.json`` summary: the
    readout stage's diagnostics and losses (``meta.readout``, when it ran with the monitor),
    then the fine-tuning's, its steps counted on from the end of the stage, then the record
    after the answer calibration (``calibration``, when it ran with the monitor). Every record
    gets a ``stage`` ("readout", "fine-tune" or "calibrated")."""
    readout = (summary.get("meta") or {}).get("readout") or {}
    first = [{**d, "stage": "readout"} for d in readout.get("diagnostics") or []]
    offset = int(readout.get("steps", 0)) if first else 0
    tail = [{**d, "step": d["step"] + offset, "stage": "fine-tune"} for d in summary.get("diagnostics") or []]
    if first and tail and tail[0]["step"] == first[-1]["step"]:
        tail = tail[1:]  # the fine-tuning's step 0 is the stage's last record
    cal = [{**d, "step": d["step"] + offset, "stage": "calibrated"}
           for d in (summary.get("calibration") or {}).get("diagnostics") or []]
    losses = list(readout.get("losses") or []) if first else []
    return first + tail + cal, losses + list(summary.get("losses") or [])


def learning_curve_figure(history: Sequence[dict], losses: Sequence[float], *, title: str):
    """Training loss (running mean) and held-out diagnostics against steps: a plotly figure."""
    import plotly.graph_objects as go  # deferred: plotly costs ~1 s; only the saved curve figure needs it
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=3, subplot_titles=("answer+EOS loss (train)", "held-out leaf score",
                                                        "image tokens"))
    if losses:
        w = 20
        run = [sum(losses[max(0, i - w + 1):i + 1]) / len(losses[max(0, i - w + 1):i + 1]) for i in range(len(losses))]
        fig.add_trace(go.Scatter(x=list(range(1, len(losses) + 1)), y=run, name="loss (mean of 20)"), row=1, col=1)
    cal = [h for h in history if h.get("stage") == "calibrated"]  # after the answer calibration: markers
    history = [h for h in history if h.get("stage") != "calibrated"]
    steps = [h["step"] for h in history]
    for key, name in (("heldout_leaf_f1", "leaf F1"), ("heldout_leaf_pairwise", "leaf pairwise %"),
                      ("train_leaf_f1", "train leaf F1")):
        if any(key in h for h in history):
            fig.add_trace(go.Scatter(x=steps, y=[h.get(key) for h in history], name=name, mode="lines+markers"),
                          row=1, col=2)
        if any(key in h for h in cal):
            fig.add_trace(go.Scatter(x=[h["step"] for h in cal], y=[h.get(key) for h in cal], mode="markers",
                                     marker={"symbol": "star", "size": 12}, name=f"{name}, answers calibrated"),
                          row=1, col=2)
    fig.add_hline(y=50, line_dash="dash", line_color="gray", row=1, col=2)
    for key, name in (("token_cosine", "mean pairwise cosine"), ("centred_cosine", "centred cosine"),
                      ("image_part", "image part / shared"), ("norm_ratio", "norm / text-token norm")):
        if any(key in h for h in history):
            fig.add_trace(go.Scatter(x=steps, y=[h.get(key) for h in history], name=name, mode="lines+markers"),
                          row=1, col=3)
    staged = [h for h in history if h.get("stage") == "readout"]
    tuned = any(h.get("stage") == "fine-tune" for h in history)
    if staged and tuned:  # where the readout stage ends and the fine-tuning starts
        for col in (1, 2, 3):
            fig.add_vline(x=staged[-1]["step"], line_dash="dot", line_color="gray", row=1, col=col)
    fig.update_xaxes(title_text="step")
    fig.update_layout(title=f"{title} (readout stage{', then fine-tuning after the dotted line' if tuned else ''})"
                      if staged else title)
    return fig
