"""Client of the served audio-LLM (`murmurscope serve llm`): one question about one recording.

Speaks the OpenAI chat API that vLLM serves: the recording goes as an `input_audio` content part
(base64 16 kHz WAV, the first `audio_seconds` of it), the question as a text part, with the same system
prompt and phrasings the model was fine-tuned on (`assistant.llm.prompts`).

`audio_seconds` should be the clip length the served model was trained on: a small language model
trained from scratch has never seen the positions that more audio tokens would push its question to.
"""

from __future__ import annotations

import base64
import io
import logging
import os
from dataclasses import dataclass, field, fields

import numpy as np
import soundfile as sf

from assistant.data.audio import Recording
from assistant.errors import MurmurScopeError
from assistant.llm.prompts import SYSTEM_PROMPT, check_feature, first_token_probabilities, parse_answer
from assistant.llm.prompts import question as feature_question

AUDIO_RATE = 16_000
MAX_AUDIO_SECONDS = 30.0  # one Qwen2-Audio window
# The audio-LLM that ships (assistant/llm/weights/), and the name `serve llm` serves it under.
SHIPPED_MODEL_NAME = "murmur-qwen2-audio-mini"
# The Q&A clips murmur-qwen2-audio-mini was trained on (`finetune qa --max-clip-seconds 12`).
DEFAULT_AUDIO_SECONDS = 12.0


log = logging.getLogger("murmurscope.llm")


class AudioLLMError(MurmurScopeError):
    """The audio-LLM server could not be reached or refused the request."""


@dataclass(frozen=True)
class AudioLLMConfig:
    base_url: str = field(metadata={
        "help": "Served audio-LLM (enables ask_audio_llm).", "env": "MURMURSCOPE_AUDIO_LLM_URL", "name": "url"})
    model: str = field(default=SHIPPED_MODEL_NAME, metadata={
        "help": "Audio-LLM model name.", "env": "MURMURSCOPE_AUDIO_LLM_MODEL"})
    api_key: str = field(default="EMPTY", metadata={"help": "Audio-LLM key.", "env": "MURMURSCOPE_AUDIO_LLM_API_KEY"})
    timeout: float = field(default=60.0, metadata={"help": "Seconds to wait for an audio-LLM answer."})
    audio_seconds: float = field(default=DEFAULT_AUDIO_SECONDS, metadata={
        "help": "Seconds of each recording sent: the model's training clip length (at most 30).",
        "env": "MURMURSCOPE_AUDIO_LLM_SECONDS"})

    def __post_init__(self) -> None:
        if not 1.0 <= self.audio_seconds <= MAX_AUDIO_SECONDS:
            raise AudioLLMError(f"audio_seconds must lie between 1 and {MAX_AUDIO_SECONDS:.0f}, "
                                f"not {self.audio_seconds}")

    @classmethod
    def from_env(cls, base_url: str | None = None, model: str | None = None) -> AudioLLMConfig | None:
        """The served audio-LLM named by the arguments, else MURMURSCOPE_AUDIO_LLM_URL / _MODEL / _API_KEY;
        None if no URL."""
        env = {f.name: os.environ.get(f.metadata["env"]) for f in fields(cls) if "env" in f.metadata}
        url = base_url or env["base_url"]
        if not url:
            return None
        try:
            seconds = float(env["audio_seconds"] or DEFAULT_AUDIO_SECONDS)
        except ValueError:
            raise AudioLLMError(f"MURMURSCOPE_AUDIO_LLM_SECONDS must be a number, not "
                                f"{env['audio_seconds']!r}") from None
        return cls(base_url=url, model=model or env["model"] or cls.model, api_key=env.get("api_key") or cls.api_key,
                   audio_seconds=seconds)


@dataclass(frozen=True)
class AudioLLMAnswer:
    feature: str
    question: str
    raw: str
    label: str  # a CirCor label of `feature`, "nan" for "no such murmur", or "unparseable"
    # label -> the probability the model gave the answer, from its first token; None when it could not be read
    probabilities: dict[str, float] | None = None

    @classmethod
    def from_choice(cls, feature: str, question: str, choice: dict) -> AudioLLMAnswer:
        """The answer in one chat-completion choice (a JSON object, as served or as `vllm run-batch` writes it)."""
        raw = (choice.get("message") or {}).get("content") or ""
        content = (choice.get("logprobs") or {}).get("content") or []
        top = {t["token"]: t["logprob"] for t in content[0].get("top_logprobs") or []} if content else {}
        return cls(feature=feature, question=question, raw=raw, label=parse_answer(feature, raw),
                   probabilities=first_token_probabilities(feature, top) if top else None)


REPLY_REQUEST = {"temperature": 0.0, "max_tokens": 32}
# A question asked for a label also returns the first token's distribution over the answers (vLLM's default
# --max-logprobs is 20; the shipped model's answers are among its 640 tokens' top 20).
ANSWER_REQUEST = {**REPLY_REQUEST, "logprobs": True, "top_logprobs": 20}


def wav_base64(recording: Recording, seconds: float = MAX_AUDIO_SECONDS) -> str:
    """The first `seconds` of `recording` as base64 16 kHz 16-bit WAV."""
    rec = recording.resampled(AUDIO_RATE)
    samples = np.clip(rec.samples[: int(min(seconds, MAX_AUDIO_SECONDS) * AUDIO_RATE)], -1.0, 1.0)
    buf = io.BytesIO()
    sf.write(buf, samples, AUDIO_RATE, format="WAV", subtype="PCM_16")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def chat_messages(recording: Recording, question: str, seconds: float = MAX_AUDIO_SECONDS) -> list[dict]:
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {
            "role": "user",
            "content": [
                {"type": "input_audio", "input_audio": {"data": wav_base64(recording, seconds), "format": "wav"}},
                {"type": "text", "text": question},
            ],
        },
    ]


def _complete(recording: Recording, question: str, config: AudioLLMConfig, request: dict) -> dict:
    import openai

    client = openai.OpenAI(base_url=config.base_url, api_key=config.api_key, timeout=config.timeout, max_retries=0)
    try:
        reply = client.chat.completions.create(
            model=config.model, messages=chat_messages(recording, question, config.audio_seconds), **request)
    # The message reaches the chat model and API replies: the endpoint and its own words go to the log only.
    except openai.APIStatusError as e:
        log.warning("audio-LLM at %s answered %d: %s", config.base_url, e.status_code, e.message)
        raise AudioLLMError(f"the audio-LLM answered HTTP {e.status_code}") from None
    except openai.APIError as e:
        log.warning("audio-LLM at %s unreachable: %s", config.base_url, e)
        raise AudioLLMError(f"the audio-LLM could not be reached ({type(e).__name__})") from None
    return reply.choices[0].model_dump()


def ask(recording: Recording, question: str, config: AudioLLMConfig) -> str:
    """The model's reply to a free-form `question` about `recording`."""
    return _complete(recording, question, config, REPLY_REQUEST)["message"]["content"] or ""


def ask_feature(recording: Recording, feature: str, config: AudioLLMConfig) -> AudioLLMAnswer:
    """Ask about one murmur feature ("murmur" for presence) and map the reply to a CirCor label."""
    check_feature(feature)
    q = feature_question(feature)
    return AudioLLMAnswer.from_choice(feature, q, _complete(recording, q, config, ANSWER_REQUEST))
