"""5-fold patient-level cross-validation of murmur recipes on all labelled CirCor patients.

Each recipe is trained on four folds and predicts the fifth, so every patient gets one out-of-fold (OOF)
prediction from a model that never saw them. The folds are `assistant.data.split.fold_patients`
(stratified like the project split). OOF predictions are written per fold under `out/<recipe>/`
(a finished fold is read back, never recomputed), and every number of the table comes from them:
macro AUROC (one-vs-rest over the three classes), weighted accuracy, UAR and ECE per fold, then mean
and spread (sample standard deviation over folds), and the same for the murmur features against a
majority baseline fitted on each fold's training patients.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from assistant.data.circor import Patient, read_folder
from assistant.data.labels import FEATURES, MURMUR_CLASSES
from assistant.data.split import Split, fold_patients
from assistant.errors import MurmurScopeError
from eval.metrics import calibration_bins, ovr_auroc, uar, weighted_accuracy

SYSTOLIC_FEATURES = ("most_audible_location", "systolic_timing", "systolic_shape", "systolic_grading",
                     "systolic_pitch", "systolic_quality")


@dataclass(frozen=True)
class CVConfig:
    circor_root: Path = field(metadata={"help": "Labelled CirCor folder (e.g. ../shared/circor-dev)."})
    out: Path = field(default=Path("build/cv"), metadata={"help": "Where each recipe's folds and OOF go."})
    folds: int = field(default=5, metadata={"help": "Cross-validation folds (patient level)."})
    seed: int = field(default=2022, metadata={"help": "Seed of the fold assignment."})
    only_folds: tuple[int, ...] | None = field(default=None, metadata={
        "help": "Run only these folds (to measure the cost of an expensive recipe first)."})
    threads: int = field(default=1, metadata={"help": "torch CPU threads."})


@dataclass
class OOFPatient:
    """One patient's out-of-fold prediction."""

    patient_id: str
    fold: int
    murmur: str  # the truth
    probabilities: list[float]  # MURMUR_CLASSES order
    call: str  # the recipe's own decision
    recording_probabilities: list[list[float]] = field(default_factory=list)
    recording_sites: list[str | None] = field(default_factory=list)
    # feature name -> probabilities in FEATURES[name] order (the heads' output whatever the murmur call)
    features: dict[str, list[float]] = field(default_factory=dict)


def patients_and_folds(config: CVConfig) -> tuple[list[Patient], list[Split]]:
    patients = [p for p in read_folder(config.circor_root) if p.labels is not None]
    if len(patients) < config.folds:
        raise MurmurScopeError(f"{config.circor_root}: {len(patients)} labelled patients for {config.folds} folds")
    return patients, fold_patients(patients, config.folds, config.seed)


def fold_indices(config: CVConfig) -> list[int]:
    wanted = range(config.folds) if config.only_folds is None else config.only_folds
    bad = [k for k in wanted if not 0 <= k < config.folds]
    if bad:
        raise MurmurScopeError(f"fold {bad[0]} does not exist (folds 0-{config.folds - 1})")
    return list(wanted)


def save_fold(path: Path, rows: list[OOFPatient], info: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"info": info, "patients": [asdict(r) for r in rows]}) + "\n")
    tmp.replace(path)  # a fold file exists only once the fold is complete


def load_recipe(folder: Path) -> tuple[list[OOFPatient], dict[int, dict]]:
    """Every finished fold of a recipe: the OOF rows and each fold's info (timings, what was run)."""
    rows, infos = [], {}
    for path in sorted(folder.glob("fold*.json")):
        d = json.loads(path.read_text())
        fold_rows = [OOFPatient(**r) for r in d["patients"]]
        rows += fold_rows
        if fold_rows:
            infos[fold_rows[0].fold] = d["info"]
    return rows, infos


# ---- scoring -------------------------------------------------------------------------------------------

def decide(probs: np.ndarray, rule: str, prior: np.ndarray | None = None) -> list[str]:
    """Patient calls from (P, 3) probabilities. `argmax`; `cost`: argmax of the Challenge weight times the
    probability (the Bayes decision for weighted accuracy when the probabilities are calibrated);
    `balanced`: argmax of probability over the training patients' class `prior` (the Bayes decision for UAR)."""
    if rule == "argmax":
        scores = probs
    elif rule == "cost":
        scores = probs * np.array([5.0, 3.0, 1.0])
    elif rule == "balanced":
        if prior is None:
            raise ValueError("the balanced rule needs the training class prior")
        scores = probs / prior
    else:
        raise ValueError(f"unknown decision rule {rule!r}")
    return [MURMUR_CLASSES[j] for j in scores.argmax(1)]


def murmur_scores(rows: list[OOFPatient], calls: list[str] | None = None) -> dict[str, float]:
    truth = [r.murmur for r in rows]
    probs = np.array([r.probabilities for r in rows])
    calls = calls if calls is not None else [r.call for r in rows]
    auroc = ovr_auroc(truth, probs, MURMUR_CLASSES)
    recall = {c: float(np.mean([p == c for t, p in zip(truth, calls) if t == c])) for c in MURMUR_CLASSES}
    return {"auroc": float(np.nanmean(list(auroc.values()))), "wacc": weighted_accuracy(truth, calls),
            "uar": uar(truth, calls, MURMUR_CLASSES), "ece": calibration_bins(truth, probs, MURMUR_CLASSES)["ece"],
            **{f"recall_{c}": v for c, v in recall.items()}}


