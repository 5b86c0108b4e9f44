"""The OpenAI chat-completions wire format, the part of it MurmurScope serves (after vLLM's
`entrypoints/openai/protocol.py`): text, `input_audio` and `audio_url` content parts in, an assistant
message or `chat.completion.chunk` events out, and OpenAI-style error bodies."""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class OpenAIBaseModel(BaseModel):
    # Clients send fields we do not use (temperature, top_p, seed...): accept and ignore them.
    model_config = ConfigDict(extra="allow")


class TextPart(OpenAIBaseModel):
    type: Literal["text"]
    text: str


class InputAudio(OpenAIBaseModel):
    data: str = Field(description="Base64-encoded audio file.")
    format: Literal["wav", "mp3", "flac", "ogg"] = "wav"
    site: Literal["AV", "PV", "TV", "MV", "Phc"] | None = Field(
        default=None, description="MurmurScope extension: the auscultation site of this recording.")


class InputAudioPart(OpenAIBaseModel):
    type: Literal["input_audio"]
    input_audio: InputAudio


class AudioURL(OpenAIBaseModel):
    url: str = Field(description="data:audio/...;base64,... (remote and file:// only when the server allows them).")


class AudioURLPart(OpenAIBaseModel):
    type: Literal["audio_url"]
    audio_url: AudioURL


ContentPart = Annotated[TextPart | InputAudioPart | AudioURLPart, Field(discriminator="type")]


class ChatMessage(OpenAIBaseModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None


class StreamOptions(OpenAIBaseModel):
    include_usage: bool | None = False


class ChatCompletionRequest(OpenAIBaseModel):
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(default=1, ge=1, le=1)
    user: str | None = None


class AssistantMessage(OpenAIBaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None = None


class Choice(OpenAIBaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length"] = "stop"


class ChatCompletionResponse(OpenAIBaseModel):
    id: str = Field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[Choice]


class DeltaMessage(OpenAIBaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class StreamChoice(OpenAIBaseModel):
    index: int = 0
    delta: DeltaMessage
    finish_reason: Literal["stop", "length"] | None = None


class ChatCompletionStreamResponse(OpenAIBaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[StreamChoice]


class ModelCard(OpenAIBaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=lambda: int(time.time()))
    owned_by: str = "murmurscope"


class ModelList(OpenAIBaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorInfo(OpenAIBaseModel):
    message: str
    type: str
    param: str | None = None
    code: int


class ErrorResponse(OpenAIBaseModel):
    error: ErrorInfo
