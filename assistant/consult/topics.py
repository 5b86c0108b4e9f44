"""What a clinician's question is about, so a reply without a chat model can answer that first.

Each topic is described by a few example phrasings; a question (and each clause of a compound
question) goes to the topic of its nearest example in the embedding space of the retriever's own
sentence model, or to general guidance when no example is near enough. Embeddings, not keywords:
"how loud is it" and "what grade" land together without either word list knowing the other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

import numpy as np

from knowledge.embedding import Embedder


class Topic(str, Enum):
    presence = "presence"
    grade = "grade"
    timing = "timing"
    shape = "shape"
    pitch = "pitch"
    quality = "quality"
    location = "location"
    heart_rate = "heart_rate"
    recording_quality = "recording_quality"
    referral = "referral"
    general = "general"


EXAMPLES: dict[Topic, tuple[str, ...]] = {
    Topic.presence: (
        "Can a murmur be heard?", "Does this child have a heart murmur?", "Did you hear a murmur?",
        "Is the murmur present or absent?", "Are the heart sounds normal?", "Any murmur on these recordings?",
        "Is anything abnormal on the recordings?",
    ),
    Topic.grade: (
        "What grade is the murmur?", "How loud is the murmur?", "What is the intensity of the murmur?",
        "Levine grade of the murmur", "Is it a grade III murmur?", "How intense is it out of six?",
        "Is it soft or loud?",
    ),
    Topic.timing: (
        "When in the cardiac cycle does the murmur occur?", "Is the murmur systolic or diastolic?",
        "What is the timing of the murmur?", "Is it holosystolic or early systolic?",
        "Does the murmur last through the whole of systole?",
    ),
    Topic.shape: (
        "What shape is the murmur?", "Is it crescendo or decrescendo?", "What is the murmur's configuration?",
        "Is it a diamond-shaped ejection murmur?", "Does the intensity rise or fall during the murmur?",
        "Does it build up and then fade away?",
    ),
    Topic.pitch: (
        "What is the pitch of the murmur?", "Is the murmur high or low pitched?", "What frequency is the murmur?",
        "Is it a low-frequency rumble or a high-pitched sound?",
    ),
    Topic.quality: (
        "What does the murmur sound like?", "Is the murmur harsh, blowing or musical?",
        "What is the quality of the murmur?", "Is it a vibratory musical murmur?", "Describe the character of it",
        "Is the sound rough and harsh?",
    ),
    Topic.location: (
        "Where is the murmur loudest?", "At which auscultation site is it best heard?",
        "What is the most audible location?", "Which valve area is the murmur at?",
        "Is it loudest at the pulmonary or mitral area?", "Is it heard best at the apex or the sternal border?",
    ),
    Topic.heart_rate: (
        "What is the heart rate?", "How fast is the heart beating?", "How many beats per minute?",
        "Is the child tachycardic?", "What is the pulse rate on the recording?",
    ),
    Topic.recording_quality: (
        "Are the recordings good enough?", "What is the signal quality?", "Is the recording too noisy?",
        "Can I trust these recordings?", "Should I record again?", "How reliable is the segmentation?",
    ),
    Topic.referral: (
        "Is a specialist opinion needed?", "Do I need to refer?", "Does it warrant a referral?",
        "Does this need an echocardiogram?",
        "Is this murmur innocent or pathological?", "What should I do next?", "Is this serious?",
        "Can I reassure the parents?", "Should she be seen by a paediatric cardiologist?",
        "Does he need specialist review?", "Is cardiology follow-up needed?",
    ),
    # Questions about murmurs in general rather than about these recordings: without them every sentence
    # that names a murmur would sit nearest "Is there a murmur?".
    Topic.general: (
        "Which innocent murmurs have names?", "Explain what a venous hum is", "What causes murmurs in children?",
        "What is the CirCor dataset?", "How does automated auscultation work?", "Tell me about heart sounds",
        "What are the limits of this system?", "What is the definition of a pathological murmur?",
    ),
}


@dataclass(frozen=True)
class TopicConfig:
    # Cosine similarity (after centring, below) to the nearest example under which a question is general
    # guidance; chosen on the development phrasings in tests/test_focused_reply.py (docs/consultation.md).
    threshold: float = 0.3
    # A compound question is split into clauses shorter than this many words are not classified alone.
    min_clause_words: int = 3


# Clause boundaries of a compound question ("Is there a murmur, and should she see a cardiologist?").
_CLAUSE = re.compile(r"[?;]|,?\s+\b(?:and|also|plus|or should)\b\s+|,\s+(?=(?:is|are|does|do|should|what|how|"
                     r"where|when|can|could|would|which)\b)", re.IGNORECASE)


def clauses(question: str, min_words: int = 3) -> list[str]:
    parts = [p.strip(" ,.") for p in _CLAUSE.split(question) if p and p.strip(" ,.")]
    return [p for p in parts if len(p.split()) >= min_words] or [question.strip()]


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


class TopicClassifier:
    """Nearest-example topics of a question, with the retriever's embedder (no second model loaded)."""

    def __init__(self, embedder: Embedder, config: TopicConfig = TopicConfig()):
        self.embedder = embedder
        self.config = config
        self.labels = [t for t, phrasings in EXAMPLES.items() for _ in phrasings]
        vectors = embedder.encode([p for phrasings in EXAMPLES.values() for p in phrasings])
        # Every example is a question about a heart murmur; that shared direction made any sentence naming a
        # murmur ("Does this murmur need referral?") sit nearest "Is there a murmur?". Centring removes it.
        self.center = vectors.mean(axis=0)
        self.vectors = _unit(vectors - self.center)

    def scores(self, text: str) -> dict[Topic, float]:
        """Each topic's best cosine similarity to `text`, both centred on the examples' mean."""
        sims = self.vectors @ _unit(self.embedder.encode_query(text)[0] - self.center)
        best: dict[Topic, float] = {}
        for topic, s in zip(self.labels, sims):
            best[topic] = max(best.get(topic, -1.0), float(s))
        return best

    def topic(self, text: str) -> Topic:
        scores = self.scores(text)
        top = max(scores, key=scores.get)
        return top if scores[top] >= self.config.threshold else Topic.general

    def topics(self, question: str) -> list[Topic]:
        """The topics of the question's clauses in the order asked, general only when nothing else matched."""
        found: list[Topic] = []
        for clause in clauses(question, self.config.min_clause_words):
            t = self.topic(clause)
            if t not in found:
                found.append(t)
        specific = [t for t in found if t is not Topic.general]
        return specific or [Topic.general]
