"""What one analysis found, as pydantic models so every consumer (CLI, API, agent, app, reports)
serialises it the same way: segmentation per recording, the murmur call with its probabilities, the
features and the guidance passages that match the result.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from knowledge.retriever import Passage

DISCLAIMER = (
    "MurmurScope is decision support, not a diagnosis: a clinician must interpret these findings "
    "together with the history and examination, and refer for echocardiography when in doubt."
)


class SegmentationFinding(BaseModel):
    heart_rate: float | None = Field(description="Beats per minute; None when no rhythm was found.")
    heart_rate_confidence: float
    quality: float = Field(description="Signal quality in [0, 1] (1: clean heart sounds).")
    reliable: bool
    message: str
    n_cycles: int
    thin_evidence: bool = Field(default=False, description="Reliable, but on fewer complete cycles than a full "
                                                           "recording must show (a short clip).")
    intervals: list[tuple[float, float, int]] = Field(
        default_factory=list, description="(start_s, end_s, state) with state 1 S1, 2 systole, 3 S2, 4 diastole."
    )


class RecordingFindings(BaseModel):
    id: str
    site: str | None
    duration_s: float
    segmentation: SegmentationFinding
    murmur_probabilities: dict[str, float] = Field(default_factory=dict)
    not_heart: str | None = Field(default=None, description="Why this recording does not sound like a heart.")
    evidence: dict[str, float] = Field(default_factory=dict, description="The non-heart gate's measures.")
    familiarity: float | None = Field(default=None, description="Distance of this recording from the murmur "
                                                                "model's training recordings (larger: less alike).")
    abnormal_probability: float | None = Field(default=None, description="P(abnormal) of this recording.")


class FeatureFinding(BaseModel):
    label: str | None
    probabilities: dict[str, float]
    low_confidence: bool
    n_train: int
    source: str = Field(default="heads", description="Which model read it: 'heads' (the murmur model's own) or "
                                                     "'whisper-reader' (the fine-tuned Whisper encoder's probes).")


class FamiliarityFinding(BaseModel):
    """How alike the recordings are to the CirCor recordings the murmur model was trained on."""

    threshold: float = Field(description="Distance beyond which a recording counts as unfamiliar.")
    unfamiliar_recordings: int
    recordings: int
    method: str = Field(description="How the distance is measured and the threshold chosen.")


class AbnormalFinding(BaseModel):
    """The normal/abnormal call (PhysioNet 2016 task), a separate model from the murmur call."""

    label: str = Field(description="abnormal or normal.")
    probability: float = Field(description="P(abnormal), the mean over the recordings.")
    threshold: float
    caveat: str = Field(description="What 'abnormal' covers and what the model was trained on.")


class GuidancePassage(BaseModel):
    id: str
    title: str
    section: str
    text: str
    source: str
    url: str | None = None
    year: int | None = None
    score: float

    @classmethod
    def of(cls, p: Passage) -> GuidancePassage:
        return cls(id=str(p.id), title=p.title, section=p.section, text=p.text, source=p.source, url=p.url,
                   year=p.year, score=float(p.score))

    def citation(self) -> str:
        return f"{self.title} — {self.section}. Source: {self.source}"


class AudioLLMFinding(BaseModel):
    """The served audio-LLM's answers, beside (never instead of) the classifier's call."""

    model: str
    murmur: str | None = Field(default=None, description="Present when any recording was called Present, "
                                                         "else the vote of the answers; None without a valid one.")
    features: dict[str, str | None] = Field(default_factory=dict, description=(
        "Each feature's label, voted by the probability each recording's reply gave it (the most audible location: "
        "the site where it is surest of the murmur); reports show them beside its own Present call."))
    answers: dict[str, dict[str, str]] = Field(default_factory=dict,
                                               description="Recording id -> question feature -> raw reply.")
    error: str | None = Field(default=None, description="Why there are no answers (server unreachable ...).")


class Findings(BaseModel):
    patient_id: str
    murmur: str = Field(description="Present, Unknown or Absent.")
    probabilities: dict[str, float]
    signal_quality: float = Field(description="Mean segmentation quality over the recordings.")
    recordings: list[RecordingFindings]
    features: dict[str, FeatureFinding]
    warnings: list[str] = Field(default_factory=list)
    guidance: list[GuidancePassage] = Field(default_factory=list)
    disclaimer: str = DISCLAIMER
    no_heart: str | None = Field(default=None, description="Set when no recording sounds like a heart: the call "
                                                           "is then Unknown whatever the model says.")
    ungated_murmur: str | None = Field(default=None, description="The model's call when a gate (non-heart or "
                                                                 "unfamiliar) overrode it.")
    unfamiliar: str | None = Field(default=None, description="Set when most recordings do not resemble the murmur "
                                                             "model's training recordings: the call is then Unknown.")
    familiarity: FamiliarityFinding | None = Field(default=None, description="None when the murmur model has no "
                                                                             "familiarity model beside it.")
    abnormal: AbnormalFinding | None = Field(default=None, description="None without heart sounds or without a "
                                                                       "normal/abnormal model.")
    audio_llm: AudioLLMFinding | None = Field(default=None, description="A served audio-LLM's second opinion, "
                                                                        "when one is configured.")

    def compact(self) -> dict:
        """The findings without per-interval segmentation: what a chat model needs to read."""
        return self.model_dump(exclude={"recordings": {"__all__": {"segmentation": {"intervals"}}}, "guidance": True})