def by_fold(rows: list[OOFPatient]) -> dict[int, list[OOFPatient]]:
    out: dict[int, list[OOFPatient]] = {}
    for r in rows:
        out.setdefault(r.fold, []).append(r)
    return dict(sorted(out.items()))


def summarise(per_fold: dict[int, dict[str, float]]) -> dict[str, tuple[float, float]]:
    """metric -> (mean, sample std) over folds."""
    keys = next(iter(per_fold.values())).keys()
    return {k: (float(np.mean([f[k] for f in per_fold.values()])),
                float(np.std([f[k] for f in per_fold.values()], ddof=1)) if len(per_fold) > 1 else float("nan"))
            for k in keys}


def murmur_table(rows: list[OOFPatient], rule: str | None = None) -> dict[int, dict[str, float]]:
    """Per-fold murmur scores; `rule` re-decides from the probabilities, None keeps the recipe's calls."""
    out = {}
    for k, fold_rows in by_fold(rows).items():
        # The other folds' patients are this fold's training patients: their labels give its prior.
        train = [r.murmur for r in rows if r.fold != k]
        prior = np.array([train.count(c) / len(train) for c in MURMUR_CLASSES]) if train else None
        calls = decide(np.array([r.probabilities for r in fold_rows]), rule, prior) if rule else None
        out[k] = murmur_scores(fold_rows, calls)
    return out


def ece_floor(rows: list[OOFPatient], draws: int = 200, seed: int = 0) -> dict[str, tuple[float, float, float]]:
    """The ECE a perfectly calibrated model with these very probabilities would score, labels drawn from
    them: (5th, 50th, 95th percentile) of the mean per-fold ECE and of the pooled ECE. With ~120 patients
    per fold and 10 bins the estimate is biased upwards; this is how far."""
    rng = np.random.default_rng(seed)
    folds = [np.array([r.probabilities for r in f]) for f in by_fold(rows).values()]
    per_fold, pooled = [], []
    for _ in range(draws):
        labels = [[MURMUR_CLASSES[rng.choice(len(MURMUR_CLASSES), p=p / p.sum())] for p in probs] for probs in folds]
        per_fold.append(np.mean([calibration_bins(t, p, MURMUR_CLASSES)["ece"] for t, p in zip(labels, folds)]))
        pooled.append(calibration_bins(sum(labels, []), np.concatenate(folds), MURMUR_CLASSES)["ece"])
    return {name: tuple(float(x) for x in np.percentile(v, [5, 50, 95]))
            for name, v in (("per_fold", per_fold), ("pooled", pooled))}


def recalibrated(rows: list[OOFPatient], mode: str = "temperature", l2: float = 1e-3) -> list[OOFPatient]:
    """Each fold's rows with probabilities and calls from a `Recalibration` fitted on the other folds' rows
    only, so the held-out fold's labels never reach the fit: the honest score of `finetune calibrate`."""
    import torch

    from finetune.calibration import fit_recalibration

    out = []
    for k, fold_rows in by_fold(rows).items():
        others = [r for r in rows if r.fold != k]
        recalibration = fit_recalibration(np.array([r.probabilities for r in others]), [r.murmur for r in others],
                                          mode, l2)
        logp = torch.from_numpy(np.log(np.clip(np.array([r.probabilities for r in fold_rows]), 1e-8, 1.0)))
        probs = recalibration.log_probabilities(logp).exp()
        calls = recalibration.decide(probs).tolist()
        out += [replace(r, probabilities=p, call=MURMUR_CLASSES[c])
                for r, p, c in zip(fold_rows, probs.tolist(), calls)]
    return out


def feature_truth(patients: dict[str, Patient], pid: str, name: str) -> str | None:
    value = patients[pid].labels.feature(name)
    return value if value in FEATURES[name] else None


def feature_table(rows: list[OOFPatient], patients: dict[str, Patient], splits: list[Split],
                  names: tuple[str, ...] = SYSTOLIC_FEATURES) -> dict[str, dict[int, tuple[float, float]]]:
    """feature -> fold -> (UAR of the recipe, UAR of the training folds' majority class) on the fold's
    Present patients that carry the label. The features are scored given Present (the heads' argmax),
    so a murmur miss does not count twice."""
    out: dict[str, dict[int, tuple[float, float]]] = {}
    for name in names:
        vocab = FEATURES[name]
        out[name] = {}
        for k, fold_rows in by_fold(rows).items():
            train_values = [v for pid in splits[k].train if (v := feature_truth(patients, pid, name))]
            majority = max(vocab, key=train_values.count)
            truth, pred = [], []
            for r in fold_rows:
                v = feature_truth(patients, r.patient_id, name)
                if v is not None and r.features.get(name):
                    truth.append(v)
                    pred.append(vocab[int(np.argmax(r.features[name]))])
            if truth:
                out[name][k] = (uar(truth, pred, vocab), uar(truth, [majority] * len(truth), vocab))
    return out
