"""Seed 002's fine-tuning (FT) of the Whisper encoder on CirCor's murmur labels, and the feature reader
(assistant/murmur/whisper_features.py) read out of it.

`finetune whisper-ft` fine-tunes the whole encoder on the recording labels of every labelled patient, or of
the project split's training side. `finetune whisper-features` trains the reader with the recipe the 5-fold
CV chose for its features (`eval classifier-cv --recipe whisper-ft-whole`, readout `d2`, C = 0.01, centre
6 s; docs/classifier.md): that FT, then the recording probe, its inner out-of-fold P(Present) and the
feature probes fitted on the same patients, exactly as each fold did on its training side
(`eval.cv_probe.fit_fold`). What ships is trained on all 611 patients.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from assistant.data.circor import Patient, read_folder
from assistant.data.labels import FEATURES, MURMUR_CLASSES
from assistant.data.split import split_patients
from assistant.errors import MurmurScopeError
from assistant.murmur.whisper import load_whisper
from assistant.murmur.whisper_features import LinearProbe, ReaderConfig, WhisperFeatureReader
from eval.cv_probe import ProbeConfig, feature_truth_of, fit_fold, gather
from eval.cv_whisper import whisper_embeddings
from finetune.whisper_adapt import FTConfig, fine_tune_patients

# The features whose CV readout beat the CNN's heads (docs/classifier.md, "Selection and what ships").
CHOSEN = ("systolic_timing", "systolic_shape", "systolic_pitch", "systolic_quality")
SIDES = ("all", "train")


@dataclass
class WhisperFTConfig:
    circor_root: Path = field(metadata={"help": "Labelled CirCor folder (e.g. ../shared/circor-dev)."})
    out: Path = field(metadata={"help": "New folder for the fine-tuned Whisper (loads wherever the base does)."})
    whisper: Path = field(default=Path("build/whisper-tiny.en"), metadata={
        "help": "Pretrained Whisper folder to fine-tune (`finetune convert-whisper`)."})
    patients: str = field(default="all", metadata={
        "help": "all, or train: the project split's training side only (for a model evaluated on its "
                "validation side, such as the audio-LLM's tower)."})
    ft: FTConfig = field(default_factory=lambda: FTConfig(threads=2))
    progress: bool = field(default=True, metadata={"help": "Show progress bars."})

    def __post_init__(self) -> None:
        if self.patients not in SIDES:
            raise MurmurScopeError(f"--patients must be one of {', '.join(SIDES)}, not {self.patients!r}")


def labelled_patients(circor_root: Path, side: str = "all") -> list[Patient]:
    patients = [p for p in read_folder(circor_root) if p.labels is not None]
    if not patients:
        raise MurmurScopeError(f"{circor_root}: no labelled patients")
    if side == "train":
        train = set(split_patients(patients).train)
        patients = [p for p in patients if p.patient_id in train]
    return patients


def fine_tune_whisper(config: WhisperFTConfig) -> Path:
    """Seed 002's FT on the murmur recording labels, whole encoder (the `ft-whole` recipe's encoder)."""
    if (config.out / "config.json").exists():
        raise MurmurScopeError(f"{config.out}: already holds a model; choose another --out")
    patients = labelled_patients(config.circor_root, config.patients)
    return fine_tune_patients(config.whisper, config.out, patients, config.ft, config.progress,
                              side=config.patients)


@dataclass
class WhisperFeaturesTrainConfig:
    circor_root: Path = field(metadata={"help": "Labelled CirCor folder (e.g. ../shared/circor-dev)."})
    out: Path = field(metadata={"help": "New folder for the reader (the shipped one: "
                                        "assistant/murmur/weights/whisper-features)."})
    whisper: Path = field(default=Path("build/whisper-tiny.en"), metadata={
        "help": "Pretrained Whisper folder to fine-tune (`finetune convert-whisper`)."})
    patients: str = field(default="all", metadata={
        "help": "all (what ships), or train: the project split's training side only, to check the reader on the "
                "validation side."})
    features: tuple[str, ...] = field(default=CHOSEN, metadata={"help": "Features to read (comma-separated)."})
    seconds: float = field(default=6.0, metadata={"help": "Centre of each recording the probes read (s)."})
    depth: int = field(default=2, metadata={"help": "Encoder depth the probes read (0: after the convolutions)."})
    c: float = field(default=0.01, metadata={"help": "Inverse L2 strength of the probes."})
    work_dir: Path = field(default=Path("build/whisper-features"), metadata={
        "help": "Fine-tuned encoder and embedding cache (reused when there)."})
    ft: FTConfig = field(default_factory=lambda: FTConfig(threads=2))
    progress: bool = field(default=True, metadata={"help": "Show progress bars."})

    def __post_init__(self) -> None:
        unknown = [f for f in self.features if f not in FEATURES or f.startswith("diastolic")]
        if unknown:
            raise MurmurScopeError(f"--features: {', '.join(unknown)} (choose among the systolic features)")
        if self.seconds <= 0:
            raise MurmurScopeError(f"--seconds must be positive, not {self.seconds}")
        if self.patients not in SIDES:
            raise MurmurScopeError(f"--patients must be one of {', '.join(SIDES)}, not {self.patients!r}")


def export(pipeline, size: int) -> LinearProbe:
    """A fitted StandardScaler + LogisticRegression pipeline as arrays."""
    scaler, lr = pipeline[0], pipeline[-1]
    return LinearProbe(scaler.mean_, scaler.scale_, lr.coef_, lr.intercept_, lr.classes_.astype(np.int64), size)


def train(config: WhisperFeaturesTrainConfig) -> WhisperFeatureReader:
    if (config.out / "reader.json").exists():
        raise MurmurScopeError(f"{config.out}: already holds a feature reader; choose another --out")
    started = time.perf_counter()
    patients = labelled_patients(config.circor_root, config.patients)
    tuned = fine_tune_patients(config.whisper, config.work_dir / f"ft-whole-{config.patients}-{len(patients)}p",
                               patients, config.ft, config.progress, side=config.patients)
    # The shipped float16 weights are what the probes must be fitted on.
    config.out.mkdir(parents=True, exist_ok=True)
    load_whisper(tuned).encoder.half().save_pretrained(config.out)
    refs = [r for p in patients for r in p.recordings]
    embeddings = whisper_embeddings(refs, config.out, config.work_dir, max_seconds=config.seconds,
                                    progress=config.progress)
    probe = ProbeConfig(depth=config.depth, c=config.c)
    rec = gather(patients, embeddings, probe)
    models = fit_fold(rec, patients, np.arange(len(rec.y)), probe)
    missing = [f for f in config.features if f not in models.features]
    if missing:
        raise MurmurScopeError(f"too few labelled Present patients to fit {', '.join(missing)}")
    seen = {patients[k].patient_id for k in set(rec.patient.tolist())}
    n_train = {f: sum(feature_truth_of(p, f) is not None for p in patients if p.patient_id in seen)
               for f in config.features}
    ft_log = json.loads((tuned / "adapt.json").read_text())
    reader_config = ReaderConfig(
        features=tuple(config.features), seconds=config.seconds, depth=config.depth, n_train=n_train,
        training={"recipe": f"whisper-ft-whole (eval classifier-cv), {config.patients} patients", "patients": len(seen),
                  "recordings": len(rec.y), "probe": asdict(probe), "fine_tuning": ft_log,
                  "minutes": (time.perf_counter() - started) / 60})
    reader = WhisperFeatureReader(load_whisper(config.out), export(models.recording, len(MURMUR_CLASSES)),
                                  {f: export(models.features[f], len(FEATURES[f])) for f in config.features},
                                  reader_config)
    reader.save(config.out)
    return reader
