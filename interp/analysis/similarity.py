"""Representation similarity between modalities: linear CKA and RSA over concepts."""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import spearmanr


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA between ``[n, d1]`` and ``[n, d2]`` (rows = the same concepts)."""
    x = x.double() - x.double().mean(0)
    y = y.double() - y.double().mean(0)
    hsic = (x.T @ y).norm() ** 2
    return float(hsic / ((x.T @ x).norm() * (y.T @ y).norm()))


def rsa(x: torch.Tensor, y: torch.Tensor) -> float:
    """Spearman correlation of the two cosine-dissimilarity matrices (upper triangles)."""
    def rdm(a):
        a = torch.nn.functional.normalize(a.double(), dim=-1)
        return (1 - a @ a.T).numpy()

    iu = np.triu_indices(x.shape[0], 1)
    return float(spearmanr(rdm(x)[iu], rdm(y)[iu]).statistic)
