"""Both formats for one analysis, and where the CLI writes them.

File rules: one patient -> exactly the path given; several -> one file per patient, the patient's key
(the id the terminal and --json show) added to the name (`out.pdf` -> `out_2530.pdf`). Nothing that
exists is overwritten without --force, and an input file never is, --force or not. Every target is
checked before any model loads, so a refusal costs nothing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from assistant.consult.analyzer import Analyzer
from assistant.consult.findings import Findings
from assistant.data.audio import Recording
from assistant.report.document import ReportError, report_input
from assistant.report.provenance import model_versions


@dataclass(frozen=True)
class Reports:
    pdf: bytes
    fhir: str  # the Bundle as JSON, the PDF inside as its DiagnosticReport.presentedForm


def make_reports(analyzer: Analyzer, findings: Findings, recordings: Sequence[Recording],
                 patient_id: str | None = None, created: datetime | None = None) -> Reports:
    from assistant.report.fhir import fhir_json
    from assistant.report.pdf import report_pdf

    report = report_input(findings, recordings, model_versions(analyzer.config), patient_id, created)
    pdf = report_pdf(report)
    return Reports(pdf, fhir_json(report, pdf))


def output_paths(path: Path, keys: Sequence[str]) -> list[Path]:
    """One path per patient key, in order."""
    if len(keys) == 1:
        return [path]
    safe = [re.sub(r"[^A-Za-z0-9._-]", "_", k) for k in keys]
    return [path.with_name(f"{path.stem}_{k}{path.suffix}") for k in safe]


def check_targets(targets: Sequence[Path], inputs: Sequence[Path], force: bool) -> None:
    """Refuse, in one line, a target that is an input, that two outputs share, or that exists without --force."""
    inputs_resolved = {p.resolve() for p in inputs}
    seen: set[Path] = set()
    for target in targets:
        resolved = target.resolve()
        if resolved in inputs_resolved:
            raise ReportError(f"{target}: that is one of the inputs; choose another output file")
        if resolved in seen:
            raise ReportError(f"{target}: given for two outputs; give --report and --fhir different files")
        seen.add(resolved)
        if target.is_dir():
            raise ReportError(f"{target}: is a folder; give a file name")
        if target.exists() and not force:
            raise ReportError(f"{target} exists; pass --force to overwrite it")


def write_file(path: Path, data: bytes) -> None:
    """Written whole or not at all: a temporary file beside it, then renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
