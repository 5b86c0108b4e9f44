"""Turn a run's per-patient outputs and the held labels into the metrics.json dictionary."""

from __future__ import annotations

import numpy as np

from assistant.data.labels import FEATURES, MURMUR_CLASSES
from eval.datasets import CIRCOR, EvalSet
from eval.metrics import binary_metrics, feature_metrics, murmur_metrics
from eval.predictors import MajorityPredictor, PatientOutput

UNKNOWN_AS = ("abnormal", "normal")


def _probs(outputs: list[PatientOutput]) -> np.ndarray | None:
    if any(o.probabilities is None for o in outputs):
        return None
    return np.array([[o.probabilities[c] for c in MURMUR_CLASSES] for o in outputs], dtype=float)


def score_circor(evalset: EvalSet, outputs: list[PatientOutput], resamples: int, seed: int) -> dict:
    patients = evalset.by_id()
    truth = [patients[o.patient_id].labels.murmur for o in outputs]
    murmur = murmur_metrics(truth, [o.murmur for o in outputs], _probs(outputs), resamples, seed)
    baseline = MajorityPredictor([patients[i] for i in evalset.fit])

    def by_feature(pick) -> dict:
        scores = {}
        # Features are annotated only for Present patients: they are scored there, where the label exists.
        for name, vocab in FEATURES.items():
            pairs = [(patients[o.patient_id].labels.feature(name), pick(o).get(name)) for o in outputs
                     if patients[o.patient_id].labels.murmur == "Present"]
            pairs = [(t, p) for t, p in pairs if t is not None]
            scores[name] = feature_metrics(name, vocab, [t for t, _ in pairs], [p for _, p in pairs],
                                           baseline.features[name], resamples, seed).to_dict()
        return scores

    result = {"murmur": murmur.to_dict(), "features": by_feature(lambda o: o.features),
              "feature_population": "patients whose expert murmur label is Present and whose feature label is set",
              "majority_fit": {"split": "train" if evalset.split == "val" else evalset.split, "n": len(evalset.fit)}}
    if all(o.feature_head is not None for o in outputs):
        result["features_head"] = by_feature(lambda o: o.feature_head)
    return result


def to_binary(murmur: str | None, unknown_as: str) -> str:
    """Present -> abnormal, Absent -> normal; Unknown per `unknown_as`; no valid class -> abnormal (Present)."""
    if murmur == "Absent":
        return "normal"
    if murmur == "Unknown":
        return unknown_as
    return "abnormal"


def score_binary(evalset: EvalSet, outputs: list[PatientOutput], unknown_as: str, resamples: int, seed: int) -> dict:
    truth = [evalset.binary_truth[o.patient_id] for o in outputs]
    pred = [to_binary(o.murmur, unknown_as) for o in outputs]
    probs = _probs(outputs)
    scores = None
    if probs is not None:
        scores = probs[:, 0] + (probs[:, 1] if unknown_as == "abnormal" else 0.0)
    n_unknown = sum(o.murmur == "Unknown" for o in outputs)
    m = binary_metrics(truth, pred, scores, n_unknown, resamples, seed)
    return {"binary": {**m.to_dict(), "unknown_as": unknown_as,
                       "mapping": f"Present->abnormal, Absent->normal, Unknown->{unknown_as}, "
                                  "no valid class->abnormal"}}


def score(evalset: EvalSet, outputs: list[PatientOutput], unknown_as: str = "abnormal", resamples: int = 1000,
          seed: int = 2022) -> dict:
    if evalset.layout == CIRCOR:
        return score_circor(evalset, outputs, resamples, seed)
    return score_binary(evalset, outputs, unknown_as, resamples, seed)
