"""What `POST /v1/analyze` answers with: the Findings JSON (default), the PDF report or the FHIR Bundle,
chosen by the `format` form field or else the `Accept` header."""

from __future__ import annotations

from typing import Literal

from fastapi.responses import Response

from assistant.consult.analyzer import Analyzer
from assistant.consult.findings import Findings
from assistant.data.audio import Recording

JSON, PDF, FHIR = "application/json", "application/pdf", "application/fhir+json"
FORMATS = {"json": JSON, "pdf": PDF, "fhir": FHIR}
# The form field's values as a Literal, so the schema lists them and validation refuses others.
Format = Literal[tuple(FORMATS)]
# The OpenAPI description of the three bodies (merged by FastAPI with the Findings model for JSON).
RESPONSES = {200: {"description": "The findings (JSON), the PDF consultation report, or a FHIR R4 Bundle.",
                   "content": {PDF: {"schema": {"type": "string", "format": "binary"}},
                               FHIR: {"schema": {"type": "object", "description": "FHIR R4 Bundle (collection): "
                                                 "DiagnosticReport with the PDF as presentedForm, Observations, "
                                                 "Media, Device"}}}},
             406: {"description": "The Accept header names none of application/json, application/pdf, "
                                  "application/fhir+json"}}
FORMAT_HELP = ("json (Findings), pdf (consultation report) or fhir (FHIR R4 Bundle). Overrides the Accept header "
               f"({JSON}, {PDF} or {FHIR}); default json.")


class FormatError(ValueError):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def wanted_media_type(format_field: Format | None, accept: str | None) -> str:
    """The media type to answer with (the field, validated by its Literal, wins); FormatError 406 when the
    Accept header names none of the three."""
    if format_field:
        return FORMATS[format_field]
    if not accept:
        return JSON
    ranked = []
    for k, item in enumerate(accept.split(",")):
        media, *params = [x.strip() for x in item.split(";")]
        q = next((float(p[2:]) for p in params if p.startswith("q=") and _is_float(p[2:])), 1.0)
        if q > 0:
            ranked.append((-q, k, media.lower()))
    for _, _, media in sorted(ranked):
        if media in (JSON, PDF, FHIR):
            return media
        if media in ("*/*", "application/*"):
            return JSON
    raise FormatError(406, f"cannot answer with {accept!r}; ask for {JSON}, {PDF} or {FHIR}")


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def report_response(media_type: str, analyzer: Analyzer, findings: Findings, recordings: list[Recording],
                    patient_id: str | None) -> Response:
    """The PDF or the FHIR Bundle of `findings` as a download (for JSON the endpoint returns the Findings)."""
    from assistant.report.outputs import make_reports

    made = make_reports(analyzer, findings, recordings, patient_id)
    name = f"murmurscope_{patient_id or 'anonymous'}"
    if media_type == PDF:
        return Response(made.pdf, media_type=PDF, headers={"Content-Disposition": f'attachment; filename="{name}.pdf"'})
    return Response(made.fhir.encode(), media_type=FHIR,
                    headers={"Content-Disposition": f'attachment; filename="{name}.fhir.json"'})
