"""Linear probing (LP) of a frozen encoder under cross-validation (Biermann et al.'s LP, seed paper 002).

Per recording: the mean (and standard deviation) over time of one depth's encoder states. A multinomial
logistic regression learns the recording label (Present where the site is among the patient's murmur
locations, Absent elsewhere, Unknown for Unknown patients). A patient is then decided from their
recordings' probabilities by a second, small logistic regression ("stacking") over the max and mean
log-probability of each class, trained on recording probabilities the first model gave out of fold
(inner 5-fold over the training patients), so it learns how the first model behaves on unseen patients.

Features of Present patients: the location is the valve site whose recordings look most murmur-like
(the recording model's P(Present)); the five other systolic features read the P(Present)-weighted mean of
the patient's recording vectors through one balanced logistic regression each.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from assistant.data.circor import Patient
from assistant.data.labels import FEATURES, LOCATIONS, MURMUR_CLASSES
from assistant.murmur.whisper import pooled
from eval.cross_validation import SYSTOLIC_FEATURES, CVConfig, OOFPatient, feature_truth, fold_indices, save_fold

PRESENT, UNKNOWN, ABSENT = (MURMUR_CLASSES.index(c) for c in ("Present", "Unknown", "Absent"))


@dataclass(frozen=True)
class ProbeConfig:
    depth: int = -1  # which encoder state: 0 after the convolutions, -1 the output
    pooling: str = "meanstd"  # mean, or mean and standard deviation over time
    c: float = 0.1  # inverse L2 strength of the recording probe
    inner_folds: int = 5

    @property
    def name(self) -> str:
        return f"lp-d{self.depth}-{self.pooling}-c{self.c:g}"


def recording_label(patient: Patient, site: str | None) -> int:
    murmur = patient.labels.murmur
    if murmur == "Present":
        return PRESENT if site in patient.labels.murmur_locations else ABSENT
    return MURMUR_CLASSES.index(murmur)


def recording_vector(blocks: np.ndarray, config: ProbeConfig) -> np.ndarray:
    """(depths, seconds, dim) block means -> the probe's input."""
    return pooled(blocks, config.depth, config.pooling)


@dataclass
class Recordings:
    patient: np.ndarray  # (N,) patient index into `patients`
    site: list[str | None]
    x: np.ndarray  # (N, D)
    y: np.ndarray  # (N,)


def gather(patients: list[Patient], embeddings: dict[str, np.ndarray], config: ProbeConfig) -> Recordings:
    rows = [(k, r.site, recording_vector(embeddings[r.name], config), recording_label(p, r.site))
            for k, p in enumerate(patients) for r in p.recordings if r.name in embeddings]
    return Recordings(np.array([r[0] for r in rows]), [r[1] for r in rows], np.stack([r[2] for r in rows]),
                      np.array([r[3] for r in rows]))


def _fit(model, x: np.ndarray, y: np.ndarray):
    """`model` fitted on (x, y); the class prior where the data hold one class only (tiny folds), which a
    logistic regression cannot fit."""
    if len(set(y.tolist())) < 2:
        return DummyClassifier(strategy="prior").fit(x, y)
    return model.fit(x, y)


def _probe(c: float, x: np.ndarray, y: np.ndarray):
    """A balanced logistic regression (or the prior, see _fit)."""
    return _fit(make_pipeline(StandardScaler(), LogisticRegression(C=c, class_weight="balanced", max_iter=3000)), x, y)


def log_proba(model, x: np.ndarray) -> np.ndarray:
    """(N, 3) log-probabilities in MURMUR_CLASSES order, a class the model never saw at log(1e-6)."""
    out = np.full((len(x), len(MURMUR_CLASSES)), np.log(1e-6))
    out[:, model.classes_] = model.predict_log_proba(x)
    return out


def patient_summary(log_probs: np.ndarray) -> np.ndarray:
    """(R, 3) recording log-probabilities of one patient -> max and mean of each class."""
    return np.concatenate([log_probs.max(0), log_probs.mean(0)])


def _by_patient(rec: Recordings, idx: np.ndarray) -> dict[int, np.ndarray]:
    out: dict[int, list[int]] = {}
    for i in idx:
        out.setdefault(int(rec.patient[i]), []).append(int(i))
    return {k: np.array(v) for k, v in out.items()}


def _weighted_vector(rec: Recordings, rows: np.ndarray, p_present: np.ndarray) -> np.ndarray:
    w = p_present[rows] + 1e-3
    return (rec.x[rows] * w[:, None]).sum(0) / w.sum()


@dataclass
class FoldModels:
    recording: object
    patient: object
    features: dict[str, object]


