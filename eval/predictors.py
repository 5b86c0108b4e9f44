"""Predictors an evaluation run can score, behind one small interface.

Every predictor receives `patient.unlabelled()` only; labels never leave the runner. `--predictor` takes
`classifier` (shipped weights) or `classifier:DIR`, `classifier-gated[:DIR]` (the same with the familiarity
gate), `abnormal[:DIR]` (the normal/abnormal model: abnormal -> Present, normal -> Absent), `audio-llm`,
`majority` or `csv:PATH`.
"""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from assistant.data.circor import Patient
from assistant.data.labels import FEATURES, MURMUR_CLASSES, PREDICTION_COLUMNS
from assistant.errors import MurmurScopeError

PROB_COLUMNS = {"Present": "p_present", "Unknown": "p_unknown", "Absent": "p_absent"}


class PredictorError(MurmurScopeError):
    """A predictor that cannot be built or reached."""


@dataclass
class PatientOutput:
    """One patient's prediction as predictions.csv holds it; None where the predictor gave nothing valid."""

    patient_id: str
    murmur: str | None
    probabilities: dict[str, float] | None = None
    features: dict[str, str | None] = field(default_factory=dict)
    answers: dict[str, list[str]] = field(default_factory=dict)  # raw audio-LLM replies, for the record
    # A feature head's top label whatever the murmur call (the classifier names features only when it calls
    # Present); scored separately, so the head can be judged apart from the murmur decision.
    feature_head: dict[str, str | None] | None = None
    # Recordings the predictor could not use ({recording name: why}); the patient was predicted without them.
    skipped: dict[str, str] = field(default_factory=dict)

    def csv_row(self) -> dict[str, str]:
        row = {"patient_id": self.patient_id, "murmur": self.murmur or ""}
        for cls, col in PROB_COLUMNS.items():
            row[col] = f"{self.probabilities[cls]:.6f}" if self.probabilities else ""
        for name in FEATURES:
            row[name] = self.features.get(name) or ""
        return {c: row[c] for c in PREDICTION_COLUMNS}

    def to_json(self) -> dict:
        return {"patient_id": self.patient_id, "murmur": self.murmur, "probabilities": self.probabilities,
                "features": self.features, "answers": self.answers, "feature_head": self.feature_head,
                "skipped": self.skipped}

    @classmethod
    def from_json(cls, d: dict) -> PatientOutput:
        return cls(d["patient_id"], d.get("murmur"), d.get("probabilities"), d.get("features") or {},
                   d.get("answers") or {}, d.get("feature_head"), d.get("skipped") or {})


class Predictor(Protocol):
    name: str

    def fingerprint(self) -> dict:
        """What makes two runs' cached predictions interchangeable."""

    def predict(self, patient: Patient) -> PatientOutput: ...


def _most_common(values: Iterable[str | None], order: tuple[str, ...]) -> str | None:
    counts = Counter(v for v in values if v is not None)
    if not counts:
        return None
    # Ties go to the vocabulary's order, so the result does not depend on iteration order.
    return max(order, key=lambda c: (counts.get(c, 0), -order.index(c)))


class MajorityPredictor:
    """Predicts the fitting set's most frequent class for the murmur and for every feature."""

    name = "majority"

    def __init__(self, fit_patients: list[Patient], binary_truth: dict[str, str] | None = None):
        if binary_truth:
            # PhysioNet 2016: abnormal -> Present, normal -> Absent.
            counts = Counter(binary_truth[p.patient_id] for p in fit_patients)
            n = sum(counts.values())
            self.probabilities = {"Present": counts["abnormal"] / n, "Unknown": 0.0, "Absent": counts["normal"] / n}
            self.features: dict[str, str | None] = {name: None for name in FEATURES}
        else:
            labels = [p.labels for p in fit_patients if p.labels is not None]
            counts = Counter(lab.murmur for lab in labels)
            self.probabilities = {c: counts[c] / len(labels) for c in MURMUR_CLASSES}
            present = [lab for lab in labels if lab.murmur == "Present"]
            self.features = {name: _most_common((lab.feature(name) for lab in present), vocab)
                             for name, vocab in FEATURES.items()}
        self.murmur = max(MURMUR_CLASSES, key=lambda c: self.probabilities[c])

    def fingerprint(self) -> dict:
        return {"predictor": "majority", "murmur": self.murmur, "features": self.features}

    def predict(self, patient: Patient) -> PatientOutput:
        return PatientOutput(patient.patient_id, self.murmur, dict(self.probabilities), dict(self.features))


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def _canonical(value: str | None, vocabulary: tuple[str, ...]) -> str | None:
    """CirCor's spelling of `value`, matched without regard to case as the Challenge's scorer does.

    Anything else is kept as written, so an invalid murmur output stays invalid (and counts as Present).
    """
    value = (value or "").strip()
    return next((v for v in vocabulary if v.casefold() == value.casefold()), value or None)


