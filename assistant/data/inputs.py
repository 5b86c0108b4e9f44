"""Recordings named on the command line: files and folders, grouped by patient."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from assistant.data.audio import Recording, load_recording
from assistant.data.circor import read_folder
from assistant.errors import MurmurScopeError


@dataclass(frozen=True)
class PatientInput:
    patient_id: str
    recordings: list[Recording]
    ids: list[str]


def load_inputs(paths: Sequence[Path]) -> list[PatientInput]:
    """A folder: its patients (CirCor layout or loose files); files: grouped by the id in their names
    (`ID_SITE.wav`), `upload` when the names carry none. Each recording is named by its file stem."""
    if not paths:
        raise MurmurScopeError("give at least one audio file or folder")
    groups: dict[str, PatientInput] = {}
    for path in paths:
        if path.is_dir():
            for patient in read_folder(path):
                group = groups.setdefault(patient.patient_id, PatientInput(patient.patient_id, [], []))
                for ref in patient.recordings:
                    group.recordings.append(ref.load())
                    group.ids.append(ref.name)
        else:
            rec = load_recording(path)
            pid = rec.patient_id or "upload"
            group = groups.setdefault(pid, PatientInput(pid, [], []))
            group.recordings.append(rec)
            group.ids.append(path.stem)
    return list(groups.values())
