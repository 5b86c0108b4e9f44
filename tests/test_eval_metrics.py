"""Every metric against values worked out by hand."""

import math

import numpy as np
import pytest

from eval.metrics import (
    NO_ANSWER,
    binary_metrics,
    bootstrap_interval,
    challenge_confusion,
    enforce_murmur_output,
    feature_metrics,
    murmur_metrics,
    ovr_auroc,
    weighted_accuracy,
)

# Six patients; the last output is missing, which the Challenge scores as Present.
TRUE = ["Present", "Present", "Unknown", "Absent", "Absent", "Absent"]
PRED = ["Present", "Absent", "Unknown", "Absent", "Present", None]


def test_invalid_output_counts_as_present():
    assert enforce_murmur_output(None) == "Present"
    assert enforce_murmur_output("") == "Present"
    assert enforce_murmur_output("Present+Absent") == "Present"
    assert enforce_murmur_output("maybe") == "Present"
    assert enforce_murmur_output("Unknown") == "Unknown"


def test_official_confusion_orientation():
    # Rows are outputs, columns expert labels, as in the Challenge's compute_confusion_matrix.
    a = challenge_confusion(["Present", "Absent"], ["Absent", "Absent"], ("Present", "Unknown", "Absent"))
    assert a[2, 0] == 1 and a[2, 2] == 1 and a.sum() == 2


def test_weighted_accuracy_by_hand():
    # Correct: Present (w5) + Unknown (w3) + one Absent (w1) = 9.
    # Weighted total by true class: 2 Present * 5 + 1 Unknown * 3 + 3 Absent * 1 = 16.
    assert weighted_accuracy(TRUE, PRED) == pytest.approx(9 / 16)


def test_weighted_accuracy_invalid_rule_changes_the_score():
    # The missing output on a Present patient is scored as correct (it becomes Present) ...
    assert weighted_accuracy(["Present", "Absent"], [None, "Absent"]) == pytest.approx(1.0)
    # ... and on an Absent patient as wrong: 5*1 / (5*1 + 1*1).
    assert weighted_accuracy(["Present", "Absent"], ["Present", None]) == pytest.approx(5 / 6)


def test_weighted_accuracy_all_unknown_and_all_absent():
    truth = ["Present"] * 2 + ["Unknown"] * 1 + ["Absent"] * 7  # weighted total 10 + 3 + 7 = 20
    assert weighted_accuracy(truth, ["Unknown"] * 10) == pytest.approx(3 / 20)
    assert weighted_accuracy(truth, ["Absent"] * 10) == pytest.approx(7 / 20)
    assert weighted_accuracy(truth, ["Present"] * 10) == pytest.approx(10 / 20)


def test_murmur_metrics_by_hand():
    m = murmur_metrics(TRUE, PRED, resamples=200)
    assert m.n == 6 and m.n_invalid == 1
    assert m.weighted_accuracy.value == pytest.approx(9 / 16)
    assert m.accuracy.value == pytest.approx(3 / 6)
    assert m.recall == pytest.approx({"Present": 1 / 2, "Unknown": 1.0, "Absent": 1 / 3})
    assert m.uar.value == pytest.approx((1 / 2 + 1 + 1 / 3) / 3)
    # F1: Present tp1 fp2 fn1 -> 2/5; Unknown 1; Absent tp1 fp1 fn2 -> 2/5.
    assert m.macro_f1.value == pytest.approx((0.4 + 1 + 0.4) / 3)
    # Rows true, columns predicted (after the Present rule).
    assert m.confusion == [[1, 0, 1], [0, 1, 0], [2, 0, 1]]
    lo, hi = m.weighted_accuracy.ci
    assert lo <= m.weighted_accuracy.value <= hi
    assert m.auroc is None