class CsvPredictor:
    """Replays a predictions CSV in PREDICTION_COLUMNS (only patient_id and murmur are required)."""

    name = "csv"

    def __init__(self, path: Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise PredictorError(f"{self.path}: no such predictions CSV")
        with self.path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            missing = {"patient_id", "murmur"} - set(reader.fieldnames or ())
            if missing:
                raise PredictorError(f"{self.path}: not a predictions CSV (no {', '.join(sorted(missing))} column)")
            self.rows = {r["patient_id"].strip(): r for r in reader}

    def fingerprint(self) -> dict:
        return {"predictor": "csv", "sha256": hashlib.sha256(self.path.read_bytes()).hexdigest()}

    def covers(self, ids: Iterable[str]) -> int:
        return sum(i in self.rows for i in ids)

    def predict(self, patient: Patient) -> PatientOutput:
        row = self.rows.get(patient.patient_id)
        if row is None:  # scored as an output with no valid class
            return PatientOutput(patient.patient_id, None)
        probs = {c: _float(row.get(col)) for c, col in PROB_COLUMNS.items()}
        murmur = _canonical(row.get("murmur"), MURMUR_CLASSES)
        features = {name: _canonical(row.get(name), vocab) for name, vocab in FEATURES.items()}
        return PatientOutput(patient.patient_id, murmur,
                             probs if all(v is not None for v in probs.values()) else None, features)


class ClassifierPredictor:
    """The project's murmur classifier (assistant/murmur/model.py): its shipped weights, or a model folder."""

    name = "classifier"

    def __init__(self, folder: Path | None = None, decision: str | None = None):
        from assistant.murmur.model import DECISIONS, WEIGHTS_DIR, MurmurModel

        if decision is not None and decision not in DECISIONS:
            raise PredictorError(f"--decision must be one of {', '.join(DECISIONS)}, not {decision!r}")
        self.folder = Path(folder) if folder is not None else WEIGHTS_DIR
        self.model = MurmurModel.load(folder)
        # An override of the model's own rule is part of what the run's cache depends on.
        self.decision = decision if decision != self.model.config.decision else None
        if self.decision is not None:
            self.model.config = replace(self.model.config, decision=self.decision)

    def fingerprint(self) -> dict:
        from assistant.murmur.whisper_features import READER_DIR

        digest = hashlib.sha256()
        # The feature reader beside the weights changes the features, so a cached run made without it (or with
        # another one) must not be resumed.
        for f in sorted(self.folder.glob("murmur*")) + sorted((self.folder / READER_DIR).glob("*")):
            digest.update(f.name.encode() + f.read_bytes())
        return {"predictor": "classifier", "weights_sha256": digest.hexdigest()} | (
            {"decision": self.decision} if self.decision is not None else {})

    def predict(self, patient: Patient) -> PatientOutput:
        pred = self.model.predict_patient(patient)
        found = [pred.features.get(name) for name in FEATURES]
        features = {name: f.label if f else None for name, f in zip(FEATURES, found)}
        head = {name: max(f.probabilities, key=f.probabilities.get) if f and f.probabilities else None
                for name, f in zip(FEATURES, found)}
        probs = {c: float(pred.probabilities[c]) for c in MURMUR_CLASSES} if pred.probabilities else None
        used = {r.name for r in pred.recordings}
        # The model's load warnings name the file: match each unused recording to its reason.
        skipped = {ref.name: next((w for w in pred.warnings if ref.name in w), "not used")
                   for ref in patient.recordings if ref.name not in used}
        return PatientOutput(patient.patient_id, pred.murmur, probs, features, feature_head=head, skipped=skipped)


class GatedClassifierPredictor(ClassifierPredictor):
    """The classifier with the familiarity gate (assistant/murmur/familiarity.py) of a consultation: a patient
    most of whose recordings are unlike the training data is called Unknown, its features none."""

    name = "classifier-gated"

    def __init__(self, folder: Path | None = None):
        from assistant.murmur.familiarity import Familiarity

        super().__init__(folder)
        self.familiarity = Familiarity.load(self.folder)
        if self.familiarity is None:
            raise PredictorError(f"{self.folder}: no familiarity model beside the murmur weights "
                                 "(`murmurscope finetune familiarity` fits one)")

    def fingerprint(self) -> dict:
        digest = hashlib.sha256()
        for f in sorted(self.folder.glob("familiarity*")):
            digest.update(f.name.encode() + f.read_bytes())
        return super().fingerprint() | {"predictor": self.name, "familiarity_sha256": digest.hexdigest()}

    def predict(self, patient: Patient) -> PatientOutput:
        out = super().predict(patient)
        scores = [self.familiarity.score(self.model.embed(ref.load(rate=self.model.rate)))
                  for ref in patient.unlabelled().recordings if ref.name not in out.skipped]
        if self.familiarity.patient_reason(scores):
            out.murmur = "Unknown"
            out.features = {name: None for name in FEATURES}
        return out


class AbnormalPredictor:
    """The normal/abnormal model (assistant/abnormal): P(abnormal) is reported as P(Present), so a PhysioNet
    2016 run scores it as the Challenge does; on CirCor it is a Present/Absent murmur call."""

    name = "abnormal"

    def __init__(self, folder: Path | None = None):
        from assistant.abnormal.model import WEIGHTS_DIR, AbnormalModel
        from assistant.murmur.model import MurmurModel
        from assistant.segment.segmenter import default_segmenter

        self.folder = Path(folder) if folder is not None else WEIGHTS_DIR
        self.model = AbnormalModel.load(folder)
        self.murmur = MurmurModel.load()
        self.segmenter = default_segmenter()

    def fingerprint(self) -> dict:
        digest = hashlib.sha256()
        for f in sorted(self.folder.glob("abnormal*")):
            digest.update(f.name.encode() + f.read_bytes())
        return {"predictor": self.name, "weights_sha256": digest.hexdigest(),
                "murmur_weights_sha256": self.model.config.murmur_weights_sha256}

    def predict(self, patient: Patient) -> PatientOutput:
        from assistant.abnormal.features import recording_vector

        vectors, skipped = {}, {}
        for ref in patient.unlabelled().recordings:
            try:
                rec = ref.load()
            except MurmurScopeError as e:
                skipped[ref.name] = str(e)
                continue
            vectors[ref.name] = recording_vector(self.murmur, self.murmur.frame_statistics(rec),
                                                 self.segmenter.segment(rec), rec, self.model.config.features)
        if not vectors:
            return PatientOutput(patient.patient_id, None, skipped=skipped)
        p = self.model.predict(vectors)
        return PatientOutput(patient.patient_id, "Present" if p.label == "abnormal" else "Absent",
                             {"Present": p.probability, "Unknown": 0.0, "Absent": 1.0 - p.probability},
                             {name: None for name in FEATURES}, skipped=skipped)


def _folder(spec: str, name: str) -> Path | None:
    return Path(spec[len(name) + 1:]) if spec.startswith(name + ":") else None


def build_predictor(spec: str, fit_patients: list[Patient], binary_truth: dict[str, str] | None = None,
                    endpoint: str | None = None, model: str | None = None) -> Predictor:
    """Turn `--predictor` into a predictor; every failure is a one-line PredictorError."""
    if spec == "majority":
        return MajorityPredictor(fit_patients, binary_truth)
    if spec.startswith("csv:"):
        return CsvPredictor(Path(spec[4:]))
    if spec == "classifier":
        return ClassifierPredictor()
    if spec.startswith("classifier:"):
        return ClassifierPredictor(Path(spec[len("classifier:"):]))
    if spec == "classifier-gated" or spec.startswith("classifier-gated:"):
        return GatedClassifierPredictor(_folder(spec, "classifier-gated"))
    if spec == "abnormal" or spec.startswith("abnormal:"):
        return AbnormalPredictor(_folder(spec, "abnormal"))
    if spec == "audio-llm":
        from eval.llm_predictor import AudioLLMPredictor

        return AudioLLMPredictor.connect(endpoint, model)
    raise PredictorError(f"unknown predictor {spec!r}: use classifier[:DIR], classifier-gated[:DIR], abnormal[:DIR], "
                         "audio-llm, majority or csv:PATH")
