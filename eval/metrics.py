"""Every score MurmurScope reports: the Challenge 2022 murmur metrics, per-feature scores, the PhysioNet 2016
binary view, and their bootstrap intervals. `eval run`, `eval classifier`, `eval compare` and the classifier's
training all score through this module.

Conventions (one each):
- Confusion matrices have the expert label (truth) as rows and the prediction as columns, in the order of the
  class list given; an output outside the list (a missing answer) is counted in no column unless the list
  names it (the features' NO_ANSWER).
- The weighted accuracy is the George B. Moody PhysioNet Challenge 2022 murmur score of the official
  `evaluate_model.py`: an output with no valid class (or several) becomes Present (`enforce_murmur_output`);
  every correct patient earns the weight of its true class (Present 5, Unknown 3, Absent 1) and the score is
  that sum over the weighted count of patients. The official code builds the transposed matrix (outputs as
  rows, labels as columns) and weights each column by its label: trace(W*A) / sum(W*A) is the same number.
- UAR is the mean recall over the classes that occur in the truth; macro F1 averages the classes seen in the
  truth or among the valid predictions.
- Intervals are percentile intervals over patients resampled with replacement (`bootstrap_ci`), seeded by
  one `seed` (default BOOTSTRAP_SEED), all statistics of a call drawn on the same resamples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import rankdata

from assistant.data.labels import MURMUR_CLASSES

MURMUR_WEIGHTS = {"Present": 5.0, "Unknown": 3.0, "Absent": 1.0}
NO_ANSWER = "(none)"  # how a missing or unparseable feature answer shows in confusion matrices
BOOTSTRAP_SEED = 2022


def enforce_murmur_output(label: str | None) -> str:
    """The Challenge rule: an output that is not exactly one valid murmur class counts as Present."""
    return label if label in MURMUR_CLASSES else "Present"


def class_codes(values: Sequence[str | None], classes: Sequence[str]) -> np.ndarray:
    """Class indices; anything outside `classes` gets len(classes)."""
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index.get(v, len(classes)) for v in values], dtype=int)


def _counts(t: np.ndarray, p: np.ndarray, k: int) -> np.ndarray:
    """(k, k + 1) counts from codes: rows truth, columns prediction, the last column outputs outside the classes."""
    return np.bincount(t * (k + 1) + p, minlength=(k + 1) ** 2).reshape(k + 1, k + 1)[:k]


def confusion_matrix(y_true: Sequence[str], y_pred: Sequence[str | None], classes: Sequence[str]) -> np.ndarray:
    """Counts with rows = truth and columns = prediction, both in `classes` order."""
    k = len(classes)
    return _counts(class_codes(y_true, classes), class_codes(y_pred, classes), k)[:, :k]


def confusion_stats(t: np.ndarray, p: np.ndarray, k: int, weights: np.ndarray | None = None) -> dict[str, float]:
    """Accuracy, UAR, macro F1 (and, given per-class weights, the weighted accuracy) from class codes.

    The one implementation of these scores: the named functions below call it, and so does every bootstrap
    resample, where it is fast enough to run a thousand times.
    """
    cm = _counts(t, p, k)
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


def _stats(y_true: Sequence[str], y_pred: Sequence[str | None], classes: Sequence[str],
           weights: np.ndarray | None = None) -> dict[str, float]:
    return confusion_stats(class_codes(y_true, classes), class_codes(y_pred, classes), len(classes), weights)


def weighted_accuracy(
    y_true: Sequence[str],
    y_pred: Sequence[str | None],
    classes: Sequence[str] = MURMUR_CLASSES,
    weights: dict[str, float] = MURMUR_WEIGHTS,
) -> float:
    """The Challenge 2022 murmur weighted accuracy, invalid outputs enforced to Present first."""
    outputs = [enforce_murmur_output(p) for p in y_pred] if tuple(classes) == MURMUR_CLASSES else list(y_pred)
    return _stats(y_true, outputs, classes, np.array([weights[c] for c in classes]))["weighted_accuracy"]


def accuracy(y_true: Sequence[str], y_pred: Sequence[str | None], classes: Sequence[str] = MURMUR_CLASSES) -> float:
    """Share of patients whose prediction equals the truth; an output outside `classes` is wrong."""
    return _stats(y_true, y_pred, classes)["accuracy"]


def uar(y_true: Sequence[str], y_pred: Sequence[str | None], classes: Sequence[str] = MURMUR_CLASSES) -> float:
    """Unweighted average recall over the classes that occur in `y_true`."""
    return _stats(y_true, y_pred, classes)["uar"]


def macro_f1(y_true: Sequence[str], y_pred: Sequence[str | None], classes: Sequence[str] = MURMUR_CLASSES) -> float:
    """Macro F1 over the classes seen in the truth or among the valid predictions.

    A missing answer is still a miss for its true class, but is not a class of its own to average over.
    """
    return _stats(y_true, y_pred, classes)["macro_f1"]


def class_recalls(y_true: Sequence[str], y_pred: Sequence[str | None], classes: Sequence[str]) -> dict[str, float]:
    """Recall of each class that occurs in `y_true` (NaN for the others)."""
    k = len(classes)
    cm = _counts(class_codes(y_true, classes), class_codes(y_pred, classes), k)
    support = cm.sum(axis=1)
    return {c: float(cm[i, i] / support[i]) if support[i] else float("nan") for i, c in enumerate(classes)}


def auroc_score(positives: np.ndarray, scores: np.ndarray) -> float:
    """Mann-Whitney AUROC with average ranks for ties (scikit-learn's roc_auc_score); NaN with one class only."""
    positives = np.asarray(positives, dtype=bool)
    n_pos = int(positives.sum())
    n_neg = len(positives) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def ovr_auroc(y_true: Sequence[str], scores: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    """One-vs-rest AUROC per class from per-class scores (columns in `classes` order); NaN where undefined."""
    truth = np.asarray(y_true)
    return {c: auroc_score(truth == c, scores[:, k]) for k, c in enumerate(classes)}


def bootstrap_ci(
    statistics: Callable[[np.ndarray], dict[str, float]], n: int, resamples: int = 1000,
    seed: int = BOOTSTRAP_SEED, level: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """Percentile intervals of `statistics(indices)` over `resamples` draws of n patients with replacement.

    Every statistic is computed on the same draws; resamples where one is undefined (NaN) are left out of its
    interval. Empty when there is nothing to resample.
    """
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
    seed: int = BOOTSTRAP_SEED,
) -> MurmurMetrics:
    """Challenge metrics of the murmur decision; `probs` columns follow MURMUR_CLASSES."""
    classes = MURMUR_CLASSES
    truth = np.asarray(y_true)
    outputs = np.asarray([enforce_murmur_output(p) for p in y_pred])
    n = len(truth)
    auroc = calibration = None
    t, p = class_codes(truth, classes), class_codes(outputs, classes)
    w = np.array([MURMUR_WEIGHTS[c] for c in classes])
    has_probs = probs is not None and n and not np.isnan(probs).any()
    if has_probs:
        auroc = ovr_auroc(truth, probs, classes)
        calibration = calibration_bins(truth, probs, classes)

    def stats(i: np.ndarray) -> dict[str, float]:
        out = confusion_stats(t[i], p[i], len(classes), w)
        if has_probs:
            values = [auroc_score(t[i] == k, probs[i, k]) for k in range(len(classes))]
            values = [v for v in values if not np.isnan(v)]
            out["auroc_macro"] = float(np.mean(values)) if values else float("nan")
        return out

    # The point estimates are the statistics of the patients as they are: the same code as every resample.
    scored = _with_intervals(stats(np.arange(n)), bootstrap_ci(stats, n, resamples, seed))
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
        confusion=confusion_matrix(truth, outputs, classes).tolist() if n else [],
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
    seed: int = BOOTSTRAP_SEED,
) -> FeatureMetrics:
    """Scores of one murmur feature; a missing or out-of-vocabulary answer counts as wrong."""
    truth = np.asarray(y_true, dtype=object)
    outputs = np.asarray([p if p in vocabulary else NO_ANSWER for p in y_pred], dtype=object)
    n = len(truth)
    labels = list(vocabulary) + ([NO_ANSWER] if (outputs == NO_ANSWER).any() else [])
    majority = [majority_label or NO_ANSWER] * n
    t, p = class_codes(truth, vocabulary), class_codes(outputs, vocabulary)

    def stats(i: np.ndarray) -> dict[str, float]:
        return confusion_stats(t[i], p[i], len(vocabulary))

    scored = _with_intervals(stats(np.arange(n)), bootstrap_ci(stats, n, resamples, seed))
    return FeatureMetrics(
        feature=feature,
        n=n,
        n_unanswered=int((outputs == NO_ANSWER).sum()),
        accuracy=scored["accuracy"],
        uar=scored["uar"],
        macro_f1=scored["macro_f1"],
        majority_label=majority_label,
        majority_accuracy=accuracy(truth, majority, vocabulary),
        majority_uar=uar(truth, majority, vocabulary),
        labels=labels,
        confusion=confusion_matrix(truth, outputs, labels).tolist() if n else [],
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
    seed: int = BOOTSTRAP_SEED,
) -> BinaryMetrics:
    """UAR, sensitivity and specificity of abnormal/normal decisions; `scores` are P(abnormal)."""
    classes = ("abnormal", "normal")
    truth, outputs = np.asarray(y_true), np.asarray(y_pred)
    n = len(truth)
    auroc = None
    if scores is not None and n and not np.isnan(scores).any() and 0 < (truth == "abnormal").sum() < n:
        auroc = auroc_score(truth == "abnormal", scores)
    t, p = class_codes(truth, classes), class_codes(outputs, classes)

    def stats(i: np.ndarray) -> dict[str, float]:
        ti, pi = t[i], p[i]
        sens = float((pi[ti == 0] == 0).mean()) if (ti == 0).any() else float("nan")
        spec = float((pi[ti == 1] == 1).mean()) if (ti == 1).any() else float("nan")
        return {"uar": confusion_stats(ti, pi, 2)["uar"], "sensitivity": sens, "specificity": spec}

    scored = _with_intervals(stats(np.arange(n)), bootstrap_ci(stats, n, resamples, seed))
    return BinaryMetrics(
        n=n,
        uar=scored["uar"],
        sensitivity=scored["sensitivity"],
        specificity=scored["specificity"],
        auroc=auroc,
        confusion=confusion_matrix(truth, outputs, classes).tolist() if n else [],
        unknown_outputs=unknown_outputs,
    )
