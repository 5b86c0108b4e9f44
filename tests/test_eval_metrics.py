"""Every metric against values worked out by hand."""

import math

import numpy as np
import pytest

from eval.metrics import (
    MURMUR_WEIGHTS,
    NO_ANSWER,
    accuracy,
    auroc_score,
    binary_metrics,
    bootstrap_ci,
    class_recalls,
    confusion_matrix,
    enforce_murmur_output,
    feature_metrics,
    macro_f1,
    murmur_metrics,
    ovr_auroc,
    uar,
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


def test_confusion_rows_are_truth_columns_prediction():
    # One Present patient called Absent, one Absent patient called Absent, one Unknown called Present.
    a = confusion_matrix(["Present", "Absent", "Unknown"], ["Absent", "Absent", "Present"],
                         ("Present", "Unknown", "Absent"))
    assert a.tolist() == [[0, 0, 1], [1, 0, 0], [0, 0, 1]]
    # An output outside the classes is counted in no column; naming it as a class gives it one.
    assert confusion_matrix(["Low", "Low"], ["Low", None], ("Low", "High")).tolist() == [[1, 0], [0, 0]]
    assert confusion_matrix(["Low", "Low"], ["Low", NO_ANSWER], ("Low", "High", NO_ANSWER))[0].tolist() == [1, 0, 1]


def test_weighted_accuracy_equals_the_official_transposed_formula():
    # The Challenge's evaluate_model.py: A with outputs as rows and labels as columns, W weighting each column by
    # its label; score = trace(W*A) / sum(W*A). Ours is the same number from the truth-by-rows matrix.
    rng = np.random.default_rng(3)
    classes = ("Present", "Unknown", "Absent")
    truth = list(rng.choice(classes, 50))
    pred = list(rng.choice(classes, 50))
    a = confusion_matrix(truth, pred, classes).T
    w = np.tile([MURMUR_WEIGHTS[c] for c in classes], (3, 1))
    assert weighted_accuracy(truth, pred) == pytest.approx(np.trace(w * a) / np.sum(w * a))


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


def test_expected_calibration_error_by_hand():
    from eval.metrics import calibration_bins

    # Confidence 0.9 and right (bin 0.9-1.0: |1 - 0.9|), 0.65 and wrong (bin 0.6-0.7: |0 - 0.65|), half each.
    probs = np.array([[0.9, 0.05, 0.05], [0.65, 0.25, 0.1]])
    cal = calibration_bins(["Present", "Absent"], probs, ("Present", "Unknown", "Absent"))
    assert cal["ece"] == pytest.approx(0.5 * 0.1 + 0.5 * 0.65)
    assert [(round(b["lo"], 6), b["n"], b["accuracy"]) for b in cal["bins"]] == [(0.6, 1, 0.0), (0.9, 1, 1.0)]


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

    def mean(i):
        return {"mean": float(x[i].mean())}

    a = bootstrap_ci(mean, 100, resamples=500, seed=1)["mean"]
    assert a == bootstrap_ci(mean, 100, resamples=500, seed=1)["mean"]
    assert a != bootstrap_ci(mean, 100, resamples=500, seed=2)["mean"]
    assert a[0] < 0.5 < a[1] and a[1] - a[0] < 0.3
    assert bootstrap_ci(mean, 0) == {} and bootstrap_ci(mean, 100, resamples=0) == {}
    # A resample where a statistic is undefined is left out of that statistic's interval only.
    both = bootstrap_ci(lambda i: {"mean": float(x[i].mean()), "never": float("nan")}, 100, resamples=50, seed=1)
    assert all(math.isnan(v) for v in both["never"]) and not math.isnan(both["mean"][0])


def test_every_statistic_of_one_call_uses_the_same_resamples():
    # Two copies of one statistic get the same interval only if they are computed on the same draws.
    x = np.arange(30.0)
    ci = bootstrap_ci(lambda i: {"a": float(x[i].mean()), "b": float(x[i].mean())}, 30, resamples=200, seed=5)
    assert ci["a"] == ci["b"]


def test_run_intervals_are_reproducible_from_the_seed():
    a = murmur_metrics(TRUE, PRED, resamples=100, seed=7)
    b = murmur_metrics(TRUE, PRED, resamples=100, seed=7)
    c = murmur_metrics(TRUE, PRED, resamples=100, seed=8)
    assert a.to_dict() == b.to_dict()
    assert a.weighted_accuracy.ci != c.weighted_accuracy.ci or a.uar.ci != c.uar.ci


def test_scores_match_scikit_learn():
    from sklearn.metrics import accuracy_score, f1_score, recall_score, roc_auc_score
    from sklearn.metrics import confusion_matrix as sk_confusion

    classes = ("Present", "Unknown", "Absent")
    rng = np.random.default_rng(0)
    for _ in range(20):
        truth = list(rng.choice(classes, 40, p=[0.3, 0.1, 0.6]))
        pred = [enforce_murmur_output(x) for x in rng.choice([*classes, "junk"], 40)]
        present = [c for c in classes if c in truth]
        seen = [c for c in classes if c in truth or c in pred]
        assert confusion_matrix(truth, pred, classes).tolist() == sk_confusion(truth, pred, labels=classes).tolist()
        assert accuracy(truth, pred) == pytest.approx(accuracy_score(truth, pred))
        assert uar(truth, pred, classes) == pytest.approx(recall_score(truth, pred, labels=present, average="macro"))
        assert macro_f1(truth, pred, classes) == pytest.approx(
            f1_score(truth, pred, labels=seen, average="macro", zero_division=0))
        recalls = recall_score(truth, pred, labels=present, average=None)
        assert [class_recalls(truth, pred, classes)[c] for c in present] == pytest.approx(list(recalls))
        scores = rng.random((40, 3)).round(1)  # rounded: ties must be ranked as scikit-learn does
        for k, c in enumerate(classes):
            positives = np.asarray(truth) == c
            want = roc_auc_score(positives, scores[:, k]) if 0 < positives.sum() < 40 else float("nan")
            assert auroc_score(positives, scores[:, k]) == pytest.approx(want, nan_ok=True)
