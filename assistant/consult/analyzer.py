"""The Analyzer: the loaded segmenter, murmur model and retriever, and the one `analyze` that the
CLI, the API, the agent's tools and the Streamlit app all call."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from assistant.abnormal.features import recording_vector
from assistant.abnormal.model import CAVEAT, AbnormalModel
from assistant.consult.findings import (
    AbnormalFinding,
    FamiliarityFinding,
    FeatureFinding,
    Findings,
    GuidancePassage,
    RecordingFindings,
    SegmentationFinding,
)
from assistant.data.audio import Recording, check_samples
from assistant.errors import MurmurScopeError
from assistant.murmur.familiarity import Familiarity
from assistant.murmur.model import WEIGHTS_DIR, FrameStatistics, MurmurModel, PatientPrediction
from assistant.segment.gate import NO_HEART, not_heart_reason
from assistant.segment.segmenter import Segmenter, SegmentResult, default_segmenter, segment_recording
from knowledge.retriever import Retriever


def segmentation_finding(result: SegmentResult) -> SegmentationFinding:
    return SegmentationFinding(
        heart_rate=None if result.heart_rate is None else round(float(result.heart_rate), 1),
        heart_rate_confidence=round(float(result.heart_rate_confidence), 3),
        quality=round(float(result.quality), 3),
        reliable=bool(result.reliable),
        message=result.message,
        n_cycles=len(result.cycles()),
        thin_evidence=bool(result.thin),
        intervals=[(round(iv.start, 4), round(iv.end, 4), int(iv.state)) for iv in result.segmentation.intervals],
    )


def thin_evidence_warning(rid: str, duration_s: float, segmentation: SegmentationFinding) -> str:
    n = segmentation.n_cycles
    return (f"{rid}: thin evidence, {n} complete heart cycle{'s' if n != 1 else ''} in {duration_s:g} s: the call "
            "rests on very little audio; confirm it on a longer recording")


def recording_gate(result: SegmentResult) -> str | None:
    """Why a recording does not count as heart sounds (no reliable cycles, or it sounds like something else)."""
    if not result.reliable:
        return result.message
    return not_heart_reason(result.evidence, result.quality) if result.evidence else None


def heart_check(results: Sequence[SegmentResult]) -> str | None:
    """The patient-level gate: NO_HEART when no recording counts as heart sounds, else None."""
    return NO_HEART if all(recording_gate(r) for r in results) else None


def guidance_query(prediction: PatientPrediction, murmur: str) -> str:
    """A retrieval query that describes the result (`murmur`: the call after the gate) in guidance's words."""
    if murmur == "Present":
        described = [f.label for name, f in prediction.features.items()
                     if f.label and not f.low_confidence and not name.startswith("diastolic")]
        return ("heart murmur " + " ".join(described) +
                " in a child: innocent versus pathological murmur, when to refer for echocardiography")
    if murmur == "Unknown":
        return "poor quality auscultation, murmur cannot be judged: repeat the recording, when to refer"
    return "normal heart sounds without a murmur in a child: screening and follow-up"


class AnalysisError(MurmurScopeError):
    """Nothing usable to analyse."""


@dataclass(frozen=True)
class AnalysisConfig:
    """Which weights and index the analysis loads; None means the ones shipped in the package."""

    murmur_model: Path | None = field(default=None, metadata={"help": "Murmur model weights (default: shipped)."})
    index_dir: Path | None = field(default=None, metadata={"help": "Guidance index (default: shipped)."})
    guidance_k: int = field(default=3, metadata={"help": "Guidance passages per patient."})
    abnormal_model: Path | None = field(default=None, metadata={
        "help": "Normal/abnormal model weights (default: shipped)."})


