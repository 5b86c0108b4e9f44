"""Scores for the murmur classifier: the Challenge's weighted accuracy, UAR, bootstrap intervals."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from assistant.data.labels import MURMUR_CLASSES

# PhysioNet Challenge 2022: a missed Present costs most, then Unknown.
MURMUR_WEIGHTS = {"Present": 5.0, "Unknown": 3.0, "Absent": 1.0}


def weighted_accuracy(y_true: Sequence[str], y_pred: Sequence[str]) -> float:
    w = np.array([MURMUR_WEIGHTS[t] for t in y_true])
    hit = np.array([t == p for t, p in zip(y_true, y_pred)], dtype=float)
    return float((w * hit).sum() / w.sum()) if len(w) else float("nan")


def recalls(y_true: Sequence[str], y_pred: Sequence[str], classes: Sequence[str]) -> dict[str, float]:
    out = {}
    for c in classes:
        idx = [i for i, t in enumerate(y_true) if t == c]
        if idx:
            out[c] = sum(y_pred[i] == c for i in idx) / len(idx)
    return out


def uar(y_true: Sequence[str], y_pred: Sequence[str], classes: Sequence[str] = MURMUR_CLASSES) -> float:
    """Unweighted average recall over the classes that occur in `y_true`."""
    r = recalls(y_true, y_pred, classes)
    return float(np.mean(list(r.values()))) if r else float("nan")


def accuracy(y_true: Sequence[str], y_pred: Sequence[str]) -> float:
    return float(np.mean([t == p for t, p in zip(y_true, y_pred)])) if len(y_true) else float("nan")


def bootstrap_ci(metric: Callable[[list, list], float], y_true: Sequence[str], y_pred: Sequence[str],
                 n: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval over patients resampled with replacement."""
    if len(y_true) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    yt, yp = list(y_true), list(y_pred)
    stats = []
    for _ in range(n):
        idx = rng.integers(0, len(yt), len(yt))
        stats.append(metric([yt[i] for i in idx], [yp[i] for i in idx]))
    lo, hi = np.nanpercentile(stats, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return float(lo), float(hi)


def confusion(y_true: Sequence[str], y_pred: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """rows: true class, columns: predicted class."""
    m = np.zeros((len(classes), len(classes)), dtype=int)
    for t, p in zip(y_true, y_pred):
        if t in classes and p in classes:
            m[classes.index(t), classes.index(p)] += 1
    return m
