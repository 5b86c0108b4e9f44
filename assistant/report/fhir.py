"""One analysis as a FHIR R4 `Bundle` (type collection): a `DiagnosticReport` with the PDF as its
`presentedForm`, one `Observation` per finding, a `Media` per recording (its site and duration; no
audio and no file name) and a `Device` carrying the weights fingerprints. When an audio-LLM was asked, its
voted answers are Observations of their own, coded as the classifier's, with `method` audio-llm and a second
`Device` naming the served model, so nothing reads them as the classifier's.

Built and validated with fhir.resources' R4B models: fhir.resources 8 has no R4 package, and R4B (4.3.0)
changed only medication-definition, evidence and subscription resources (hl7.org/fhir/R4B/history.html);
Bundle, DiagnosticReport, Observation, Media and Device, and every element used here, are R4 (4.0.1) as
well, so the JSON is R4. Standard codes where they exist (SNOMED CT, LOINC, UCUM; sources in
docs/consultation.md); the rest is MurmurScope's own code system `CODE_SYSTEM`.
"""

from __future__ import annotations

import base64
import hashlib
import uuid

from fhir.resources.R4B.bundle import Bundle

from assistant import __version__
from assistant.consult.findings import DISCLAIMER
from assistant.consult.report import AUDIO_LLM_CAVEAT, MURMUR_QUESTION, audio_llm_rows, audio_llm_unavailable
from assistant.data.labels import HEADER_KEYS, MURMUR_CLASSES
from assistant.report.document import ReportInput
from assistant.report.pdf import pct

# MurmurScope's code system: a fixed urn:uuid (FHIR accepts urn:uuid system URIs), since the project owns
# no domain whose URL could name it. Codes: docs/consultation.md.
CODE_SYSTEM = "urn:uuid:b80fc09d-9ba9-471d-beae-ee1d1c1a60ea"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
DATA_ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
MEDIA_TYPE = "http://terminology.hl7.org/CodeSystem/media-type"

HEART_MURMUR = {"system": SNOMED, "code": "88610006", "display": "Heart murmur (finding)"}
CALL_VALUES = {
    "Present": {"system": SNOMED, "code": "52101004", "display": "Present (qualifier value)"},
    "Absent": {"system": SNOMED, "code": "2667000", "display": "Absent (qualifier value)"},
    "Unknown": {"system": SNOMED, "code": "82334004", "display": "Indeterminate (qualifier value)"},
}
HEART_RATE = {"system": LOINC, "code": "8867-4", "display": "Heart rate"}
MURMUR_GRADE = {"system": LOINC, "code": "80278-5", "display": "Heart Murmur grade"}
SITE_NAMES = {"AV": "aortic valve area", "PV": "pulmonic valve area", "TV": "tricuspid valve area",
              "MV": "mitral valve area", "Phc": "other auscultation site"}
PROBABILITY_UNIT = {"unit": "probability", "system": UCUM, "code": "1"}


def own(code: str, display: str) -> dict:
    return {"system": CODE_SYSTEM, "code": code, "display": display}


def _concept(*codings: dict, text: str | None = None) -> dict:
    return {"coding": list(codings), "text": text or codings[0]["display"]}


def _probability(value: float) -> dict:
    return {"value": value, **PROBABILITY_UNIT}


def _ref(full_url: str) -> dict:
    return {"reference": full_url}


def _absent(why: str) -> dict:
    return {"dataAbsentReason": {"coding": [{"system": DATA_ABSENT, "code": "unknown", "display": "Unknown"}],
                                 "text": why}}


def _call_value(call: str) -> dict:
    return _concept(CALL_VALUES[call], own(f"murmur-{call}", call), text=call)


def _feature_code(name: str) -> dict:
    codes = [own(f"feature-{name}", HEADER_KEYS[name])] + ([MURMUR_GRADE] if name.endswith("grading") else [])
    return _concept(*codes, text=HEADER_KEYS[name])


def _feature_value(name: str, label: str) -> dict:
    return _concept(own(f"{name}.{label}", label), text=label)