def test_auroc_by_hand():
    truth = ["Present", "Unknown", "Absent", "Absent"]
    probs = np.array([[0.9, 0.05, 0.05], [0.2, 0.5, 0.3], [0.3, 0.6, 0.1], [0.1, 0.1, 0.8]])
    # Present: 0.9 beats every negative -> 1. Unknown: 0.5 beats 0.05 and 0.1, not 0.6 -> 2/3.
    # Absent: positives 0.1, 0.8 against negatives 0.05, 0.3 -> 3 of 4 pairs.
    assert ovr_auroc(truth, probs, ("Present", "Unknown", "Absent")) == pytest.approx(
        {"Present": 1.0, "Unknown": 2 / 3, "Absent": 3 / 4})
    m = murmur_metrics(truth, ["Present", "Unknown", "Unknown", "Absent"], probs, resamples=50)
    assert m.auroc_macro.value == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)
    assert m.calibration["ece"] >= 0 and sum(b["n"] for b in m.calibration["bins"]) == 4


def test_feature_metrics_by_hand():
    f = feature_metrics("systolic_pitch", ("Low", "Medium", "High"), ["Low", "Low", "Medium", "High"],
                        ["Low", None, "Medium", "Low"], majority_label="Low", resamples=100)
    assert f.n == 4 and f.n_unanswered == 1
    assert f.accuracy.value == pytest.approx(0.5)
    assert f.uar.value == pytest.approx((0.5 + 1 + 0) / 3)
    # F1 over Low/Medium/High: Low tp1 fp1 fn1 -> 1/2, Medium 1, High 0; the missing answer is no class.
    assert f.macro_f1.value == pytest.approx(0.5)
    assert f.majority_accuracy == pytest.approx(0.5)
    assert f.majority_uar == pytest.approx(1 / 3)
    assert f.labels == ["Low", "Medium", "High", NO_ANSWER]
    assert f.confusion[0] == [1, 0, 0, 1]


def test_binary_metrics_by_hand():
    b = binary_metrics(["abnormal"] * 3 + ["normal"] * 2, ["abnormal", "normal", "abnormal", "normal", "abnormal"],
                       scores=np.array([0.9, 0.4, 0.8, 0.1, 0.6]), resamples=100)
    assert b.sensitivity.value == pytest.approx(2 / 3)
    assert b.specificity.value == pytest.approx(1 / 2)
    assert b.uar.value == pytest.approx((2 / 3 + 1 / 2) / 2)
    # Positives 0.9, 0.4, 0.8 against negatives 0.1, 0.6: 5 of 6 pairs.
    assert b.auroc == pytest.approx(5 / 6)
    assert b.confusion == [[2, 1], [1, 1]]


def test_bootstrap_is_seeded_and_brackets_the_mean():
    x = np.r_[np.zeros(50), np.ones(50)]
    a = bootstrap_interval(lambda i: float(x[i].mean()), 100, resamples=500, seed=1)
    b = bootstrap_interval(lambda i: float(x[i].mean()), 100, resamples=500, seed=1)
    assert a == b and a[0] < 0.5 < a[1] and a[1] - a[0] < 0.3
    assert all(math.isnan(v) for v in bootstrap_interval(lambda i: 0.0, 0))


def test_fast_bootstrap_statistics_match_scikit_learn():
    from eval.metrics import MURMUR_WEIGHTS, _codes, confusion_stats, fast_auroc, macro_f1, uar

    classes = ("Present", "Unknown", "Absent")
    rng = np.random.default_rng(0)
    for _ in range(20):
        truth = list(rng.choice(classes, 40, p=[0.3, 0.1, 0.6]))
        pred = [enforce_murmur_output(x) for x in rng.choice([*classes, "junk"], 40)]
        fast = confusion_stats(_codes(truth, classes), _codes(pred, classes), 3,
                               np.array([MURMUR_WEIGHTS[c] for c in classes]))
        assert fast["weighted_accuracy"] == pytest.approx(weighted_accuracy(truth, pred))
        assert fast["uar"] == pytest.approx(uar(truth, pred, classes))
        assert fast["macro_f1"] == pytest.approx(macro_f1(truth, pred, classes))
        scores = rng.random((40, 3)).round(1)  # rounded: ties must be ranked as scikit-learn does
        slow = ovr_auroc(truth, scores, classes)
        for k, c in enumerate(classes):
            assert fast_auroc(np.asarray(truth) == c, scores[:, k]) == pytest.approx(slow[c], nan_ok=True)
