"""The served audio-LLM as a predictor: every question on every recording, answers voted per patient
(`assistant.llm.opinion`, the same rule the findings use); a feature with no valid answer is scored as wrong.
"""

from __future__ import annotations

import httpx

from assistant.data.circor import Patient
from eval.predictors import PatientOutput, PredictorError


def served_models(endpoint: str, api_key: str = "EMPTY", timeout: float = 5.0) -> list[str]:
    """The model ids an OpenAI-compatible server lists; a one-line PredictorError when it cannot be reached."""
    url = endpoint.rstrip("/") + "/models"
    try:
        response = httpx.get(url, headers={"Authorization": f"Bearer {api_key}"}, timeout=timeout)
        response.raise_for_status()
        return [m["id"] for m in response.json().get("data", [])]
    except (httpx.HTTPError, ValueError, KeyError) as e:
        raise PredictorError(f"cannot reach the audio-LLM endpoint {endpoint} ({type(e).__name__}: {e})") from e


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
        from assistant.llm.opinion import ask_all, combine

        per_recording = ask_all([ref.load() for ref in patient.recordings], self.config)
        murmur, features = combine(per_recording, [ref.site for ref in patient.recordings])
        answers: dict[str, list[str]] = {}
        for recording_answers in per_recording:
            for feature, a in recording_answers.items():
                answers.setdefault(feature, []).append(a.raw)
        return PatientOutput(patient.patient_id, murmur, None, features, answers)
