"""Scores of a run: the Challenge 2022 murmur metrics, per-feature scores and the PhysioNet 2016 binary view.

The weighted accuracy follows the official `evaluate_model.py` of the George B. Moody PhysioNet Challenge
2022 exactly: an output with no valid class (or several) becomes Present (`enforce_positives`); the
confusion matrix has outputs as rows and expert labels as columns; every cell of column j is weighted by
the weight of the *true* class j (Present 5, Unknown 3, Absent 1); the score is trace(W*A) / sum(W*A).
Everything else comes from scikit-learn.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score, roc_auc_score

from assistant.data.labels import MURMUR_CLASSES

MURMUR_WEIGHTS = {"Present": 5.0, "Unknown": 3.0, "Absent": 1.0}
NO_ANSWER = "(none)"  # how a missing or unparseable feature answer shows in confusion matrices


def enforce_murmur_output(label: str | None) -> str:
    """The Challenge rule: an output that is not exactly one valid murmur class counts as Present."""
    return label if label in MURMUR_CLASSES else "Present"


def challenge_confusion(y_true: Sequence[str], y_pred: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """Rows are classifier outputs, columns expert labels (the official orientation)."""
    index = {c: i for i, c in enumerate(classes)}
    a = np.zeros((len(classes), len(classes)))
    for t, p in zip(y_true, y_pred, strict=True):
        a[index[p], index[t]] += 1
    return a


def weighted_accuracy(
    y_true: Sequence[str],
    y_pred: Sequence[str | None],
    classes: Sequence[str] = MURMUR_CLASSES,
    weights: dict[str, float] = MURMUR_WEIGHTS,
) -> float:
    """The Challenge 2022 murmur weighted accuracy, invalid outputs enforced to Present first."""
    outputs = [enforce_murmur_output(p) for p in y_pred] if tuple(classes) == MURMUR_CLASSES else list(y_pred)
    a = challenge_confusion(y_true, outputs, classes)
    w = np.tile(np.array([weights[c] for c in classes]), (len(classes), 1))
    total = float(np.sum(w * a))
    return float(np.trace(w * a) / total) if total > 0 else float("nan")


def class_recalls(y_true: Sequence[str], y_pred: Sequence[str], classes: Sequence[str]) -> dict[str, float]:
    """Recall of each class that occurs in `y_true` (NaN for the others)."""
    present = [c for c in classes if c in set(y_true)]
    values = recall_score(y_true, y_pred, labels=present, average=None, zero_division=0) if present else []
    out = {c: float("nan") for c in classes}
    out.update({c: float(v) for c, v in zip(present, values)})
    return out


def uar(y_true: Sequence[str], y_pred: Sequence[str], classes: Sequence[str]) -> float:
    """Unweighted average recall over the classes that occur in `y_true`."""
    recalls = [v for v in class_recalls(y_true, y_pred, classes).values() if not np.isnan(v)]
    return float(np.mean(recalls)) if recalls else float("nan")


def macro_f1(y_true: Sequence[str], y_pred: Sequence[str], classes: Sequence[str]) -> float:
    """Macro F1 over the classes seen in the truth or among the valid predictions.

    A missing answer is still a miss for its true class, but is not a class of its own to average over.
    """
    seen = set(y_true) | set(y_pred)
    labels = [c for c in classes if c in seen]
    return float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)) if labels else float("nan")


def ovr_auroc(y_true: Sequence[str], scores: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    """One-vs-rest AUROC per class from per-class scores (columns in `classes` order); NaN where undefined."""
    truth = np.asarray(y_true)
    out = {}
    for k, c in enumerate(classes):
        positives = truth == c
        out[c] = float(roc_auc_score(positives, scores[:, k])) if 0 < positives.sum() < len(truth) else float("nan")
    return out


def bootstrap_interval(
    statistic: Callable[[np.ndarray], float], n: int, resamples: int = 1000, seed: int = 2022, level: float = 0.95
) -> tuple[float, float]:
    """Percentile interval of `statistic(indices)` over patient resamples with replacement."""
    if n == 0 or resamples <= 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    values = np.array([statistic(rng.integers(0, n, n)) for _ in range(resamples)], dtype=float)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return float(lo), float(hi)


def bootstrap_intervals(
    statistics: Callable[[np.ndarray], dict[str, float]], n: int, resamples: int = 1000, seed: int = 2022,
    level: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """Like `bootstrap_interval`, for several statistics computed together on each resample."""
    if n == 0 or resamples <= 0:
        return {}
    rng = np.random.default_rng(seed)
    draws = [statistics(rng.integers(0, n, n)) for _ in range(resamples)]
    tail = (1 - level) / 2 * 100
    out = {}
    for key in draws[0]:
        values = np.array([d[key] for d in draws], dtype=float)
        values = values[~np.isnan(values)]
        out[key] = tuple(float(v) for v in np.percentile(values, [tail, 100 - tail])) if values.size else (
            float("nan"), float("nan"))
    return out


def _codes(values: Sequence[str | None], classes: Sequence[str]) -> np.ndarray:
    """Class indices; anything outside `classes` gets len(classes)."""
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index.get(v, len(classes)) for v in values], dtype=int)


def confusion_stats(t: np.ndarray, p: np.ndarray, k: int, weights: np.ndarray | None = None) -> dict[str, float]:
    """Accuracy, UAR, macro F1 (and weighted accuracy) from integer codes; the same definitions as the
    scikit-learn based functions above, fast enough to run on every bootstrap resample."""
    cm = np.bincount(t * (k + 1) + p, minlength=(k + 1) ** 2).reshape(k + 1, k + 1)[:k]  # rows true
    support = cm.sum(axis=1)
    tp = np.diag(cm[:, :k]).astype(float)
    predicted = cm[:, :k].sum(axis=0)
    seen_true = support > 0
    seen = seen_true | (predicted > 0)
    n = support.sum()
    out = {
        "accuracy": float(tp.sum() / n) if n else float("nan"),
        "uar": float(np.mean(tp[seen_true] / support[seen_true])) if seen_true.any() else float("nan"),
    }
    denom = 2 * tp + (predicted - tp) + (support - tp)
    f1 = np.divide(2 * tp, denom, out=np.zeros(k), where=denom > 0)
    out["macro_f1"] = float(f1[seen].mean()) if seen.any() else float("nan")
    if weights is not None:
        total = float((weights * support).sum())
        out["weighted_accuracy"] = float((weights * tp).sum() / total) if total else float("nan")
    return out


def fast_auroc(positives: np.ndarray, scores: np.ndarray) -> float:
    """Mann-Whitney AUROC with average ranks for ties (what roc_auc_score computes)."""
    n_pos = int(positives.sum())
    n_neg = len(positives) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@dataclass
class Scored:
    """A metric with its bootstrap interval."""

    value: float
    ci: tuple[float, float] = (float("nan"), float("nan"))

    def to_dict(self) -> dict:
        return {"value": self.value, "ci95": list(self.ci)}


@dataclass
class MurmurMetrics:
    n: int
    n_invalid: int
    weighted_accuracy: Scored
    accuracy: Scored
    uar: Scored
    macro_f1: Scored
    recall: dict[str, float]
    auroc: dict[str, float] | None
    auroc_macro: Scored | None
    confusion: list[list[int]]  # rows true, columns predicted, MURMUR_CLASSES order
    calibration: dict | None = None

    def to_dict(self) -> dict:
        return {
            "n": self.n,
            "n_invalid_outputs": self.n_invalid,
            "weighted_accuracy": self.weighted_accuracy.to_dict(),
            "accuracy": self.accuracy.to_dict(),
            "uar": self.uar.to_dict(),
            "macro_f1": self.macro_f1.to_dict(),
            "recall": self.recall,
            "auroc": self.auroc,
            "auroc_macro": self.auroc_macro.to_dict() if self.auroc_macro else None,
            "confusion": {"rows_true_cols_pred": list(MURMUR_CLASSES), "matrix": self.confusion},
            "calibration": self.calibration,
        }


def _with_intervals(points: dict[str, float], intervals: dict[str, tuple[float, float]]) -> dict[str, Scored]:
    return {k: Scored(v, intervals.get(k, (float("nan"), float("nan")))) for k, v in points.items()}


def calibration_bins(y_true: Sequence[str], probs: np.ndarray, classes: Sequence[str], bins: int = 10) -> dict:
    """Top-class confidence against accuracy in equal-width bins, and the expected calibration error."""
    truth = np.asarray(y_true)
    conf = probs.max(axis=1)
    correct = np.asarray(classes)[probs.argmax(axis=1)] == truth
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        mask = which == b
        if not mask.any():
            continue
        acc, mean_conf = float(correct[mask].mean()), float(conf[mask].mean())
        ece += mask.mean() * abs(acc - mean_conf)
        rows.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": int(mask.sum()),
                     "confidence": mean_conf, "accuracy": acc})
    return {"bins": rows, "ece": float(ece)}


def murmur_metrics(
    y_true: Sequence[str],
    y_pred: Sequence[str | None],
    probs: np.ndarray | None = None,
    resamples: int = 1000,
    seed: int = 2022,
) -> MurmurMetrics:
    """Challenge metrics of the murmur decision; `probs` columns follow MURMUR_CLASSES."""
    classes = MURMUR_CLASSES
    truth = np.asarray(y_true)
    outputs = np.asarray([enforce_murmur_output(p) for p in y_pred])
    n = len(truth)
    points = {
        "weighted_accuracy": weighted_accuracy(truth, outputs),
        "accuracy": float(accuracy_score(truth, outputs)) if n else float("nan"),
        "uar": uar(truth, outputs, classes),
        "macro_f1": macro_f1(truth, outputs, classes),
    }
    auroc = calibration = None
    t, p = _codes(truth, classes), _codes(outputs, classes)
    w = np.array([MURMUR_WEIGHTS[c] for c in classes])
    has_probs = probs is not None and n and not np.isnan(probs).any()
    if has_probs:
        auroc = ovr_auroc(truth, probs, classes)
        defined = [v for v in auroc.values() if not np.isnan(v)]
        points["auroc_macro"] = float(np.mean(defined)) if defined else float("nan")
        calibration = calibration_bins(truth, probs, classes)

    def stats(i: np.ndarray) -> dict[str, float]:
        out = confusion_stats(t[i], p[i], len(classes), w)
        if has_probs:
            values = [fast_auroc(t[i] == k, probs[i, k]) for k in range(len(classes))]
            values = [v for v in values if not np.isnan(v)]
            out["auroc_macro"] = float(np.mean(values)) if values else float("nan")
        return out

    scored = _with_intervals(points, bootstrap_intervals(stats, n, resamples, seed))
    return MurmurMetrics(
        n=n,
        n_invalid=sum(x not in classes for x in y_pred),
        weighted_accuracy=scored["weighted_accuracy"],
        accuracy=scored["accuracy"],
        uar=scored["uar"],
        macro_f1=scored["macro_f1"],
        recall=class_recalls(truth, outputs, classes),
        auroc=auroc,
        auroc_macro=scored.get("auroc_macro"),
        confusion=confusion_matrix(truth, outputs, labels=list(classes)).tolist() if n else [],
        calibration=calibration,
    )


@dataclass
class FeatureMetrics:
    feature: str
    n: int
    n_unanswered: int
    accuracy: Scored
    uar: Scored
    macro_f1: Scored
    majority_label: str | None
    majority_accuracy: float
    majority_uar: float
    labels: list[str] = field(default_factory=list)  # confusion axes; NO_ANSWER last when it occurs
    confusion: list[list[int]] = field(default_factory=list)  # rows true, columns predicted

    def to_dict(self) -> dict:
        return {
            "n": self.n,
            "n_unanswered": self.n_unanswered,
            "accuracy": self.accuracy.to_dict(),
            "uar": self.uar.to_dict(),
            "macro_f1": self.macro_f1.to_dict(),
            "majority_baseline": {"label": self.majority_label, "accuracy": self.majority_accuracy,
                                  "uar": self.majority_uar},
            "confusion": {"labels": self.labels, "rows_true_cols_pred": self.confusion},
        }


def feature_metrics(
    feature: str,
    vocabulary: Sequence[str],
    y_true: Sequence[str],
    y_pred: Sequence[str | None],
    majority_label: str | None,
    resamples: int = 1000,
    seed: int = 2022,
) -> FeatureMetrics:
    """Scores of one murmur feature; a missing or out-of-vocabulary answer counts as wrong."""
    truth = np.asarray(y_true, dtype=object)
    outputs = np.asarray([p if p in vocabulary else NO_ANSWER for p in y_pred], dtype=object)
    n = len(truth)
    labels = list(vocabulary) + ([NO_ANSWER] if (outputs == NO_ANSWER).any() else [])
    majority = np.asarray([majority_label or NO_ANSWER] * n, dtype=object)
    points = {
        "accuracy": float(accuracy_score(truth, outputs)) if n else float("nan"),
        "uar": uar(truth, outputs, vocabulary),
        "macro_f1": macro_f1(truth, outputs, vocabulary),
    }
    t, p = _codes(truth, vocabulary), _codes(outputs, vocabulary)
    scored = _with_intervals(points, bootstrap_intervals(
        lambda i: confusion_stats(t[i], p[i], len(vocabulary)), n, resamples, seed))
    return FeatureMetrics(
        feature=feature,
        n=n,
        n_unanswered=int((outputs == NO_ANSWER).sum()),
        accuracy=scored["accuracy"],
        uar=scored["uar"],
        macro_f1=scored["macro_f1"],
        majority_label=majority_label,
        majority_accuracy=float(accuracy_score(truth, majority)) if n else float("nan"),
        majority_uar=uar(truth, majority, vocabulary) if n else float("nan"),
        labels=labels,
        confusion=confusion_matrix(truth, outputs, labels=labels).tolist() if n else [],
    )


@dataclass
class BinaryMetrics:
    """PhysioNet 2016 view: abnormal is the positive class."""

    n: int
    uar: Scored
    sensitivity: Scored
    specificity: Scored
    auroc: float | None
    confusion: list[list[int]]  # rows true, cols predicted, order (abnormal, normal)
    unknown_outputs: int

    def to_dict(self) -> dict:
        return {
            "n": self.n,
            "uar": self.uar.to_dict(),
            "sensitivity": self.sensitivity.to_dict(),
            "specificity": self.specificity.to_dict(),
            "auroc": self.auroc,
            "confusion": {"rows_true_cols_pred": ["abnormal", "normal"], "matrix": self.confusion},
            "unknown_outputs": self.unknown_outputs,
        }


def binary_metrics(
    y_true: Sequence[str],
    y_pred: Sequence[str],
    scores: np.ndarray | None = None,
    unknown_outputs: int = 0,
    resamples: int = 1000,
    seed: int = 2022,
) -> BinaryMetrics:
    """UAR, sensitivity and specificity of abnormal/normal decisions; `scores` are P(abnormal)."""
    classes = ("abnormal", "normal")
    truth, outputs = np.asarray(y_true), np.asarray(y_pred)
    n = len(truth)
    auroc = None
    if scores is not None and n and not np.isnan(scores).any() and 0 < (truth == "abnormal").sum() < n:
        auroc = float(roc_auc_score(truth == "abnormal", scores))
    recalls = class_recalls(truth, outputs, classes)
    points = {"uar": uar(truth, outputs, classes), "sensitivity": recalls["abnormal"],
              "specificity": recalls["normal"]}
    t, p = _codes(truth, classes), _codes(outputs, classes)

    def stats(i: np.ndarray) -> dict[str, float]:
        ti, pi = t[i], p[i]
        sens = float((pi[ti == 0] == 0).mean()) if (ti == 0).any() else float("nan")
        spec = float((pi[ti == 1] == 1).mean()) if (ti == 1).any() else float("nan")
        return {"uar": confusion_stats(ti, pi, 2)["uar"], "sensitivity": sens, "specificity": spec}

    scored = _with_intervals(points, bootstrap_intervals(stats, n, resamples, seed))
    return BinaryMetrics(
        n=n,
        uar=scored["uar"],
        sensitivity=scored["sensitivity"],
        specificity=scored["specificity"],
        auroc=auroc,
        confusion=confusion_matrix(truth, outputs, labels=list(classes)).tolist() if n else [],
        unknown_outputs=unknown_outputs,
    )