class Analyzer:
    """Loaded models, reused across calls (the warm path the API and the app keep in memory)."""

    def __init__(self, murmur_model: MurmurModel, retriever: Retriever | None = None, guidance_k: int = 3,
                 segmenter: Segmenter | None = None, config: AnalysisConfig | None = None,
                 familiarity: Familiarity | None = None, abnormal: AbnormalModel | None = None):
        self.murmur_model = murmur_model
        self.familiarity = familiarity
        self.abnormal = abnormal
        self.config = config  # what load() loaded (reports fingerprint those weights); None when built by hand
        self.retriever = retriever
        self.guidance_k = guidance_k
        self.segmenter = segmenter
        # The API and the app call in from many threads; concurrent torch passes on a few CPU cores
        # oversubscribe them (20 parallel analyses took twice as long as 20 in a row), so models run one
        # at a time while decoding and retrieval stay parallel.
        self._model_lock = threading.Lock()

    @classmethod
    def load(cls, config: AnalysisConfig = AnalysisConfig()) -> Analyzer:
        murmur_folder = config.murmur_model or WEIGHTS_DIR
        murmur = MurmurModel.load(config.murmur_model)
        # Both read the shipped CNN's embeddings: with other murmur weights they have nothing valid to read.
        cnn = murmur.config.encoder == "cnn"
        abnormal = AbnormalModel.load(config.abnormal_model, murmur_folder) if cnn and (
            config.abnormal_model is not None or config.murmur_model is None) else None
        return cls(murmur, Retriever.load(config.index_dir), config.guidance_k, default_segmenter(), config,
                   Familiarity.load(murmur_folder) if cnn else None, abnormal)

    def segment(self, recording: Recording) -> SegmentationFinding:
        with self._model_lock:
            return segmentation_finding(segment_recording(recording, segmenter=self.segmenter))

    def guidance(self, query: str, k: int | None = None) -> list[GuidancePassage]:
        if self.retriever is None:
            return []
        return [GuidancePassage.of(p) for p in self.retriever.search(query, k=k or self.guidance_k)]

    def analyze(self, recordings: Sequence[Recording], ids: Sequence[str] | None = None, patient_id: str = "upload",
                guidance: bool = True) -> Findings:
        if not recordings:
            raise AnalysisError("no recordings to analyse")
        ids = list(ids) if ids is not None else [f"rec{i + 1}" for i in range(len(recordings))]
        for rid, rec in zip(ids, recordings):
            try:
                check_samples(rec.samples, rec.rate, rid)
            except MurmurScopeError as e:
                raise AnalysisError(str(e)) from None
        # predict_recordings keeps the order of its input and drops only recordings that fail
        # check_samples, which none does now: recording k is prediction k.
        with self._model_lock:
            results = [segment_recording(rec, segmenter=self.segmenter) for rec in recordings]
            prediction = self.murmur_model.predict_recordings(list(recordings), patient_id=patient_id)
            stats = ([self.murmur_model.frame_statistics(rec) for rec in recordings]
                     if self.familiarity is not None or self.abnormal is not None else [])
        reasons = [recording_gate(r) for r in results]
        # The non-heart gate: when no recording sounds like a heart, the call is Unknown whatever the
        # model says (speech has been called Present); one recording that passes keeps the model's call.
        no_heart = heart_check(results)
        distances = [self.familiarity.score(st.mean) for st in stats] if self.familiarity is not None else []
        # The familiarity gate: a recording from another stethoscope or population has been called Present
        # far more often than CirCor's; when most recordings are unlike the training data, say so instead.
        unfamiliar = None if no_heart or self.familiarity is None else self.familiarity.patient_reason(distances)
        abnormal = self._abnormal(ids, recordings, stats, results) if self.abnormal is not None and not no_heart \
            else {}
        found = [RecordingFindings(id=rid, site=rec.site, duration_s=round(rec.duration, 2),
                                   segmentation=segmentation_finding(res),
                                   murmur_probabilities=_rounded(p.probabilities), not_heart=why,
                                   evidence=res.evidence.to_dict() if res.evidence else {},
                                   familiarity=round(distances[k], 2) if distances else None,
                                   abnormal_probability=abnormal.get("recordings", {}).get(rid))
                 for k, (rid, rec, p, res, why) in enumerate(zip(ids, recordings, prediction.recordings, results,
                                                                 reasons, strict=True))]
        gated = no_heart or unfamiliar
        warnings = ([gated] if gated else []) + list(prediction.warnings)
        warnings += [f"{r.id}: {r.not_heart}" for r in found if r.not_heart]
        warnings += [thin_evidence_warning(r.id, r.duration_s, r.segmentation) for r in found
                     if r.segmentation.thin_evidence and not r.not_heart]
        findings = Findings(
            patient_id=patient_id,
            murmur="Unknown" if gated else prediction.murmur,
            probabilities=_rounded(prediction.probabilities),
            signal_quality=round(sum(r.segmentation.quality for r in found) / len(found), 3),
            recordings=found,
            features={name: FeatureFinding(label=None if gated else f.label, probabilities=_rounded(f.probabilities),
                                           low_confidence=f.low_confidence, n_train=f.n_train, source=f.source)
                      for name, f in prediction.features.items()},
            warnings=warnings,
            no_heart=no_heart,
            ungated_murmur=prediction.murmur if gated else None,
            unfamiliar=unfamiliar,
            familiarity=None if self.familiarity is None else FamiliarityFinding(
                threshold=round(self.familiarity.config.threshold, 2),
                unfamiliar_recordings=sum(self.familiarity.unfamiliar(d) for d in distances),
                recordings=len(distances), method=FAMILIARITY_METHOD.format(self.familiarity.config.percentile)),
            abnormal=abnormal.get("finding"),
        )
        if guidance:
            findings.guidance = self.guidance(guidance_query(prediction, findings.murmur))
        return findings


    def _abnormal(self, ids: list[str], recordings: Sequence[Recording], stats: list[FrameStatistics],
                  results: list[SegmentResult]) -> dict:
        vectors = {rid: recording_vector(self.murmur_model, st, res, rec, self.abnormal.config.features)
                   for rid, rec, st, res in zip(ids, recordings, stats, results, strict=True)}
        p = self.abnormal.predict(vectors)
        return {"recordings": {k: round(v, 4) for k, v in p.recordings.items()},
                "finding": AbnormalFinding(label=p.label, probability=round(p.probability, 4), threshold=p.threshold,
                                           caveat=CAVEAT)}


FAMILIARITY_METHOD = ("Mahalanobis distance of the murmur embedding from CirCor's training recordings; the threshold "
                      "is the {:g}th percentile of CirCor training recordings' cross-fitted distances")


def _rounded(probabilities: dict[str, float]) -> dict[str, float]:
    return {k: round(float(v), 4) for k, v in probabilities.items()}
