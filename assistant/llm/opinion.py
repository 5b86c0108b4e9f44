"""Every question of `assistant.llm.prompts` asked about each of a patient's recordings, and the answers put to
one vote per patient: what the evaluation scores and what the findings show beside the classifier's call.

The model hears one recording per request and was trained on per-site answers (a patient's murmur is
Present only at its locations), so the patient's murmur follows CirCor's own rule: Present when any
recording's reply is Present; otherwise the vote of the other replies. A feature describes the patient's one
murmur, so each recording's ballot is the probability its reply gave each label (`AudioLLMAnswer.probabilities`;
the reply's own label when the server sent none): the share the model gave "no systolic murmur" votes for no
label, so the recordings it hears the murmur in weigh the most, and a patient whose murmur the greedy replies
never described still gets the label the model thought likeliest.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

from assistant.data.audio import Recording
from assistant.data.labels import FEATURES, MURMUR_CLASSES
from assistant.llm.client import AudioLLMAnswer, AudioLLMConfig, ask_feature
from assistant.llm.prompts import PRESENCE, QUESTION_FEATURES

# vLLM batches concurrent requests; more in flight than this only queue on a CPU server.
MAX_IN_FLIGHT = 8


def tally(ballots: Iterable[dict[str, float]], vocabulary: tuple[str, ...]) -> str | None:
    """The label of `vocabulary` with the most weight over the ballots (ties: the vocabulary's order); None when
    no ballot gives any."""
    total: Counter[str] = Counter()
    for ballot in ballots:
        total.update({label: w for label, w in ballot.items() if label in vocabulary})
    if not any(w > 0 for w in total.values()):
        return None
    return max(vocabulary, key=lambda c: (total.get(c, 0.0), -vocabulary.index(c)))


def vote(labels: Sequence[str], vocabulary: tuple[str, ...]) -> str | None:
    """The most frequent label of `vocabulary` (ties: the vocabulary's order); None when none is valid."""
    return tally(({label: 1.0} for label in labels), vocabulary)


def patient_murmur(labels: Sequence[str]) -> str | None:
    return "Present" if "Present" in labels else vote(labels, MURMUR_CLASSES)


def ballot(answer: AudioLLMAnswer) -> dict[str, float]:
    return answer.probabilities if answer.probabilities is not None else {answer.label: 1.0}


def combine(per_recording: Sequence[dict[str, AudioLLMAnswer]]) -> tuple[str | None, dict[str, str | None]]:
    """(murmur, features) from each recording's answers, keyed by question feature."""
    def answers(feature: str) -> list[AudioLLMAnswer]:
        return [rec[feature] for rec in per_recording if feature in rec]

    return (patient_murmur([a.label for a in answers(PRESENCE)]),
            {name: tally(map(ballot, answers(name)), vocab) for name, vocab in FEATURES.items()})


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
