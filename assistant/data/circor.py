"""Reader for the CirCor DigiScope layout (PhysioNet Challenge 2022).

The patient `.txt` header is the source of truth: it lists the recordings and, in the training
layout, every label. The Challenge's inference layout has no labels, no `.tsv` and no
`training_data.csv`; both layouts read the same way. The official release ships `.wav`; a
re-encoded copy may hold `.flac` with the same stem, and either is accepted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from assistant.data.audio import AUDIO_SUFFIXES, AudioLimits, Recording, load_recording, parse_name
from assistant.data.labels import HEADER_KEYS, Demographics, PatientLabels
from assistant.data.segmentation import Segmentation, read_tsv
from assistant.errors import DatasetError

_FIRST_LINE = re.compile(r"^(\S+)\s+(\d+)\s+(\d+)")


@dataclass(frozen=True)
class RecordingRef:
    """One recording of a patient, not yet decoded."""

    patient_id: str
    site: str | None
    name: str
    audio_path: Path
    tsv_path: Path | None = None

    def load(self, rate: int | None = None, limits: AudioLimits = AudioLimits()) -> Recording:
        return load_recording(self.audio_path, rate=rate, site=self.site, patient_id=self.patient_id, limits=limits)

    def segmentation(self) -> Segmentation | None:
        return read_tsv(self.tsv_path) if self.tsv_path else None


@dataclass(frozen=True)
class Patient:
    patient_id: str
    recordings: tuple[RecordingRef, ...]
    rate: int | None = None
    labels: PatientLabels | None = None
    demographics: Demographics = Demographics()

    @property
    def sites(self) -> tuple[str, ...]:
        return tuple(r.site for r in self.recordings if r.site)

    def unlabelled(self) -> Patient:
        """The patient as a predictor may see it: recordings only."""
        return replace(self, labels=None, demographics=Demographics())


def _find_audio(folder: Path, stem: str) -> Path | None:
    for suffix in AUDIO_SUFFIXES:
        candidate = folder / f"{stem}{suffix}"
        if candidate.exists():
            return candidate
    return None


def _nan(value: str) -> str | None:
    value = value.strip()
    return None if value.lower() in ("nan", "", "none") else value


def _float(value: str) -> float | None:
    value = _nan(value)
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def read_patient(header: str | Path) -> Patient:
    """Parse one patient `.txt` and resolve its recordings next to it."""
    header = Path(header)
    lines = header.read_text().splitlines()
    m = _FIRST_LINE.match(lines[0]) if lines else None
    if not m:
        raise DatasetError(f"{header}: not a CirCor patient header (first line 'ID N_RECORDINGS RATE')")
    patient_id, n_rec, rate = m[1], int(m[2]), int(m[3])
    recordings = []
    for line in lines[1 : 1 + n_rec]:
        parts = line.split()
        if len(parts) < 3 or parts[0].startswith("#"):
            raise DatasetError(f"{header}: expected {n_rec} recording lines, found '{line.strip()}'")
        site, stem = parts[0], Path(parts[2]).stem
        audio = _find_audio(header.parent, stem)
        if audio is None:
            raise DatasetError(f"{header}: recording {stem} has no audio file (.wav or .flac) beside it")
        tsv = header.parent / f"{stem}.tsv"
        recordings.append(
            RecordingRef(
                patient_id=patient_id,
                site=site,
                name=stem,
                audio_path=audio,
                tsv_path=tsv if tsv.exists() else None,
            )
        )
    meta = {}
    for line in lines[1 + n_rec :]:
        if line.startswith("#") and ":" in line:
            key, value = line[1:].split(":", 1)
            meta[key.strip()] = value.strip()
    labels = None
    if "Murmur" in meta:
        values = {field: _nan(meta.get(key, "nan")) for field, key in HEADER_KEYS.items()}
        locations = values.pop("murmur_locations")
        labels = PatientLabels(
            murmur_locations=tuple(locations.split("+")) if locations else (),
            **values,
        )
    pregnant = _nan(meta.get("Pregnancy status", "nan"))
    demographics = Demographics(
        age=_nan(meta.get("Age", "nan")),
        sex=_nan(meta.get("Sex", "nan")),
        height_cm=_float(meta.get("Height", "nan")),
        weight_kg=_float(meta.get("Weight", "nan")),
        pregnant=None if pregnant is None else pregnant == "True",
        campaign=_nan(meta.get("Campaign", "nan")),
        additional_id=_nan(meta.get("Additional ID", "nan")),
    )
    return Patient(patient_id, tuple(recordings), rate, labels, demographics)


def _is_patient_header(path: Path) -> bool:
    try:
        with path.open() as fh:
            first = fh.readline()
    except (OSError, UnicodeDecodeError):
        return False
    return bool(_FIRST_LINE.match(first)) and first.split()[0] == path.stem


def read_folder(folder: str | Path) -> list[Patient]:
    """Patients of a CirCor root, of one patient's folder, or of a folder of loose recordings.

    A folder without patient headers becomes one patient per id parsed from the file names
    (`ID_SITE.wav`), or a single patient named after the folder when names carry no id.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder")
    headers = sorted((p for p in folder.glob("*.txt") if _is_patient_header(p)), key=_id_key)
    if headers:
        return [read_patient(h) for h in headers]
    groups: dict[str, list[RecordingRef]] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in AUDIO_SUFFIXES:
            continue
        patient_id, site = parse_name(path.stem)
        patient_id = patient_id or folder.name
        tsv = path.with_suffix(".tsv")
        groups.setdefault(patient_id, []).append(
            RecordingRef(patient_id, site, path.stem, path, tsv if tsv.exists() else None)
        )
    if not groups:
        raise DatasetError(f"{folder}: no patient headers (.txt) and no audio files (.wav .flac .ogg .mp3)")
    return [Patient(pid, tuple(recs)) for pid, recs in groups.items()]


def _id_key(path: Path) -> tuple[int, str]:
    stem = path.stem
    return (int(stem), stem) if stem.isdigit() else (1 << 62, stem)
