"""A consultation: recordings attached to conversations, the agent answering about them, and the
fallback when no chat model is reachable (the structured findings and the cited guidance, with a
notice; never generated prose). The terminal chat, the API and the app all use this class.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import openai
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.errors import GraphRecursionError

from assistant.consult.agent import ChatModelConfig, build_agent
from assistant.consult.analyzer import AnalysisConfig, Analyzer
from assistant.consult.findings import Findings, GuidancePassage
from assistant.consult.focused import Excerpter, FocusConfig, focused_reply
from assistant.consult.store import RecordingStore
from assistant.consult.tools import build_tools
from assistant.consult.topics import Topic, TopicClassifier
from assistant.data.audio import Recording
from assistant.llm.client import AudioLLMConfig

log = logging.getLogger("murmurscope.consult")
NO_MODEL = "No chat model is configured (set MURMURSCOPE_CHAT_BASE_URL)"
# Replies never name the endpoint (API clients must not learn internal addresses); the log does.
UNREACHABLE = "The chat model could not be used ({error})"
# The chat client's errors and the agent's step limit: the reply falls back to the findings.
AGENT_FAILURES = (openai.APIError, GraphRecursionError)
# LangGraph's default is 10,007 steps: a model that keeps calling tools would hold a worker for minutes.
MAX_AGENT_STEPS = 25


def _why(e: Exception) -> str:
    if isinstance(e, GraphRecursionError):
        return "the agent did not finish within its step limit"
    return "unreachable" if isinstance(e, openai.APIConnectionError) else f"{type(e).__name__}"
UNGROUNDED = ("No analysis of the attached recordings (classify_murmur, segment_recording) has succeeded in this "
              "conversation: the chat model's reply does not rest on one")
# The tools whose results are an analysis of the recordings (search_guidance is not).
ANALYSIS_TOOLS = frozenset({"classify_murmur", "segment_recording"})
FALLBACK = (": this reply is assembled from the findings and the guidance for the question's topic, "
            "not a conversational answer.")


@dataclass
class Reply:
    text: str
    notice: str | None = None
    findings: Findings | None = None
    tools_called: list[str] = field(default_factory=list)
    # Without a chat model: the full guidance passages behind the reply's excerpts (for an expander).
    guidance: list[GuidancePassage] = field(default_factory=list)


class Consultation:
    def __init__(self, analyzer: Analyzer, chat_model: BaseChatModel | None = None,
                 audio_llm: AudioLLMConfig | None = None, store: RecordingStore | None = None,
                 chat_url: str | None = None):
        self.analyzer = analyzer
        self.audio_llm = audio_llm
        self.store = store or RecordingStore()
        self.chat_url = chat_url or "the configured endpoint"
        self.checkpointer = InMemorySaver()
        self.tools = build_tools(analyzer, self.store, audio_llm)
        self.agent = build_agent(chat_model, self.tools, self.checkpointer) if chat_model is not None else None
        self._announced: dict[str, int] = {}
        # Built on the first reply without a chat model, with the retriever's embedder.
        self._topics: TopicClassifier | None = None
        self._excerpter: Excerpter | None = None
        self._findings: dict[str, tuple[tuple[str, ...], Findings]] = {}

    @classmethod
    def load(cls, chat: ChatModelConfig, audio_llm: AudioLLMConfig | None = None,
             analysis: AnalysisConfig = AnalysisConfig()) -> Consultation:
        """The one wiring of a consultation that the CLI, the API server and the app share."""
        return cls(Analyzer.load(analysis), chat.chat_model(), audio_llm, chat_url=chat.base_url)

    @classmethod
    def from_env(cls) -> Consultation:
        """The chat model and the audio-LLM named by the MURMURSCOPE_* variables (the app has no options)."""
        return cls.load(ChatModelConfig.from_env(), AudioLLMConfig.from_env())

    def analyze(self, recordings: Sequence[Recording], ids: Sequence[str] | None = None,
                patient_id: str = "upload") -> Findings:
        """The analyzer's findings, with the served audio-LLM's answers beside them when one is configured."""
        from assistant.consult.second_opinion import with_audio_llm

        return with_audio_llm(self.analyzer.analyze(recordings, ids=ids, patient_id=patient_id), recordings,
                              self.audio_llm)

    @staticmethod
    def new_conversation() -> str:
        return uuid.uuid4().hex

    def attach(self, conversation_id: str, recording: Recording) -> str:
        return self.store.attach(conversation_id, recording)

    def end(self, conversation_id: str) -> None:
        """Forget the conversation: its recordings and its agent state."""
        self.store.drop(conversation_id)
        self.checkpointer.delete_thread(conversation_id)
        self._announced.pop(conversation_id, None)
        self._findings.pop(conversation_id, None)

    def _turn(self, conversation_id: str, text: str) -> str:
        """The user's text, preceded by the recordings attached since the last turn."""
        attached = self.store.all(conversation_id)
        new = attached[self._announced.get(conversation_id, 0):]
        self._announced[conversation_id] = len(attached)
        if not new:
            return text
        listing = ", ".join(a.describe() for a in new)
        return f"[Recordings attached: {listing}]\n{text}"

    def _input(self, conversation_id: str, text: str, history: Sequence[BaseMessage]) -> tuple[dict, dict]:
        messages = [*history, HumanMessage(self._turn(conversation_id, text))]
        return {"messages": messages}, {"configurable": {"thread_id": conversation_id},
                                        "recursion_limit": MAX_AGENT_STEPS}

    def ask(self, conversation_id: str, text: str, history: Sequence[BaseMessage] = ()) -> Reply:
        if self.agent is None:
            return self.fallback(conversation_id, text, NO_MODEL)
        inputs, config = self._input(conversation_id, text, history)
        before = len(self.agent.get_state(config).values.get("messages", []))
        try:
            state = self.agent.invoke(inputs, config)
        except AGENT_FAILURES as e:
            return self.fallback(conversation_id, text, self._unreachable(e))
        new = state["messages"][before:]
        called = [c["name"] for m in new if isinstance(m, AIMessage) for c in m.tool_calls]
        # A model that never looked at the recordings (in this turn or an earlier one) may still sound sure.
        analysed = any(isinstance(m, ToolMessage) and m.name in ANALYSIS_TOOLS and m.status != "error"
                       for m in state["messages"])
        notice = UNGROUNDED if self.store.all(conversation_id) and not analysed else None
        text = state["messages"][-1].text
        return Reply(text=text + (f"\n\n> {notice}." if notice else ""), notice=notice, tools_called=called)

    def stream(self, conversation_id: str, text: str, history: Sequence[BaseMessage] = ()) -> Iterator[str]:
        """The answer as text deltas (the chat model's tokens as they come; tool calls are not shown)."""
        if self.agent is None:
            yield self.fallback(conversation_id, text, NO_MODEL).text
            return
        inputs, config = self._input(conversation_id, text, history)
        sent = False
        try:
            for chunk, meta in self.agent.stream(inputs, config, stream_mode="messages"):
                if meta.get("langgraph_node") == "model" and isinstance(chunk, AIMessage) and chunk.text:
                    sent = True
                    yield chunk.text
        except AGENT_FAILURES as e:
            notice = self._unreachable(e)
            yield f"\n\n> {notice}." if sent else self.fallback(conversation_id, text, notice).text

    def topics(self, question: str) -> list[Topic]:
        """What the question asks about (general guidance when there is no retriever to embed it with)."""
        if self.analyzer.retriever is None or not question.strip():
            return [Topic.general]
        if self._topics is None:
            self._topics = TopicClassifier(self.analyzer.retriever.embedder)
            self._excerpter = Excerpter(self.analyzer.retriever.embedder)
        return self._topics.topics(question)

    def _findings_of(self, conversation_id: str) -> Findings:
        """The findings on the conversation's recordings, analysed again only when recordings were attached
        since (each question of a chat without a model would otherwise rerun the models)."""
        attached = self.store.all(conversation_id)
        ids = tuple(a.id for a in attached)
        cached = self._findings.get(conversation_id)
        if cached is None or cached[0] != ids:
            found = self.analyzer.analyze([a.recording for a in attached], ids=list(ids), guidance=False)
            self._findings[conversation_id] = cached = (ids, found)
        return cached[1].model_copy(deep=True)
    def _unreachable(self, e: Exception) -> str:
        log.warning("chat model at %s failed: %s", self.chat_url, _why(e))
        return UNREACHABLE.format(error=_why(e))

    def fallback(self, conversation_id: str, text: str, reason: str) -> Reply:
        """The focused reply: the direct answer to the question's topics, its evidence, excerpts of the
        passages retrieved for the question, the decision-support line, and the notice that says why."""
        notice = reason + FALLBACK
        attached = self.store.all(conversation_id)
        topics = self.topics(text)
        findings = self._findings_of(conversation_id) if attached else None
        config = self._excerpter.config if self._excerpter is not None else FocusConfig()
        passages = _unique(self.analyzer.guidance(text, k=config.passages)) if text.strip() else []
        focused = focused_reply(text, topics, findings, passages, self._excerpter, config)
        if findings is not None:
            findings.guidance = passages
        return Reply(text=focused.markdown(notice), notice=notice, findings=findings, guidance=passages)


def _unique(passages: list[GuidancePassage]) -> list[GuidancePassage]:
    seen: set[str] = set()
    return [p for p in passages if not (p.id in seen or seen.add(p.id))]
