"""The consultation agent: LangChain `create_agent` over the MurmurScope tools, one LangGraph
thread per conversation, and the chat model configuration (any OpenAI-compatible endpoint with
tool calling; documented default: Qwen2.5-Instruct served by vLLM with
`--enable-auto-tool-choice --tool-call-parser hermes`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields

from langchain.agents import create_agent
from langchain.agents.middleware import ToolCallRequest, ToolErrorMiddleware
from langchain_core.language_models import BaseChatModel
from langchain_core.tools import BaseTool
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver

from assistant.errors import MurmurScopeError

SYSTEM_PROMPT = """\
You are MurmurScope, a decision-support assistant for clinicians who auscultate children's hearts.
The clinician attaches phonocardiogram recordings (sites AV, PV, TV, MV) to the conversation; you refer to
them only by their ids (rec1, rec2, ...). You never open files or paths.

Use the tools; never guess a result:
- classify_murmur: the murmur call (Present / Unknown / Absent) with probabilities, the murmur features and
  per-recording signal quality. Call it before you say anything about a murmur.
- segment_recording: heart rate, cycles and signal quality of one recording.
- search_guidance: cardiology guidance passages. Call it before you explain what a finding means or what to do.
- ask_audio_llm (when available): a second opinion from an audio language model listening to one recording.

Every answer about recordings must:
1. state the findings with their probabilities (as percentages) and the signal quality, and say plainly when
   quality is poor or a result is unreliable or low-confidence;
2. explain what they mean using only the guidance passages you retrieved, citing each as [n] and listing the
   sources (title, section, source) at the end;
3. end with: "This is decision support, not a diagnosis."
If a tool fails, say which result is missing and why; do not fill the gap with a guess.
"""


@dataclass(frozen=True)
class ChatModelConfig:
    """The chat model behind the agent. Environment: MURMURSCOPE_CHAT_BASE_URL, MURMURSCOPE_CHAT_MODEL,
    MURMURSCOPE_CHAT_API_KEY. No base_url: chat answers with the structured findings only."""

    base_url: str | None = field(default=None, metadata={
        "help": "Chat endpoint (OpenAI-compatible; none: findings only).", "env": "MURMURSCOPE_CHAT_BASE_URL"})
    model: str = field(default="Qwen/Qwen2.5-7B-Instruct", metadata={
        "help": "Chat model name.", "env": "MURMURSCOPE_CHAT_MODEL"})
    api_key: str = field(default="EMPTY", metadata={"help": "Chat model key.", "env": "MURMURSCOPE_CHAT_API_KEY"})
    temperature: float = field(default=0.0, metadata={"help": "Sampling temperature of the chat model."})
    timeout: float = field(default=120.0, metadata={"help": "Seconds to wait for a chat answer."})

    @classmethod
    def from_env(cls, **overrides) -> ChatModelConfig:
        # The variables are named in the fields' metadata, which the command-line options read too.
        env = {f.name: os.environ.get(f.metadata["env"]) for f in fields(cls) if "env" in f.metadata}
        values = {k: v for k, v in env.items() if v}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def chat_model(self) -> BaseChatModel | None:
        if not self.base_url:
            return None
        from langchain_openai import ChatOpenAI

        # No retries: an unreachable endpoint should fall back to the findings at once.
        return ChatOpenAI(base_url=self.base_url, model=self.model, api_key=self.api_key,
                          temperature=self.temperature, timeout=self.timeout, max_retries=0)


def tool_error_message(exc: Exception, request: ToolCallRequest) -> str:
    name = request.tool_call["name"]
    if isinstance(exc, MurmurScopeError):
        return f"{name} failed: {exc}"
    # Internal details stay out of the conversation; the type is enough to say what is missing.
    return f"{name} failed ({type(exc).__name__}); this result is not available."


def build_agent(model: BaseChatModel, tools: list[BaseTool], checkpointer: BaseCheckpointSaver | None = None):
    return create_agent(
        model,
        tools,
        system_prompt=SYSTEM_PROMPT,
        middleware=[ToolErrorMiddleware(tool_error_message)],
        checkpointer=checkpointer if checkpointer is not None else InMemorySaver(),
        name="murmurscope",
    )
