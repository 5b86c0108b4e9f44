"""What `murmurscope info` reports about a file, a patient folder or a CirCor root."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from assistant.data.audio import AudioLimits, parse_name, signal_problems
from assistant.data.circor import Patient, RecordingRef, read_folder, read_patient
from assistant.data.decode import decode_mono
from assistant.errors import DatasetError, MissingFileError, NotAudioError


@dataclass(frozen=True)
class RecordingInfo:
    name: str
    patient_id: str | None
    site: str | None
    path: str
    rate: int
    channels: int
    duration: float
    format: str
    subtype: str
    flags: tuple[str, ...]


@dataclass(frozen=True)
class PatientInfo:
    patient_id: str
    murmur: str | None
    recordings: tuple[RecordingInfo, ...]


@dataclass(frozen=True)
class DatasetInfo:
    root: str
    patients: tuple[PatientInfo, ...]
    summary: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def quality_flags(samples: np.ndarray, rate: int, limits: AudioLimits = AudioLimits()) -> list[str]:
    """The flag of every `signal_problems` of the recording: each names a reason it may analyse poorly."""
    return [p.flag for p in signal_problems(samples, rate, limits)]


def inspect_file(path: Path, patient_id: str | None = None, site: str | None = None, tsv: bool | None = None,
                 limits: AudioLimits = AudioLimits()) -> RecordingInfo:
    if not path.exists():
        raise MissingFileError(f"{path}: no such file")
    # No seconds cap here (an over-long file is flagged, not refused); the decoding caps still bind.
    decoded = decode_mono(path, limits)
    mono, rate = decoded.samples, decoded.rate
    flags = quality_flags(mono, rate, limits)
    if tsv is False:
        flags.append("no_segmentation")
    named_patient, named_site = parse_name(path.stem)
    return RecordingInfo(
        name=path.stem,
        patient_id=patient_id or named_patient,
        site=site or named_site,
        path=str(path),
        rate=int(rate),
        channels=decoded.channels,
        duration=round(len(mono) / rate, 3),
        format=decoded.format,
        subtype=decoded.subtype,
        flags=tuple(flags),
    )


def _inspect_ref(ref: RecordingRef, labelled: bool) -> RecordingInfo:
    return inspect_file(ref.audio_path, ref.patient_id, ref.site, tsv=(ref.tsv_path is not None) if labelled else None)


def inspect_patient(p: Patient) -> PatientInfo:
    labelled = p.labels is not None
    return PatientInfo(
        p.patient_id,
        p.labels.murmur if p.labels else None,
        tuple(_inspect_ref(r, labelled) for r in p.recordings),
    )


def summarize(patients: tuple[PatientInfo, ...]) -> dict:
    recs = [r for p in patients for r in p.recordings]
    durations = np.array([r.duration for r in recs]) if recs else np.zeros(1)
    return {
        "patients": len(patients),
        "recordings": len(recs),
        "sites": dict(Counter(r.site or "?" for r in recs).most_common()),
        "murmur": dict(Counter(p.murmur or "unlabelled" for p in patients).most_common()),
        "sample_rates": dict(Counter(r.rate for r in recs).most_common()),
        "total_hours": round(float(durations.sum()) / 3600, 2),
        "duration_s": {
            "min": round(float(durations.min()), 2),
            "median": round(float(np.median(durations)), 2),
            "max": round(float(durations.max()), 2),
        },
        "flags": dict(Counter(f for r in recs for f in r.flags).most_common()),
    }


def inspect_dataset(path: str | Path, progress: bool = False) -> DatasetInfo:
    """Inspect a file, a patient folder or a CirCor root."""
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() == ".txt":
            try:
                patients = [read_patient(path)]
            except (DatasetError, UnicodeDecodeError):
                raise NotAudioError(f"{path}: neither an audio file nor a CirCor patient header") from None
        else:
            rec = inspect_file(path)
            pinfo = PatientInfo(rec.patient_id or "?", None, (rec,))
            return DatasetInfo(str(path), (pinfo,), summarize((pinfo,)))
    else:
        patients = read_folder(path)
    items = patients
    if progress and len(patients) > 1:
        from tqdm import tqdm

        items = tqdm(patients, desc="patients", unit="patient", leave=False)
    infos = tuple(inspect_patient(p) for p in items)
    return DatasetInfo(str(path), infos, summarize(infos))
