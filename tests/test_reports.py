"""PDF and FHIR reports: what the CLI writes, checked against its own --json for the same input, on the
shipped models and generated audio; the file rules; the "not determinable" cases; anonymity."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys

import pytest
from fhir.resources.R4B.bundle import Bundle
from pypdf import PdfReader
from typer.testing import CliRunner

from assistant.cli.main import app
from assistant.consult.findings import AudioLLMFinding, Findings
from assistant.consult.report import (
    AUDIO_LLM_CAVEAT,
    audio_llm_heading,
    audio_llm_markdown,
    audio_llm_rows,
    audio_llm_unavailable,
)
from assistant.data.labels import FEATURES, MURMUR_CLASSES
from assistant.report.document import ReportError, check_patient_id, report_input
from assistant.report.fhir import CALL_VALUES, fhir_bundle, fhir_json
from assistant.report.pdf import NOT_DETERMINABLE, pct, report_pdf
from assistant.report.provenance import model_versions

runner = CliRunner()


def pdf_text(data: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def resources(bundle: dict, kind: str) -> list[dict]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def without_pdf(bundle: dict) -> str:
    """The bundle as text without the base64 PDF and the random uuids (whose digits would match a number
    by chance)."""
    text = json.dumps(bundle)
    for r in resources(bundle, "DiagnosticReport"):
        for form in r.get("presentedForm", []):
            text = text.replace(form["data"], "")
    return re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<uuid>", text)


def by_code(observations: list[dict], code: str) -> list[dict]:
    return [o for o in observations if any(c["code"] == code for c in o["code"]["coding"])]


def component_values(obs: dict) -> dict[str, object]:
    out = {}
    for c in obs.get("component", []):
        value = c.get("valueQuantity", {}).get("value", c.get("valueBoolean", c.get("valueInteger")))
        out[c["code"]["coding"][0]["code"]] = value
    return out


@pytest.fixture(scope="module")
def cli_reports(analyzer, synth_root, tmp_path_factory):
    """One `analyze --json --report --fhir` run on one synthetic patient's four files, no patient id."""
    with pytest.MonkeyPatch.context() as mp:
        from assistant.consult.analyzer import Analyzer

        mp.setattr(Analyzer, "load", classmethod(lambda cls, config=None: analyzer))
        out = tmp_path_factory.mktemp("reports")
        files = [str(p) for p in sorted(synth_root.glob("11001_*.wav"))]
        result = runner.invoke(app, ["analyze", *files, "--json", "--report", str(out / "r.pdf"),
                                     "--fhir", str(out / "r.json")])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)[0], (out / "r.pdf").read_bytes(), json.loads((out / "r.json").read_text())


def test_pdf_carries_the_json_call_and_probabilities(cli_reports):
    findings, pdf, _ = cli_reports
    assert pdf[:5] == b"%PDF-"
    reader = PdfReader(io.BytesIO(pdf))
    text = pdf_text(pdf)
    assert f"Murmur: {findings['murmur']}" in text
    for c in MURMUR_CLASSES:
        assert f"{c} {pct(findings['probabilities'][c])}" in text
    for r in findings["recordings"]:
        assert pct(r["murmur_probabilities"]["Present"]) in text
        assert f"{r['segmentation']['quality']:.3f}" in text
    assert "decision support, not a diagnosis" in text and "Sources" in text
    assert findings["guidance"][0]["title"] in text
    for v in model_versions():
        assert v.sha256 in text.replace("\n", "")
    # Every font is embedded (a FontFile2 in its descriptor): the PDF reads the same on any machine.
    fonts = {}
    for page in reader.pages:
        for font in page["/Resources"]["/Font"].values():
            font = font.get_object()
            fonts[font["/BaseFont"]] = "/FontFile2" in font["/FontDescriptor"].get_object()
    assert fonts and all(fonts.values()), fonts


