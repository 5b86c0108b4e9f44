"""The audio-LLM's question phrasings and answer vocabulary, shared by training and consultation.

The Q&A builder (`murmurscope finetune qa`) writes training pairs with these phrasings and answers;
the consultation-time client (`assistant.llm.client`) asks the served model with them and maps its
free-text reply back to a CirCor label with `parse_answer`. Keeping both sides here is what makes a
fine-tuned model's answers parseable.

Answers are CirCor's spellings ("Holosystolic", "II/VI", "MV", "Present"). A feature the recording
does not have is answered "no systolic murmur", "no diastolic murmur" or "no murmur"; `parse_answer`
maps those to `NO_MURMUR_LABEL` ("nan", CirCor's own spelling for an absent feature).
"""

from __future__ import annotations

import math
import re

from assistant.data.labels import FEATURES, MURMUR_CLASSES
from assistant.errors import MurmurScopeError

PRESENCE = "murmur"
# Every question the model is trained on: murmur presence plus the 11 CirCor features.
QUESTION_FEATURES: tuple[str, ...] = (PRESENCE, *FEATURES)
NO_MURMUR_LABEL = "nan"
UNPARSEABLE = "unparseable"

SYSTEM_PROMPT = (
    "You are a cardiology assistant. You listen to a phonocardiogram recorded at one auscultation site "
    "and answer with one term from the CirCor DigiScope vocabulary."
)

PHRASINGS: dict[str, tuple[str, ...]] = {
    PRESENCE: (
        "Is there a murmur?",
        "Is a heart murmur audible in this recording?",
        "Do you hear a murmur here? Answer Present, Absent or Unknown.",
    ),
    "most_audible_location": (
        "Where is it loudest?",
        "At which auscultation site is the murmur most audible?",
        "Which location (AV, PV, TV or MV) has the loudest murmur?",
    ),
    "systolic_timing": (
        "When in systole does the murmur occur?",
        "What is the timing of the systolic murmur?",
        "Is the systolic murmur early, mid, late or holosystolic?",
    ),
    "systolic_shape": (
        "What is the shape of the systolic murmur?",
        "How does the intensity of the systolic murmur change over systole?",
        "Is the systolic murmur crescendo, decrescendo, diamond or plateau?",
    ),
    "systolic_grading": (
        "What grade is the systolic murmur?",
        "How loud is the systolic murmur on the Levine scale?",
        "Grade the systolic murmur (I/VI, II/VI or III/VI).",
    ),
    "systolic_pitch": (
        "What is the pitch of the systolic murmur?",
        "Is the systolic murmur low, medium or high pitched?",
        "Describe the frequency content of the systolic murmur: low, medium or high?",
    ),
    "systolic_quality": (
        "What is the quality of the systolic murmur?",
        "Does the systolic murmur sound blowing, harsh or musical?",
        "Describe the timbre of the systolic murmur.",
    ),
    "diastolic_timing": (
        "When in diastole does the murmur occur?",
        "What is the timing of the diastolic murmur?",
        "Is the diastolic murmur early, mid or holodiastolic?",
    ),
    "diastolic_shape": (
        "What is the shape of the diastolic murmur?",
        "How does the intensity of the diastolic murmur change over diastole?",
        "Is the diastolic murmur crescendo, decrescendo, diamond or plateau?",
    ),
    "diastolic_grading": (
        "What grade is the diastolic murmur?",
        "How loud is the diastolic murmur on the four-point scale?",
        "Grade the diastolic murmur (I/IV, II/IV or III/IV).",
    ),
    "diastolic_pitch": (
        "What is the pitch of the diastolic murmur?",
        "Is the diastolic murmur low, medium or high pitched?",
        "Describe the frequency content of the diastolic murmur: low, medium or high?",
    ),
    "diastolic_quality": (
        "What is the quality of the diastolic murmur?",
        "Does the diastolic murmur sound blowing, harsh or musical?",
        "Describe the timbre of the diastolic murmur.",
    ),
}


