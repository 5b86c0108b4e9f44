"""The served audio-LLM as a predictor: every feature question on every recording, answers voted per patient.

The model hears one recording per request, so each question is asked of each of the patient's recordings
and the valid answers are put to a majority vote (ties go to the vocabulary's order). Unparseable answers
take no part in the vote; a feature with no valid answer at all is scored as wrong.
"""

from __future__ import annotations

from collections import Counter

import httpx

from assistant.circor import Patient
from assistant.labels import FEATURES, MURMUR_CLASSES
from eval.predictors import PatientOutput, PredictorError


def vote(labels: list[str | None], vocabulary: tuple[str, ...]) -> str | None:
    counts = Counter(x for x in labels if x in vocabulary)
    if not counts:
        return None
    return max(vocabulary, key=lambda c: (counts.get(c, 0), -vocabulary.index(c)))


def served_models(endpoint: str, api_key: str = "EMPTY", timeout: float = 5.0) -> list[str]:
    """The model ids an OpenAI-compatible server lists; a one-line PredictorError when it cannot be reached."""
    url = endpoint.rstrip("/") + "/models"
    try:
        response = httpx.get(url, headers={"Authorization": f"Bearer {api_key}"}, timeout=timeout)
        response.raise_for_status()
        return [m["id"] for m in response.json().get("data", [])]
    except (httpx.HTTPError, ValueError, KeyError) as e:
        raise PredictorError(f"cannot reach the audio-LLM endpoint {endpoint} ({type(e).__name__}: {e})") from e


def asked_features() -> tuple[str, ...]:
    """The murmur question (when the question set has one) and the 11 feature questions."""
    from assistant import murmur_questions

    questions = getattr(murmur_questions, "QUESTIONS", {})
    return tuple(f for f in ("murmur", *FEATURES) if not questions or f in questions)


class AudioLLMPredictor:
    name = "audio-llm"

    def __init__(self, config):
        self.config = config

    @classmethod
    def connect(cls, endpoint: str | None, model: str | None) -> AudioLLMPredictor:
        if not endpoint:
            raise PredictorError("the audio-llm predictor needs --endpoint URL (e.g. http://127.0.0.1:8000/v1)")
        models = served_models(endpoint)
        if model is None:
            if not models:
                raise PredictorError(f"{endpoint}: serves no model; pass --model")
            model = models[0]
        elif models and model not in models:
            raise PredictorError(f"{endpoint}: does not serve {model!r} (it serves {', '.join(models)})")
        try:
            from assistant.audio_llm import AudioLLMConfig
        except ImportError as e:
            raise PredictorError(f"the audio-LLM client is not available in this install ({e})") from e
        return cls(AudioLLMConfig(base_url=endpoint, model=model))

    def fingerprint(self) -> dict:
        return {"predictor": "audio-llm", "model": self.config.model, "base_url": self.config.base_url}

    def predict(self, patient: Patient) -> PatientOutput:
        from assistant.audio_llm import ask_feature

        labels: dict[str, list[str | None]] = {}
        answers: dict[str, list[str]] = {}
        for ref in patient.recordings:
            recording = ref.load()
            for feature in asked_features():
                answer = ask_feature(recording, feature, self.config)
                labels.setdefault(feature, []).append(None if answer.label == "unparseable" else answer.label)
                answers.setdefault(feature, []).append(answer.raw)
        features = {name: vote(labels.get(name, []), vocab) for name, vocab in FEATURES.items()}
        murmur = vote(labels.get("murmur", []), MURMUR_CLASSES)
        return PatientOutput(patient.patient_id, murmur, None, features, answers)
