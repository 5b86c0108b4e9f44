"""Every question of `assistant.llm.prompts` asked about each of a patient's recordings, and the answers put to
one vote per patient: what the evaluation scores and what the findings show beside the classifier's call.

The model hears one recording per request and was trained on per-site answers (a patient's murmur is
Present only at its locations), so the patient's murmur follows CirCor's own rule: Present when any
recording's reply is Present; otherwise the vote of the other replies. A feature describes the patient's one
murmur, so each recording's ballot is the probability its reply gave each label (`AudioLLMAnswer.probabilities`;
the reply's own label when the server sent none): the share the model gave "no systolic murmur" votes for no
label, so the recordings it hears the murmur in weigh the most, and a patient whose murmur the greedy replies
never described still gets the label the model thought likeliest. The most audible location is the site where
the model is surest of the murmur (`surest_site`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

from assistant.data.audio import Recording
from assistant.data.labels import FEATURES, MURMUR_CLASSES
from assistant.llm.client import AudioLLMAnswer, AudioLLMConfig, ask_feature
from assistant.llm.prompts import PRESENCE, QUESTION_FEATURES

LOCATION = "most_audible_location"
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


def surest_site(per_recording: Sequence[dict[str, AudioLLMAnswer]], sites: Sequence[str | None]) -> str | None:
    """The site of the recording whose murmur reply gave Present the most probability; None when no recording
    has both a site of the location vocabulary and a distribution.

    The model hears one recording at a time, so asked where the murmur is loudest it can only guess from that
    one site (the shipped model answers PV, the commonest training answer, almost always); comparing its
    murmur replies across the sites is how the patient's most audible location is found by listening.
    """
    vocab = FEATURES[LOCATION]
    scored = [(answers[PRESENCE].probabilities["Present"], site) for answers, site in zip(per_recording, sites)
              if site in vocab and PRESENCE in answers and answers[PRESENCE].probabilities is not None]
    return max(scored, key=lambda x: (x[0], -vocab.index(x[1])))[1] if scored else None


def combine(per_recording: Sequence[dict[str, AudioLLMAnswer]],
            sites: Sequence[str | None] | None = None) -> tuple[str | None, dict[str, str | None]]:
    """(murmur, features) from each recording's answers, keyed by question feature; `sites` are the recordings'
    auscultation sites, where known."""
    def answers(feature: str) -> list[AudioLLMAnswer]:
        return [rec[feature] for rec in per_recording if feature in rec]

    features = {name: tally(map(ballot, answers(name)), vocab) for name, vocab in FEATURES.items()}
    features[LOCATION] = surest_site(per_recording, sites or [None] * len(per_recording)) or features[LOCATION]
    return patient_murmur([a.label for a in answers(PRESENCE)]), features


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
