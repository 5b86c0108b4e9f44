"""`POST /v1/analyze` answering with the PDF report or the FHIR Bundle, on a live uvicorn on loopback."""

from __future__ import annotations

import json

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle

from assistant.consult.consultation import Consultation
from assistant.data.labels import MURMUR_CLASSES
from assistant.report.pdf import pct
from assistant.serve.app import APIConfig, create_app
from tests.live_server import serve
from tests.test_api import wav_bytes
from tests.test_reports import pdf_text, resources, without_pdf

pytestmark = pytest.mark.integration
KEY = "report-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def url(analyzer, tmp_path_factory):
    uploads = tmp_path_factory.mktemp("uploads")
    with serve(create_app(Consultation(analyzer), APIConfig(api_key=KEY, upload_dir=uploads))) as base:
        yield base


@pytest.fixture(scope="module")
def upload(synth_recordings_api):
    # File names that must never reach a report: they are what a careless export would leak.
    return [("files", (f"jane_doe_{r.site}.wav", wav_bytes(r), "audio/wav")) for r in synth_recordings_api[:2]]


@pytest.fixture(scope="module")
def synth_recordings_api():
    from assistant.data.synth import synth_patient

    return [pcg.recording for pcg in synth_patient("9001", seed=3, murmur="Present", duration=8.0).recordings.values()]


def post(url, upload, data=None, headers=None):
    return httpx.post(f"{url}/v1/analyze", files=upload, data={"sites": ["AV", "MV"], **(data or {})},
                      headers={**AUTH, **(headers or {})}, timeout=120)


@pytest.fixture(scope="module")
def as_json(url, upload):
    r = post(url, upload)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json", r.text
    return r.json()


def test_pdf_by_accept_header(url, upload, as_json):
    r = post(url, upload, headers={"Accept": "application/pdf"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/pdf" and r.content[:5] == b"%PDF-"
    assert r.headers["content-disposition"] == 'attachment; filename="murmurscope_anonymous.pdf"'
    text = pdf_text(r.content)
    assert f"Murmur: {as_json['murmur']}" in text
    for c in MURMUR_CLASSES:
        assert f"{c} {pct(as_json['probabilities'][c])}" in text
    assert "anonymous" in text and "jane" not in text.lower()


def test_fhir_by_format_field_with_patient_id(url, upload, as_json):
    r = post(url, upload, data={"format": "fhir", "patient_id": "MRN-1"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/fhir+json"
    bundle = r.json()
    assert json.loads(Bundle.model_validate(bundle).model_dump_json()) == bundle
    report = resources(bundle, "DiagnosticReport")[0]
    assert report["subject"]["identifier"]["value"] == "MRN-1" and report["presentedForm"][0]["data"]
    (murmur,) = [o for o in resources(bundle, "Observation") if "valueCodeableConcept" in o
                 and o["code"]["coding"][0]["code"] == "88610006"]
    probs = {c["code"]["coding"][0]["code"]: c["valueQuantity"]["value"] for c in murmur["component"]}
    assert probs == {f"probability-{c}": p for c, p in as_json["probabilities"].items()}
    assert "jane" not in without_pdf(bundle).lower()


def test_format_field_wins_over_accept(url, upload, as_json):
    r = post(url, upload, data={"format": "json"}, headers={"Accept": "application/pdf"})
    assert r.headers["content-type"] == "application/json" and r.json()["probabilities"] == as_json["probabilities"]
    r = post(url, upload, headers={"Accept": "text/html;q=0.9, application/fhir+json;q=0.8"})
    assert r.headers["content-type"] == "application/fhir+json"


def test_bad_requests_are_openai_shaped(url, upload):
    r = post(url, upload, data={"format": "docx"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "format"
    r = post(url, upload, headers={"Accept": "text/html"})
    assert r.status_code == 406 and "application/pdf" in r.json()["error"]["message"]
    r = post(url, upload, data={"patient_id": "../../etc"})
    assert r.status_code == 422 and "patient id" in r.json()["error"]["message"]


def test_openapi_documents_the_formats(url):
    schema = httpx.get(f"{url}/openapi.json", headers=AUTH).json()
    op = schema["paths"]["/v1/analyze"]["post"]
    assert {"application/json", "application/pdf", "application/fhir+json"} <= set(op["responses"]["200"]["content"])
    ref = op["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[-1]
    fields = schema["components"]["schemas"][ref]["properties"]
    assert {"files", "sites", "patient_id", "format"} <= set(fields) and "pdf" in fields["format"]["description"]