def test_pdf_is_anonymous_without_a_patient_id(cli_reports):
    findings, pdf, bundle = cli_reports
    text = pdf_text(pdf)
    assert "anonymous" in text and "11001" not in text and "rec1" in text
    assert "11001" not in without_pdf(bundle)  # neither the file names nor the id they carry
    assert findings["patient_id"] == "11001"  # --json is unchanged: it stays on the user's terminal


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="pdftoppm missing (Debian package poppler-utils)")
def test_pdf_pages_render_and_are_not_blank(cli_reports, tmp_path):
    from PIL import Image

    _, pdf, _ = cli_reports
    (tmp_path / "r.pdf").write_bytes(pdf)
    subprocess.run(["pdftoppm", "-r", "40", "-png", str(tmp_path / "r.pdf"), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page*.png"))
    assert len(pages) == len(PdfReader(io.BytesIO(pdf)).pages) >= 2
    for page in pages[:2]:  # text on the first, figures on the second
        gray = Image.open(page).convert("L")
        dark = sum(gray.histogram()[:200]) / (gray.width * gray.height)
        assert dark > 0.01, (page.name, dark)


def test_fhir_bundle_validates_and_equals_the_json(cli_reports):
    findings, pdf, bundle = cli_reports
    parsed = Bundle.model_validate(bundle)  # raises on anything FHIR does not allow
    assert json.loads(parsed.model_dump_json()) == bundle  # lossless round trip
    assert bundle["type"] == "collection"
    report = resources(bundle, "DiagnosticReport")[0]
    form = report["presentedForm"][0]
    embedded = base64.b64decode(form["data"])
    assert form["contentType"] == "application/pdf" and embedded[:5] == b"%PDF-"
    assert form["size"] == len(embedded) and form["hash"] == base64.b64encode(hashlib.sha1(embedded).digest()).decode()
    assert pdf_text(embedded) and "subject" not in report
    observations = resources(bundle, "Observation")
    assert {r["reference"] for r in report["result"]} == \
        {e["fullUrl"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"}

    (murmur,) = [o for o in by_code(observations, "88610006") if "valueCodeableConcept" in o]
    assert murmur["valueCodeableConcept"]["coding"][0] == CALL_VALUES[findings["murmur"]]
    assert murmur["valueCodeableConcept"]["text"] == findings["murmur"]
    assert component_values(murmur) == {f"probability-{c}": p for c, p in findings["probabilities"].items()}
    media = resources(bundle, "Media")
    assert [m["identifier"][0]["value"] for m in media] == ["rec1", "rec2", "rec3", "rec4"]
    assert [m["duration"] for m in media] == [r["duration_s"] for r in findings["recordings"]]
    urls = {e["resource"]["id"]: e["fullUrl"] for e in bundle["entry"]}
    for m, r in zip(media, findings["recordings"]):
        mine = [o for o in observations if o.get("derivedFrom") == [{"reference": urls[m["id"]]}]]
        (hr,) = by_code(mine, "8867-4")
        assert hr["valueQuantity"] == {"value": r["segmentation"]["heart_rate"], "unit": "beats/minute",
                                       "system": "http://unitsofmeasure.org", "code": "/min"}
        (q,) = by_code(mine, "signal-quality")
        assert q["valueQuantity"]["value"] == r["segmentation"]["quality"]
        assert component_values(q) == {"signal-reliable": r["segmentation"]["reliable"],
                                       "heart-cycles": r["segmentation"]["n_cycles"]}
        (site,) = by_code(mine, "murmur-at-site")
        assert component_values(site) == {f"probability-{c}": p for c, p in r["murmur_probabilities"].items()}
        assert m["bodySite"]["coding"][0]["code"] == f"site-{r['site']}"
    (mean,) = by_code(observations, "signal-quality-mean")
    assert mean["valueQuantity"]["value"] == findings["signal_quality"]
    described = {n: f for n, f in findings["features"].items() if f["label"]}
    assert len([o for o in observations if o["code"]["coding"][0]["code"].startswith("feature-")]) == len(described)
    device = resources(bundle, "Device")[0]
    assert {v["value"] for v in device["version"]} >= {v.sha256 for v in model_versions()}


@pytest.fixture(scope="module")
def analysed(analyzer, synth_recordings_module):
    return analyzer.analyze(synth_recordings_module, ids=["a_AV", "b_PV", "c_TV", "d_MV"], patient_id="x"), \
        synth_recordings_module


@pytest.fixture(scope="module")
def synth_recordings_module():
    from assistant.data.synth import synth_patient

    p = synth_patient("9001", seed=3, murmur="Present", duration=8.0)
    return [pcg.recording for pcg in p.recordings.values()]


def _described(findings: Findings) -> Findings:
    """The same findings with the call turned to Present and every systolic feature given its most likely value:
    the synthetic patients come out Absent on the shipped model, and this is the path a Present call takes."""
    features = {n: f.model_copy(update={"label": max(f.probabilities, key=f.probabilities.get)})
                if n.startswith(("systolic", "most")) else f for n, f in findings.features.items()}
    return findings.model_copy(update={"murmur": "Present", "features": features})


def test_features_are_written_with_probabilities_and_flags(analysed):
    findings, recordings = analysed
    present = _described(findings)
    report = report_input(present, recordings, model_versions(), patient_id="MRN-7")
    pdf = report_pdf(report)
    text = pdf_text(pdf)
    assert "MRN-7" in text and "a_AV" in text  # a given id: the report names the patient and the recordings
    bundle = json.loads(fhir_json(report, pdf))
    observations = resources(bundle, "Observation")
    for name, ft in present.features.items():
        if ft.label is None:
            assert not by_code(observations, f"feature-{name}")
            continue
        assert f"{ft.label} {pct(ft.probabilities[ft.label])}" in text.replace("\n", " ")
        (obs,) = by_code(observations, f"feature-{name}")
        assert obs["valueCodeableConcept"]["text"] == ft.label
        values = component_values(obs)
        assert values.pop("low-confidence") is ft.low_confidence and values.pop("training-examples") == ft.n_train
        assert values == {f"{name}.{v}": p for v, p in ft.probabilities.items()}
        assert obs["subject"]["identifier"]["value"] == "MRN-7"
    grading = by_code(observations, "80278-5")  # LOINC Heart Murmur grade on the grading finding
    assert [o["code"]["coding"][0]["code"] for o in grading] == ["feature-systolic_grading"]
    if any(ft.low_confidence and ft.label for ft in present.features.values()):
        assert "low (trained on" in text


def test_not_determinable_cases_are_stated(analysed):
    findings, recordings = analysed
    first = findings.recordings[0]
    seg = first.segmentation.model_copy(update={"heart_rate": None, "reliable": False, "message": "no rhythm found"})
    unknown = findings.model_copy(update={"murmur": "Unknown", "recordings": [
        first.model_copy(update={"segmentation": seg}), *findings.recordings[1:]]})
    report = report_input(unknown, recordings, model_versions())
    pdf = report_pdf(report)
    text = " ".join(pdf_text(pdf).split())
    assert "Murmur: Unknown" in text and "Not determinable (Unknown)" in text
    assert f"rec1 AV 8.0 s {NOT_DETERMINABLE}" in text and "features" in text and "are not determinable" in text
    bundle = fhir_bundle(report, pdf)
    observations = resources(json.loads(bundle.model_dump_json()), "Observation")
    (murmur,) = [o for o in by_code(observations, "88610006") if "valueCodeableConcept" in o]
    assert murmur["valueCodeableConcept"]["coding"][0]["code"] == "82334004"  # SNOMED CT Indeterminate
    hr = by_code(observations, "8867-4")
    assert "valueQuantity" not in hr[0] and hr[0]["dataAbsentReason"]["coding"][0]["code"] == "unknown"
    assert all("valueQuantity" in o for o in hr[1:])


def test_anonymised_warnings_name_no_file(analysed):
    findings, recordings = analysed
    warned = findings.model_copy(update={"warnings": ["a_AV: too noisy", "/home/jane/a_AV.wav: odd", "x: none"]})
    report = report_input(warned, recordings, model_versions())
    assert report.findings.warnings == ["rec1: too noisy", "<upload>: odd", "anonymous: none"]
    assert [r.id for r in report.findings.recordings] == ["rec1", "rec2", "rec3", "rec4"]


def audio_llm_observations(bundle: dict) -> list[dict]:
    return [o for o in resources(bundle, "Observation") if o.get("method", {}).get("coding", [{}])[0].get("code")
            == "audio-llm"]


def test_reports_without_an_audio_llm_carry_no_opinion(cli_reports):
    _, pdf, bundle = cli_reports
    assert "Audio-LLM" not in pdf_text(pdf)
    assert not audio_llm_observations(bundle) and len(resources(bundle, "Device")) == 1
    assert "Audio-LLM" not in resources(bundle, "DiagnosticReport")[0]["conclusion"]


def _opinion(findings: Findings, murmur: str | None, **features: str) -> Findings:
    """The findings with an audio-LLM's voted answers: every feature asked, the given ones named."""
    opinion = AudioLLMFinding(model="murmur-qwen2-audio-mini", murmur=murmur,
                              features={name: features.get(name) for name in FEATURES},
                              answers={r.id: {"murmur": "Present"} for r in findings.recordings})
    return findings.model_copy(update={"audio_llm": opinion})


def test_audio_llm_opinion_is_in_the_pdf_and_the_bundle(analysed):
    findings, recordings = analysed
    asked = _opinion(_described(findings), "Present", most_audible_location="MV", systolic_timing="Holosystolic")
    report = report_input(asked, recordings, model_versions())
    assert set(report.findings.audio_llm.answers) == {"rec1", "rec2", "rec3", "rec4"}  # anonymised like the rest
    pdf = report_pdf(report)
    text = " ".join(pdf_text(pdf).split())
    rows = audio_llm_rows(report.findings)
    assert [r.key for r in rows] == ["murmur", *FEATURES]
    markdown = audio_llm_markdown(report.findings)
    assert audio_llm_heading(report.findings.audio_llm) in text and AUDIO_LLM_CAVEAT in text
    for r in rows:  # the PDF and the Markdown show the same rows
        assert f"{r.question} {r.classifier} {r.audio_llm_text}" in text
        assert f"| {r.question} | {r.classifier} | {r.audio_llm_text} |" in markdown
    assert "murmur Present Present" in text and "most audible location" in text and "Holosystolic" in text

    bundle = json.loads(fhir_bundle(report, pdf).model_dump_json())  # validates
    theirs = audio_llm_observations(bundle)
    (device,) = [d for d in resources(bundle, "Device") if d["deviceName"][0]["type"] == "model-name"]
    assert device["deviceName"][0]["name"] == "murmur-qwen2-audio-mini"
    urls = {e["resource"]["id"]: e["fullUrl"] for e in bundle["entry"]}
    media = [{"reference": urls[m["id"]]} for m in resources(bundle, "Media")]
    for o in theirs:
        assert o["device"] == {"reference": urls[device["id"]]} and o["derivedFrom"] == media
        assert o["note"] == [{"text": AUDIO_LLM_CAVEAT}] and o["status"] == "preliminary"
    answered = {o["code"]["coding"][0]["code"]: o["valueCodeableConcept"]["text"] for o in theirs}
    assert answered == {"88610006": "Present", "feature-most_audible_location": "MV",
                        "feature-systolic_timing": "Holosystolic"}
    (call,) = by_code(theirs, "88610006")
    assert call["valueCodeableConcept"]["coding"][0] == CALL_VALUES["Present"]
    results = {r["reference"] for r in resources(bundle, "DiagnosticReport")[0]["result"]}
    assert {urls[o["id"]] for o in theirs} <= results
    # The classifier's own findings keep MurmurScope's device, not the audio-LLM's.
    ours = [o for o in resources(bundle, "Observation") if o not in theirs]
    assert ours and all(o["device"] != {"reference": urls[device["id"]]} for o in ours)


def test_audio_llm_without_a_valid_answer_or_without_an_opinion(analysed):
    findings, recordings = analysed
    # Its features describe its own murmur: not shown beside an Absent call.
    absent = _opinion(findings, "Absent", systolic_timing="Holosystolic")
    assert {r.key: r.audio_llm for r in audio_llm_rows(absent)}["systolic_timing"] is None
    assert "Holosystolic" not in audio_llm_markdown(absent)
    report = report_input(_opinion(findings, None), recordings, model_versions())
    pdf = report_pdf(report)
    assert f"murmur {findings.murmur} no valid answer" in " ".join(pdf_text(pdf).split())
    (call,) = audio_llm_observations(json.loads(fhir_json(report, pdf)))  # the call is said absent; no feature
    assert call["dataAbsentReason"]["text"] == "no valid answer" and "valueCodeableConcept" not in call

    failed = AudioLLMFinding(model="murmur-qwen2-audio-mini", error="the audio-LLM could not be reached (APIError)")
    report = report_input(findings.model_copy(update={"audio_llm": failed}), recordings, model_versions())
    pdf = report_pdf(report)
    text = " ".join(pdf_text(pdf).split())
    assert audio_llm_unavailable(failed) in text and "audio-LLM (voted)" not in text and AUDIO_LLM_CAVEAT not in text
    bundle = json.loads(fhir_json(report, pdf))
    assert not audio_llm_observations(bundle) and len(resources(bundle, "Device")) == 1
    assert audio_llm_unavailable(failed) in resources(bundle, "DiagnosticReport")[0]["conclusion"]


def test_patient_ids_are_checked():
    assert check_patient_id("  ") is None and check_patient_id(" MRN-1.2_a ") == "MRN-1.2_a"
    for bad in ("../x", "a b", "x" * 65, "-x"):
        with pytest.raises(ReportError):
            check_patient_id(bad)


def one_line_error(result) -> str:
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    return result.output.strip()


def test_file_rules(analyzer_loaded_once, synth_root, tmp_path):
    files = sorted(synth_root.glob("11002_*.wav"))
    existing = tmp_path / "r.pdf"
    existing.write_bytes(b"keep me")

    def run(*args):  # the console entry, which maps a MurmurScopeError to one line and exit 2
        return subprocess.run([sys.executable, "-c", "from assistant.cli.main import main; main()",
                               "analyze", *map(str, files), *args], capture_output=True, text=True)

    r = run("--report", existing)
    assert r.returncode == 2 and "exists; pass --force" in r.stderr and existing.read_bytes() == b"keep me"
    r = run("--fhir", files[0], "--force")
    assert r.returncode == 2 and "one of the inputs" in r.stderr and files[0].read_bytes()[:4] == b"RIFF"
    r = run("--report", tmp_path / "same", "--fhir", tmp_path / "same")
    assert r.returncode == 2 and "different files" in r.stderr
    r = run("--patient-id", "a b", "--report", tmp_path / "x.pdf")
    assert r.returncode == 2 and "patient id" in r.stderr and not (tmp_path / "x.pdf").exists()
    result = runner.invoke(app, ["analyze", *map(str, files), "--report", str(existing), "--force",
                                 "--patient-id", "MRN-9"])
    assert result.exit_code == 0, result.output
    assert existing.read_bytes()[:5] == b"%PDF-" and "MRN-9" in pdf_text(existing.read_bytes())


def test_several_patients_one_file_each(analyzer_loaded_once, synth_root, tmp_path):
    loose = tmp_path / "in"
    loose.mkdir()
    for p in [*synth_root.glob("11003_AV.wav"), *synth_root.glob("11004_MV.wav")]:
        shutil.copy(p, loose / p.name)
    files = sorted(loose.iterdir())
    result = runner.invoke(app, ["analyze", *map(str, files), "--patient-id", "A1", "--fhir", str(tmp_path / "b.json")])
    assert "names one patient" in str(result.exception) and not (tmp_path / "b.json").exists()
    result = runner.invoke(app, ["analyze", *map(str, files), "--fhir", str(tmp_path / "b.json")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.glob("b_*.json")) == ["b_11003.json", "b_11004.json"]
    bundle = json.loads((tmp_path / "b_11003.json").read_text())
    assert "11003" not in without_pdf(bundle)  # the id names the file on the user's disk only
