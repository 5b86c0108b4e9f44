"""A scripted LangChain chat model that issues tool calls, for testing the agent's wiring."""

from __future__ import annotations

from typing import Any

from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, BaseMessage


class ScriptedChatModel(FakeMessagesListChatModel):
    """Replays `responses` in order and records what it was shown and which tools were bound."""

    seen: list[list[BaseMessage]] = []
    bound_tools: list[str] = []

    def bind_tools(self, tools, *, tool_choice=None, **kwargs: Any):
        self.bound_tools = [getattr(t, "name", None) or t["function"]["name"] for t in tools]
        return self

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        self.seen.append(list(messages))
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)


def call(name: str, args: dict, call_id: str) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": call_id, "type": "tool_call"}])
