"""What goes into a report: the findings, the recordings (for the figures), who and when, and which weights.

Privacy rule (one definition, used by the CLI, the API and the app): a report names the patient only
when the user gave a patient id; otherwise it says "anonymous" and names recordings by position (rec1,
rec2, ...), so no file name (which can carry a person's name) reaches a document that leaves the machine.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from assistant.consult.findings import Findings
from assistant.data.audio import Recording
from assistant.data.uploads import anonymous
from assistant.errors import MurmurScopeError
from assistant.report.provenance import ModelVersion

ANONYMOUS = "anonymous"
# Letters, digits, '.', '_' and '-': safe in a file name, a FHIR identifier and a PDF, and short enough to read.
_PATIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class ReportError(MurmurScopeError):
    """A report cannot be made as asked (bad patient id, output file rules)."""


def check_patient_id(patient_id: str | None) -> str | None:
    """The given id, stripped, or None when none was given; a one-line error when it cannot be used."""
    if patient_id is None or not patient_id.strip():
        return None
    patient_id = patient_id.strip()
    if not _PATIENT_ID.match(patient_id):
        raise ReportError(f"patient id {patient_id!r}: use 1-64 letters, digits, '.', '_' or '-', "
                          "starting with a letter or digit")
    return patient_id


@dataclass(frozen=True)
class ReportInput:
    findings: Findings  # as it will be written: anonymised unless `patient_given`
    recordings: list[Recording]  # in the order of findings.recordings
    patient_given: bool
    versions: list[ModelVersion]
    created: datetime = field(default_factory=lambda: datetime.now(timezone.utc).replace(microsecond=0))

    @property
    def patient_label(self) -> str:
        return self.findings.patient_id if self.patient_given else ANONYMOUS


def report_input(findings: Findings, recordings: Sequence[Recording], versions: list[ModelVersion],
                 patient_id: str | None = None, created: datetime | None = None) -> ReportInput:
    """The findings to report. With a patient id they keep their recording ids and carry that id; without
    one, recording ids become rec1.. and every mention of an old id or a path in the warnings is replaced."""
    if len(recordings) != len(findings.recordings):
        raise ValueError(f"{len(recordings)} recordings for {len(findings.recordings)} recording findings")
    patient_id = check_patient_id(patient_id)
    extra = {} if created is None else {"created": created}
    if patient_id is not None:
        return ReportInput(findings.model_copy(update={"patient_id": patient_id}), list(recordings), True,
                           versions, **extra)
    renamed = {r.id: f"rec{k}" for k, r in enumerate(findings.recordings, 1)}
    recs = [r.model_copy(update={"id": renamed[r.id]}) for r in findings.recordings]
    warnings = [_rename(w, {**renamed, findings.patient_id: ANONYMOUS}) for w in findings.warnings]
    update = {"patient_id": ANONYMOUS, "recordings": recs, "warnings": warnings}
    if findings.audio_llm is not None:  # its raw answers are keyed by recording id too
        update["audio_llm"] = findings.audio_llm.model_copy(update={
            "answers": {renamed.get(rid, rid): a for rid, a in findings.audio_llm.answers.items()}})
    clean = findings.model_copy(update=update)
    return ReportInput(clean, list(recordings), False, versions, **extra)


def _rename(text: str, names: dict[str, str]) -> str:
    text = anonymous(text)
    # Longest first, whole words only: "11000_AV" must not be half-replaced by a rule for "11000".
    for old in sorted(names, key=len, reverse=True):
        text = re.sub(rf"(?<![\w.-]){re.escape(old)}(?![\w-])", names[old], text)
    return text
