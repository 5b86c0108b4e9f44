"""The served audio-LLM's answers about the analysed recordings, attached to the findings beside the classifier's."""

from __future__ import annotations

from collections.abc import Sequence

from assistant.consult.findings import AudioLLMFinding, Findings
from assistant.data.audio import Recording
from assistant.llm.client import AudioLLMConfig, AudioLLMError
from assistant.llm.opinion import ask_all, combine


def audio_llm_finding(recordings: Sequence[Recording], ids: Sequence[str], config: AudioLLMConfig) -> AudioLLMFinding:
    try:
        per_recording = ask_all(recordings, config)
    except AudioLLMError as e:  # the classifier's findings stand without it
        return AudioLLMFinding(model=config.model, error=str(e))
    murmur, features = combine(per_recording, [r.site for r in recordings])
    answers = {rid: {f: a.raw for f, a in rec.items()} for rid, rec in zip(ids, per_recording)}
    return AudioLLMFinding(model=config.model, murmur=murmur, features=features, answers=answers)


def with_audio_llm(findings: Findings, recordings: Sequence[Recording], config: AudioLLMConfig | None) -> Findings:
    """The findings with the audio-LLM's opinion added; unchanged without an audio-LLM.

    `recordings` are the ones analysed, in the order of `findings.recordings` (the analyzer keeps it).
    """
    if config is None:
        return findings
    opinion = audio_llm_finding(recordings, [r.id for r in findings.recordings], config)
    return findings.model_copy(update={"audio_llm": opinion})