class UnknownFeatureError(MurmurScopeError):
    pass


def check_feature(feature: str) -> str:
    if feature not in PHRASINGS:
        raise UnknownFeatureError(f"unknown murmur feature {feature!r}; choose one of {', '.join(QUESTION_FEATURES)}")
    return feature


def vocabulary(feature: str) -> tuple[str, ...]:
    """The CirCor labels a question about `feature` may be answered with (besides "no ... murmur")."""
    check_feature(feature)
    return MURMUR_CLASSES if feature == PRESENCE else FEATURES[feature]


def question(feature: str, variant: int = 0) -> str:
    """Phrasing number `variant` (wrapping around) of the question about `feature`."""
    options = PHRASINGS[check_feature(feature)]
    return options[variant % len(options)]


def no_murmur_answer(feature: str) -> str:
    check_feature(feature)
    if feature.startswith("systolic"):
        return "no systolic murmur"
    if feature.startswith("diastolic"):
        return "no diastolic murmur"
    return "no murmur"


def answer(feature: str, label: str | None) -> str:
    """The training answer for `feature` given the patient's CirCor label (None: the feature is absent)."""
    if label is None:
        if feature == PRESENCE:
            raise ValueError("murmur presence always has a label")
        return no_murmur_answer(feature)
    if label not in vocabulary(feature):
        raise ValueError(f"{label!r} is not a CirCor label of {feature}")
    return label


def _pattern(term: str) -> re.Pattern[str]:
    # Whole-term match so "Mid-systolic" does not hide inside "Mid-diastolic" and "I/VI" not inside "II/VI".
    return re.compile(r"(?<![\w/-])" + re.escape(term) + r"(?![\w/-])", re.IGNORECASE)


_NO_MURMUR = re.compile(r"\bno\s+(?:(?:systolic|diastolic)\s+)?murmur\b", re.IGNORECASE)


def parse_answer(feature: str, raw: str) -> str:
    """Map a free-text reply to one CirCor label of `feature`, `NO_MURMUR_LABEL`, or `UNPARSEABLE`.

    The earliest mentioned label wins, so "Mid-systolic, not holosystolic" reads as Mid-systolic.
    """
    best: tuple[int, str] | None = None
    for label in vocabulary(feature):
        m = _pattern(label).search(raw)
        if m and (best is None or m.start() < best[0]):
            best = (m.start(), label)
    m = _NO_MURMUR.search(raw)
    if m and (best is None or m.start() < best[0]):
        best = (m.start(), "Absent" if feature == PRESENCE else NO_MURMUR_LABEL)
    return best[1] if best else UNPARSEABLE


def _starts_answer(token: str, answer: str) -> bool:
    # The token must be the answer's whole first word: "I" starts I/VI, not II/VI.
    return answer.startswith(token) and (len(answer) == len(token) or not answer[len(token)].isalnum())


def first_token_probabilities(feature: str, top_logprobs: dict[str, float]) -> dict[str, float] | None:
    """Each label's probability (and the no-murmur answer's, under its parsed label) read off the log-probabilities
    of the reply's first token.

    Trained answers are exactly a label, and in the shipped model's vocabulary every label of a question starts
    with its own whole-word token ("Early" for Early-systolic, "no" for "no systolic murmur"), so the first
    token's distribution is the distribution over answers. A tokenizer that splits the labels otherwise (a token
    that starts two answers, or the answers' tokens holding under half the probability) gives None.
    """
    answers = {label: label for label in vocabulary(feature)}
    answers[no_murmur_answer(feature)] = "Absent" if feature == PRESENCE else NO_MURMUR_LABEL
    probabilities = dict.fromkeys(answers.values(), 0.0)
    for token, logprob in top_logprobs.items():
        token = token.strip()
        hits = {label for answer, label in answers.items() if token and _starts_answer(token, answer)}
        if len(hits) > 1:
            return None
        if hits:
            probabilities[hits.pop()] += math.exp(logprob)
    return probabilities if sum(probabilities.values()) >= 0.5 else None
