"""Small test doubles for the pieces the consultation calls (segmenter, murmur model, retriever,
audio-LLM client), with the public names of the real modules. Tests of the consultation's own logic
use them so they do not depend on trained weights; `install_missing()` also registers them as the
modules themselves while a real module has not landed yet.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from dataclasses import dataclass, field

import numpy as np

from assistant.audio import Recording
from assistant.labels import FEATURES
from assistant.segmentation import Segmentation, State


@dataclass
class SegmentResult:
    segmentation: Segmentation
    frame_rate: float
    states: np.ndarray
    heart_rate: float | None
    heart_rate_confidence: float
    quality: float
    reliable: bool
    message: str

    def cycles(self) -> list[tuple[float, float]]:
        s1 = self.segmentation.of(State.S1)
        return [(a.start, b.start) for a, b in zip(s1, s1[1:])]


def segment_recording(rec: Recording, segmenter=None) -> SegmentResult:
    """A fixed 1 s cycle (75 bpm-ish), quality from the peak-to-RMS ratio."""
    frame_rate = 50.0
    n = int(rec.duration * frame_rate)
    pattern = np.repeat([State.S1, State.SYSTOLE, State.S2, State.DIASTOLE], [6, 14, 5, 25]).astype(np.int8)
    states = np.resize(pattern, n)
    rms = float(np.sqrt(np.mean(rec.samples**2)))
    quality = float(np.clip(np.max(np.abs(rec.samples)) / (rms + 1e-9) / 10, 0, 1))
    return SegmentResult(Segmentation.from_states(states, frame_rate), frame_rate, states, 60.0, 0.9, quality,
                         quality > 0.3, "ok" if quality > 0.3 else "noisy recording")


@dataclass
class FeaturePrediction:
    name: str
    label: str | None
    probabilities: dict[str, float]
    n_train: int
    low_confidence: bool


@dataclass
class RecordingPrediction:
    name: str
    site: str | None
    probabilities: dict[str, float]


@dataclass
class PatientPrediction:
    patient_id: str
    murmur: str
    probabilities: dict[str, float]
    recordings: list[RecordingPrediction]
    features: dict[str, FeaturePrediction]
    warnings: list[str] = field(default_factory=list)


class MurmurModel:
    """P(Present) rises with the recording's high-band energy share; features take their first value."""

    calls = 0

    @classmethod
    def load(cls, path=None) -> MurmurModel:
        return cls()

    def predict_recordings(self, recordings: list[Recording], patient_id: str = "upload") -> PatientPrediction:
        type(self).calls += 1
        recs = []
        for r in recordings:
            spec = np.abs(np.fft.rfft(r.samples))
            freqs = np.fft.rfftfreq(r.samples.size, 1 / r.rate)
            share = float(spec[freqs > 150].sum() / (spec.sum() + 1e-9))
            p = float(np.clip(share * 2, 0.05, 0.9))
            recs.append(RecordingPrediction(r.source, r.site, {"Present": p, "Unknown": 0.05, "Absent": 0.95 - p}))
        probs = {k: float(np.mean([r.probabilities[k] for r in recs])) for k in ("Present", "Unknown", "Absent")}
        murmur = max(probs, key=probs.get)
        feats = {name: FeaturePrediction(name, values[0] if murmur == "Present" else None,
                                         {v: 1 / len(values) for v in values}, 10, True)
                 for name, values in FEATURES.items()}
        return PatientPrediction(patient_id, murmur, probs, recs, feats, [])


@dataclass
class Passage:
    id: str
    title: str
    section: str
    text: str
    source: str
    url: str | None
    year: int | None
    score: float


PASSAGES = [
    Passage("aha-1", "Innocent murmurs in children", "Features", "An innocent murmur is soft (grade I-II), "
            "systolic, short and musical or vibratory, and changes with position.", "AHA", None, 2020, 0.0),
    Passage("esc-1", "Valvular heart disease", "Echocardiography", "Refer for echocardiography any diastolic "
            "murmur, any murmur grade III or louder, or a holosystolic murmur.", "ESC", None, 2021, 0.0),
    Passage("nice-1", "Recording technique", "Quality", "Repeat auscultation in a quiet room when the recording "
            "is noisy; a poor recording cannot rule out a murmur.", "NICE", None, 2019, 0.0),
]


class Retriever:
    """Word-overlap ranking over three passages."""

    queries: list[str] = []

    @classmethod
    def load(cls, index_dir=None) -> Retriever:
        return cls()

    def search(self, query: str, k: int = 5) -> list[Passage]:
        type(self).queries.append(query)
        words = set(query.lower().split())
        scored = [(len(words & set(p.text.lower().split())), p) for p in PASSAGES]
        scored.sort(key=lambda t: -t[0])
        return [Passage(**{**p.__dict__, "score": float(s)}) for s, p in scored[:k]]

    def as_tool(self):
        from langchain_core.tools import tool

        @tool
        def search_guidance(query: str) -> str:
            """Search cardiology guidance; returns numbered passages with their sources."""
            return "\n\n".join(f"[{i}] {p.text} ({p.source}, {p.title})"
                               for i, p in enumerate(self.search(query, k=3), 1))

        return search_guidance


@dataclass
class AudioLLMConfig:
    base_url: str
    model: str
    api_key: str = "EMPTY"
    timeout: float = 60.0


def ask(recording: Recording, question: str, config: AudioLLMConfig) -> str:
    return f"heard {recording.duration:.0f} s at {recording.site}"


def _module(name: str, **members) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__dict__.update(members)
    return mod


MODULES = {
    "assistant.segmenter": dict(SegmentResult=SegmentResult, segment_recording=segment_recording),
    "assistant.murmur": dict(FeaturePrediction=FeaturePrediction, RecordingPrediction=RecordingPrediction,
                             PatientPrediction=PatientPrediction, MurmurModel=MurmurModel),
    "knowledge.retriever": dict(Passage=Passage, Retriever=Retriever),
    "assistant.audio_llm": dict(AudioLLMConfig=AudioLLMConfig, ask=ask),
}


def install_missing() -> list[str]:
    """Register the doubles as modules for the pieces not on this branch yet; returns their names."""
    missing = [name for name in MODULES if importlib.util.find_spec(name) is None]
    for name in missing:
        sys.modules[name] = _module(name, **MODULES[name])
    return missing