class _Entries:
    """Resources with urn:uuid full URLs, so they can reference one another inside the collection."""

    def __init__(self) -> None:
        self.items: list[dict] = []

    def add(self, resource: dict, first: bool = False) -> str:
        rid = str(uuid.uuid4())
        self.items.insert(0 if first else len(self.items), {"fullUrl": f"urn:uuid:{rid}",
                                                              "resource": {**resource, "id": rid}})
        return f"urn:uuid:{rid}"


def bundle_dict(report: ReportInput, pdf: bytes | None = None) -> dict:
    """The Bundle as a plain dict (validated by `fhir_bundle`)."""
    f = report.findings
    when = report.created.isoformat()
    subject = {"subject": {"identifier": {"value": f.patient_id}, "display": f.patient_id}} \
        if report.patient_given else {}
    entries = _Entries()
    device = entries.add({
        "resourceType": "Device", "status": "active",
        "deviceName": [{"name": "MurmurScope", "type": "user-friendly-name"}],
        "version": [{"type": {"text": "MurmurScope"}, "value": __version__}] + [
            {"type": {"text": f"{v.name} ({v.location}) sha256"}, "value": v.sha256} for v in report.versions],
    })
    exam = [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "exam", "display": "Exam"}]}]
    common = {"resourceType": "Observation", "status": "preliminary", "category": exam, "effectiveDateTime": when,
              "issued": when, "device": _ref(device), **subject}

    media, observations = [], []
    for r in f.recordings:
        site = {"bodySite": _concept(own(f"site-{r.site}", f"{SITE_NAMES[r.site]} ({r.site})"))} if r.site else {}
        m = entries.add({"resourceType": "Media", "status": "completed", "identifier": [{"value": r.id}],
                         "type": _concept({"system": MEDIA_TYPE, "code": "audio", "display": "Audio"}),
                         "createdDateTime": when, "duration": r.duration_s, "content": {"title": r.id},
                         "note": [{"text": "phonocardiogram; the audio itself is not part of this bundle"}],
                         **site, **subject})
        media.append(m)
        s = r.segmentation
        if s.heart_rate is not None:
            hr_value = {"valueQuantity": {"value": s.heart_rate, "unit": "beats/minute", "system": UCUM,
                                          "code": "/min"}}
        else:
            hr_value = _absent(f"not determinable: {s.message}")
        observations.append(entries.add({
            **common, "code": _concept(HEART_RATE), **hr_value, **site, "derivedFrom": [_ref(m)],
            "component": [{"code": _concept(own("heart-rate-confidence", "Heart rate confidence")),
                           "valueQuantity": _probability(s.heart_rate_confidence)}]}))
        observations.append(entries.add({
            **common, "code": _concept(own("signal-quality", "Signal quality (0 poor, 1 clean)")),
            "valueQuantity": {"value": s.quality, "unit": "1", "system": UCUM, "code": "1"}, **site,
            "derivedFrom": [_ref(m)], **({"note": [{"text": s.message}]} if s.message else {}),
            "component": [
                {"code": _concept(own("signal-reliable", "Segmentation reliable")), "valueBoolean": s.reliable},
                {"code": _concept(own("heart-cycles", "Heart cycles found")), "valueInteger": s.n_cycles}]}))
        if r.murmur_probabilities:
            observations.append(entries.add({
                **common, "code": _concept(HEART_MURMUR, own("murmur-at-site", "Heart murmur at this recording"),
                                           text="Heart murmur at this recording"),
                **site, "derivedFrom": [_ref(m)], "component": _class_components(r.murmur_probabilities)}))

    observations.append(entries.add({
        **common, "code": _concept(own("signal-quality-mean", "Signal quality, mean over the recordings")),
        "valueQuantity": {"value": f.signal_quality, "unit": "1", "system": UCUM, "code": "1"},
        "derivedFrom": [_ref(m) for m in media]}))
    undetermined = {"note": [{"text": "not determinable: the recordings do not allow a murmur call"}]} \
        if f.murmur == "Unknown" else {}
    murmur = entries.add({
        **common, "code": _concept(HEART_MURMUR, text="Heart murmur"),
        "valueCodeableConcept": _call_value(f.murmur),
        "method": _concept(own("murmur-model", "MurmurScope murmur model on phonocardiograms")),
        "derivedFrom": [_ref(m) for m in media], "component": _class_components(f.probabilities), **undetermined})
    observations.insert(0, murmur)
    for name, ft in f.features.items():
        if ft.label is None:  # only described features are findings; the rest are not determinable
            continue
        observations.append(entries.add({
            **common, "code": _feature_code(name), "valueCodeableConcept": _feature_value(name, ft.label),
            "derivedFrom": [_ref(murmur)],
            "component": [{"code": _concept(own(f"{name}.{v}", v), text=f"P({v})"), "valueQuantity": _probability(p)}
                          for v, p in ft.probabilities.items()]
            + [{"code": _concept(own("low-confidence", "Low confidence: few training examples")),
                "valueBoolean": ft.low_confidence},
               {"code": _concept(own("training-examples", "Training examples")), "valueInteger": ft.n_train}]}))

    if f.audio_llm is not None and not f.audio_llm.error:
        observations += _audio_llm_observations(report, entries, {**common, "derivedFrom": [_ref(m) for m in media]})
    unavailable = [audio_llm_unavailable(f.audio_llm)] if f.audio_llm is not None and f.audio_llm.error else []

    probs = ", ".join(f"{c} {pct(f.probabilities.get(c, 0.0))}" for c in MURMUR_CLASSES)
    conclusion = " ".join([f"Murmur: {f.murmur} ({probs}); signal quality {f.signal_quality:.3f}.",
                           *[f"Warning: {w}." for w in f.warnings], *unavailable, f.disclaimer or DISCLAIMER])
    report_resource = {
        "resourceType": "DiagnosticReport", "status": "preliminary",
        "code": _concept(own("murmur-analysis", "MurmurScope heart-murmur analysis of phonocardiograms")),
        **subject, "effectiveDateTime": when, "issued": when,
        "result": [_ref(o) for o in observations], "media": [{"link": _ref(m)} for m in media],
        "conclusion": conclusion,
    }
    if pdf is not None:
        report_resource["presentedForm"] = [{
            "contentType": "application/pdf", "language": "en", "data": base64.b64encode(pdf).decode(),
            "title": "MurmurScope consultation report", "creation": when, "size": len(pdf),
            "hash": base64.b64encode(hashlib.sha1(pdf).digest()).decode()}]  # FHIR Attachment.hash is SHA-1
    entries.add(report_resource, first=True)
    return {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": "collection", "timestamp": when,
            "entry": entries.items}


