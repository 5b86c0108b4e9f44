"""The served audio-LLM as a predictor: every feature question on every recording, answers voted per patient.

The model hears one recording per request, so each question of `assistant.llm.prompts` (murmur
presence and the 11 features) is asked of each of the patient's recordings and the valid answers are put
to a majority vote (ties go to the vocabulary's order). Unparseable and "no such murmur" answers take no
part in the vote; a feature with no valid answer at all is scored as wrong.
"""

from __future__ import annotations

from collections import Counter

import httpx

from assistant.data.circor import Patient
from assistant.data.labels import FEATURES, MURMUR_CLASSES
from eval.predictors import PatientOutput, PredictorError


def vote(labels: list[str], vocabulary: tuple[str, ...]) -> str | None:
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


def combine(patient_id: str, labels: dict[str, list[str]], answers: dict[str, list[str]]) -> PatientOutput:
    """One patient's output from the parsed answers of all its recordings (labels per question feature).

    "nan" (the model says there is no such murmur) and "unparseable" are not labels of the vocabulary, so
    they take no part in the vote.
    """
    features = {name: vote(labels.get(name, []), vocab) for name, vocab in FEATURES.items()}
    murmur = vote(labels.get("murmur", []), MURMUR_CLASSES)
    return PatientOutput(patient_id, murmur, None, features, answers)


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
            from assistant.llm.client import AudioLLMConfig
        except ImportError as e:
            raise PredictorError(f"the audio-LLM client is not available in this install ({e})") from e
        return cls(AudioLLMConfig(base_url=endpoint, model=model))

    def fingerprint(self) -> dict:
        return {"predictor": "audio-llm", "model": self.config.model, "base_url": self.config.base_url}

    def predict(self, patient: Patient) -> PatientOutput:
        from assistant.llm.client import ask_feature
        from assistant.llm.prompts import QUESTION_FEATURES

        labels: dict[str, list[str]] = {}
        answers: dict[str, list[str]] = {}
        for ref in patient.recordings:
            recording = ref.load()
            for feature in QUESTION_FEATURES:
                answer = ask_feature(recording, feature, self.config)
                labels.setdefault(feature, []).append(answer.label)
                answers.setdefault(feature, []).append(answer.raw)
        return combine(patient.patient_id, labels, answers)
