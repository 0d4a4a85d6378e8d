"""Hypernym directions (difference of class means), cross-modal cosines and steering hooks."""

from __future__ import annotations

import torch


def mean_difference(acts: torch.Tensor, member: torch.Tensor) -> torch.Tensor:
    """Direction per layer: mean of members minus mean of non-members.

    ``acts [layers, n, d]``, ``member`` bool ``[n]`` -> ``[layers, d]``.
    """
    member = member.bool()
    if member.all() or not member.any():
        raise ValueError("a direction needs both members and non-members")
    return acts[:, member].float().mean(1) - acts[:, ~member].float().mean(1)


def cosine_per_layer(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``[layers, d]`` x ``[layers, d]`` -> ``[layers]`` cosine similarities."""
    return torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=-1)


def steering_hook(direction: torch.Tensor, positions: torch.Tensor, alpha: float):
    """A forward hook adding ``alpha * direction / |direction|`` at bool ``positions [batch, pos]``."""
    unit = direction / direction.norm().clamp(min=1e-8)

    def hook(t, hook):
        return t + alpha * positions.to(t.device).unsqueeze(-1).to(t.dtype) * unit.to(t.device, t.dtype)

    return hook
