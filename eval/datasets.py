"""The two labelled layouts an evaluation reads: CirCor DigiScope (Challenge 2022) and PhysioNet/CinC 2016.

PhysioNet 2016: one or more folders (`training-a` ... `training-f`, or the root itself) each holding a
`REFERENCE.csv` of `name,label` lines (-1 normal, 1 abnormal) beside `name.wav` recordings at 2 kHz.
Every record becomes a one-recording patient without labels; its truth is kept apart, so the
predictors see exactly what they see on CirCor.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from assistant.data.audio import AUDIO_SUFFIXES
from assistant.data.circor import Patient, RecordingRef, read_folder
from assistant.data.split import SplitConfig, split_patients
from assistant.errors import DatasetError

CIRCOR = "circor"
PHYSIONET2016 = "physionet2016"
SPLITS = ("val", "train", "all")


@dataclass(frozen=True)
class EvalSet:
    """Labelled patients of one layout, and which of them a run scores."""

    layout: str
    root: Path
    patients: tuple[Patient, ...]  # CirCor: with labels; 2016: without (truth is in `binary_truth`)
    split: str
    selected: tuple[str, ...]  # patient ids that are scored
    fit: tuple[str, ...]  # patient ids a fitted baseline (majority) may learn from
    binary_truth: dict[str, str] = field(default_factory=dict)  # 2016: id -> "abnormal" | "normal"

    @property
    def protocol(self) -> str:
        """What baselines.yaml's `comparable_with` names: layout and split."""
        return f"{self.layout}:{self.split}"

    def by_id(self) -> dict[str, Patient]:
        return {p.patient_id: p for p in self.patients}


def _reference_files(root: Path) -> list[Path]:
    here = root / "REFERENCE.csv"
    if here.exists():
        return [here]
    return sorted(p for p in root.glob("*/REFERENCE.csv"))


def read_physionet2016(root: Path) -> tuple[list[Patient], dict[str, str]]:
    patients, truth = [], {}
    for ref in _reference_files(root):
        with ref.open(newline="") as fh:
            for row in csv.reader(fh):
                if not row or not row[0].strip():
                    continue
                if len(row) < 2 or row[1].strip() not in ("-1", "1"):
                    raise DatasetError(f"{ref}: expected 'name,-1|1' lines, found {','.join(row)!r}")
                name = row[0].strip()
                candidates = (ref.parent / f"{name}{s}" for s in AUDIO_SUFFIXES)
                audio = next((c for c in candidates if c.exists()), None)
                if audio is None:
                    raise DatasetError(f"{ref}: record {name} has no audio file beside it")
                if name in truth:
                    raise DatasetError(f"{ref}: record {name} appears twice")
                patients.append(Patient(name, (RecordingRef(name, None, name, audio),)))
                truth[name] = "abnormal" if row[1].strip() == "1" else "normal"
    if not patients:
        raise DatasetError(f"{root}: REFERENCE.csv lists no records")
    return patients, truth


def load_eval_set(root: str | Path, split: str | None = None) -> EvalSet:
    """Detect the layout of `root` and choose the patients to score.

    CirCor defaults to the project's validation split (assistant/data/split.py), the split every model is
    benchmarked on; a majority baseline then learns from the training side only. PhysioNet 2016 has no
    project split: it is always scored whole.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder")
    if split is not None and split not in SPLITS:
        raise DatasetError(f"--split must be one of {', '.join(SPLITS)}, not {split!r}")
    if _reference_files(root):
        if split not in (None, "all"):
            raise DatasetError(f"{root}: a PhysioNet 2016 folder has no project {split} split; use --split all")
        patients, truth = read_physionet2016(root)
        ids = tuple(p.patient_id for p in patients)
        return EvalSet(PHYSIONET2016, root, tuple(patients), "all", ids, ids, truth)
    if not any(root.glob("*.txt")):
        raise DatasetError(f"{root}: neither a CirCor layout (patient .txt headers) nor a PhysioNet 2016 layout "
                           "(REFERENCE.csv)")
    patients = read_folder(root)
    labelled = [p for p in patients if p.labels is not None]
    if not labelled:
        raise DatasetError(f"{root}: the CirCor headers carry no labels (#Murmur:); nothing to score against")
    split = split or "val"
    if split == "all":
        selected = fit = tuple(p.patient_id for p in labelled)
    else:
        s = split_patients(labelled, SplitConfig())
        selected, fit = (s.val, s.train) if split == "val" else (s.train, s.train)
    return EvalSet(CIRCOR, root, tuple(labelled), split, tuple(selected), tuple(fit))