def fit_fold(rec: Recordings, patients: list[Patient], train_rows: np.ndarray, config: ProbeConfig,
             seed: int = 0) -> FoldModels:
    recording = _probe(config.c, rec.x[train_rows], rec.y[train_rows])
    # The recording model's behaviour on patients it did not see, for the stacker and the feature heads.
    inner = np.zeros((len(rec.y), len(MURMUR_CLASSES)))
    for fit, held in GroupKFold(config.inner_folds).split(train_rows, groups=rec.patient[train_rows]):
        m = _probe(config.c, rec.x[train_rows[fit]], rec.y[train_rows[fit]])
        inner[train_rows[held]] = log_proba(m, rec.x[train_rows[held]])
    groups = _by_patient(rec, train_rows)
    ids = sorted(groups)
    summary = np.stack([patient_summary(inner[groups[k]]) for k in ids])
    target = np.array([MURMUR_CLASSES.index(patients[k].labels.murmur) for k in ids])
    # Unweighted, so its probabilities stay calibrated; the decision rule weighs the classes afterwards.
    patient = _fit(make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=3000)), summary, target)
    features = {}
    p_present = np.exp(inner[:, PRESENT])
    for name in SYSTOLIC_FEATURES:
        if name == "most_audible_location":
            continue
        pairs = [(k, FEATURES[name].index(v)) for k in ids if (v := feature_truth_of(patients[k], name)) is not None]
        if len({y for _, y in pairs}) < 2:
            continue
        x = np.stack([_weighted_vector(rec, groups[k], p_present) for k, _ in pairs])
        features[name] = _probe(config.c, x, np.array([y for _, y in pairs]))
    return FoldModels(recording, patient, features)


def feature_truth_of(p: Patient, name: str) -> str | None:
    return feature_truth({p.patient_id: p}, p.patient_id, name)


def predict_fold(models: FoldModels, rec: Recordings, patients: list[Patient], rows: np.ndarray,
                 fold: int) -> list[OOFPatient]:
    log_probs = np.zeros((len(rec.y), len(MURMUR_CLASSES)))
    log_probs[rows] = log_proba(models.recording, rec.x[rows])
    out = []
    for k, r in _by_patient(rec, rows).items():
        p = patients[k]
        probs = models.patient.predict_proba(patient_summary(log_probs[r])[None])[0]
        full = np.zeros(len(MURMUR_CLASSES))
        full[models.patient.classes_] = probs
        p_present = np.exp(log_probs[:, PRESENT])
        features = {}
        site_scores = np.full(len(LOCATIONS), -np.inf)
        for i in r:
            if rec.site[i] in LOCATIONS:
                j = LOCATIONS.index(rec.site[i])
                site_scores[j] = max(site_scores[j], log_probs[i, PRESENT])
        if np.isfinite(site_scores).any():
            e = np.exp(site_scores - site_scores.max())
            features["most_audible_location"] = list(e / e.sum())
        v = _weighted_vector(rec, r, p_present)[None]
        for name, model in models.features.items():
            fp = np.zeros(len(FEATURES[name]))
            fp[model.classes_] = model.predict_proba(v)[0]
            features[name] = list(fp)
        out.append(OOFPatient(p.patient_id, fold, p.labels.murmur, list(full), MURMUR_CLASSES[int(full.argmax())],
                              [list(np.exp(log_probs[i])) for i in r], [rec.site[i] for i in r], features))
    return out


def probe_fold(config: CVConfig, name: str, probe: ProbeConfig, rec: Recordings, patients: list[Patient], splits,
               k: int, info: dict) -> None:
    """Fold `k` of one probe: fitted on every gathered recording outside the fold, written to
    `config.out/name/fold{k}.json` (a finished fold is kept)."""
    path = config.out / name / f"fold{k}.json"
    if path.exists():
        return
    started = time.perf_counter()
    index = {p.patient_id: i for i, p in enumerate(patients)}
    held = {index[pid] for pid in splits[k].val}
    train_rows = np.flatnonzero([i not in held for i in rec.patient])
    test_rows = np.flatnonzero([i in held for i in rec.patient])
    models = fit_fold(rec, patients, train_rows, probe)
    rows = predict_fold(models, rec, patients, test_rows, k)
    save_fold(path, rows, {"recipe": name, "probe": asdict(probe), **info,
                           "minutes": (time.perf_counter() - started) / 60})


def run_probe(config: CVConfig, probe: ProbeConfig, embeddings: dict[str, np.ndarray], patients: list[Patient],
              splits, encoder_name: str = "whisper-tiny.en") -> str:
    """Every requested fold of one probe configuration; returns the recipe's folder name."""
    name = f"{encoder_name}-{probe.name}"
    rec = gather(patients, embeddings, probe)
    for k in tqdm(fold_indices(config), desc=name, leave=False):
        probe_fold(config, name, probe, rec, patients, splits, k, {"encoder": encoder_name})
    return name


def candidate_probes() -> list[ProbeConfig]:
    """The LP grid the selection sees: depth (the middle of the encoder vs its output) and L2 strength."""
    return [ProbeConfig(depth=d, c=c) for d in (2, -1) for c in (0.01, 0.1)]
