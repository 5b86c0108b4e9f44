"""Every question of `assistant.llm.prompts` asked about each of a patient's recordings, and the answers put to
one vote per patient: what the evaluation scores and what the findings show beside the classifier's call.

The model hears one recording per request and was trained on per-site answers (a patient's murmur is
Present only at its locations), so the patient's murmur follows CirCor's own rule: Present when any
recording is called Present; otherwise the vote of the other answers. Features are a plain vote; an
answer that names no label of the vocabulary ("no systolic murmur", or unparseable) does not vote.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from assistant.data.audio import Recording
from assistant.data.labels import FEATURES, MURMUR_CLASSES
from assistant.llm.client import AudioLLMAnswer, AudioLLMConfig, ask_feature
from assistant.llm.prompts import PRESENCE, QUESTION_FEATURES

# vLLM batches concurrent requests; more in flight than this only queue on a CPU server.
MAX_IN_FLIGHT = 8


def vote(labels: Sequence[str], vocabulary: tuple[str, ...]) -> str | None:
    """The most frequent label of `vocabulary` (ties: the vocabulary's order); None when none is valid."""
    counts = Counter(x for x in labels if x in vocabulary)
    if not counts:
        return None
    return max(vocabulary, key=lambda c: (counts.get(c, 0), -vocabulary.index(c)))


def patient_murmur(labels: Sequence[str]) -> str | None:
    return "Present" if "Present" in labels else vote(labels, MURMUR_CLASSES)


def combine(labels: dict[str, list[str]]) -> tuple[str | None, dict[str, str | None]]:
    """(murmur, features) from the parsed answers of all the recordings, per question feature."""
    return (patient_murmur(labels.get(PRESENCE, [])),
            {name: vote(labels.get(name, []), vocab) for name, vocab in FEATURES.items()})


def ask_all(recordings: Sequence[Recording], config: AudioLLMConfig,
            features: Sequence[str] = QUESTION_FEATURES) -> list[dict[str, AudioLLMAnswer]]:
    """Each recording's answer to each question, asked concurrently; an AudioLLMError stops it all."""
    jobs = [(i, f) for i in range(len(recordings)) for f in features]
    with ThreadPoolExecutor(max_workers=MAX_IN_FLIGHT) as pool:
        answers = list(pool.map(lambda job: ask_feature(recordings[job[0]], job[1], config), jobs))
    out: list[dict[str, AudioLLMAnswer]] = [{} for _ in recordings]
    for (i, f), a in zip(jobs, answers):
        out[i][f] = a
    return out


def labels_by_feature(per_recording: Sequence[dict[str, AudioLLMAnswer]]) -> dict[str, list[str]]:
    labels: dict[str, list[str]] = {}
    for answers in per_recording:
        for feature, a in answers.items():
            labels.setdefault(feature, []).append(a.label)
    return labels
