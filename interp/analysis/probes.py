"""Linear probes per layer (scikit-learn, cross-validated, seeded) and cross-modal transfer."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def _probe(seed: int, C: float, class_weight: str | None = None):
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000, random_state=seed,
                                                              class_weight=class_weight))


def _weights(scoring: str, class_weight: str | None) -> str | None:
    """Balanced accuracy is scored with class-weighted probes: an unweighted probe on a 10-of-456
    membership label predicts the majority and scores chance whatever the representation holds."""
    return "balanced" if class_weight == "auto" and scoring == "balanced_accuracy" else (
        None if class_weight == "auto" else class_weight)


def probe_layers(acts: torch.Tensor, labels, *, folds: int = 5, seed: int = 0, C: float = 0.1,
                 scoring: str = "accuracy", class_weight: str | None = "auto") -> np.ndarray:
    """Cross-validated score per layer: ``acts [layers, n, d]``, ``labels [n]`` -> ``[layers]``.

    ``scoring``: any scikit-learn scorer name; use ``"balanced_accuracy"`` for imbalanced
    labels (membership in one hypernym), where chance is 0.5 whatever the class sizes.
    ``class_weight``: scikit-learn's (None or "balanced"); "auto" = "balanced" exactly when
    scoring balanced accuracy."""
    y = np.asarray(labels)
    n_min = np.bincount(np.unique(y, return_inverse=True)[1]).min()
    k = int(min(folds, n_min))
    if k < 2:
        raise ValueError(f"each class needs >= 2 examples for cross-validation; smallest class has {n_min}")
    cv = StratifiedKFold(k, shuffle=True, random_state=seed)
    cw = _weights(scoring, class_weight)
    return np.array([cross_val_score(_probe(seed, C, cw), a.float().numpy(), y, cv=cv,
                                     scoring=scoring).mean() for a in acts])


def transfer_layers(train_acts: torch.Tensor, train_labels, test_acts: torch.Tensor, test_labels, *,
                    seed: int = 0, C: float = 0.1, scoring: str = "accuracy",
                    class_weight: str | None = "auto") -> np.ndarray:
    """Fit on one modality, score on another, per layer: ``[layers, n, d]`` each -> ``[layers]``.

    The scaler is fitted on the training modality only: a transfer that needs the test
    modality's statistics is not a transfer."""
    from sklearn.metrics import get_scorer  # deferred: scikit-learn costs ~4 s; only scorer names need it

    scorer = get_scorer(scoring)
    ytr, yte = np.asarray(train_labels), np.asarray(test_labels)
    out = []
    for a, b in zip(train_acts, test_acts):
        clf = _probe(seed, C, _weights(scoring, class_weight)).fit(a.float().numpy(), ytr)
        out.append(scorer(clf, b.float().numpy(), yte))
    return np.array(out)