def _audio_llm_observations(report: ReportInput, entries: _Entries, common: dict) -> list[str]:
    """The audio-LLM's voted answers (the rows every format shows): its murmur call always, with a data-absent
    reason when no answer was valid, and each feature it named. Its own Device, since it is not MurmurScope's
    weights: a served model known here by its name only."""
    a = report.findings.audio_llm
    device = entries.add({"resourceType": "Device", "status": "active",
                          "deviceName": [{"name": a.model, "type": "model-name"}],
                          "type": {"text": "audio language model (served)"}})
    opinion = {**common, "device": _ref(device), "note": [{"text": AUDIO_LLM_CAVEAT}],
               "method": _concept(own("audio-llm", "Audio language model second opinion, voted over the recordings"))}
    out = []
    for row in audio_llm_rows(report.findings):
        if row.key == MURMUR_QUESTION:
            value = {"valueCodeableConcept": _call_value(row.audio_llm)} if row.audio_llm else \
                _absent(row.audio_llm_text)
            out.append(entries.add({**opinion, "code": _concept(HEART_MURMUR, text="Heart murmur"), **value}))
        elif row.audio_llm is not None:
            out.append(entries.add({**opinion, "code": _feature_code(row.key),
                                    "valueCodeableConcept": _feature_value(row.key, row.audio_llm)}))
    return out


def _class_components(probabilities: dict[str, float]) -> list[dict]:
    return [{"code": _concept(own(f"probability-{c}", f"Probability: murmur {c}")),
             "valueQuantity": _probability(probabilities[c])} for c in MURMUR_CLASSES if c in probabilities]


def fhir_bundle(report: ReportInput, pdf: bytes | None = None) -> Bundle:
    """The validated Bundle (fhir.resources raises on anything FHIR does not allow)."""
    return Bundle.model_validate(bundle_dict(report, pdf))


def fhir_json(report: ReportInput, pdf: bytes | None = None) -> str:
    return fhir_bundle(report, pdf).model_dump_json(indent=2)
