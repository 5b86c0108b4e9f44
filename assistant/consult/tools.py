"""The agent's LangChain tools. They act on the recordings attached to the conversation (by id,
from the `RecordingStore`); the conversation is the LangGraph thread the tool runs in.
"""

# No `from __future__ import annotations`: @tool reads the real annotations to find ToolRuntime.
import json

from langchain.tools import ToolRuntime, tool
from langchain_core.tools import BaseTool

from assistant.consult.analyzer import Analyzer
from assistant.consult.store import RecordingStore, UnknownRecordingError
from assistant.llm.client import AudioLLMConfig, ask


def conversation_of(runtime: ToolRuntime) -> str:
    return runtime.config["configurable"]["thread_id"]


def build_tools(analyzer: Analyzer, store: RecordingStore, audio_llm: AudioLLMConfig | None = None) -> list[BaseTool]:
    """`segment_recording`, `classify_murmur`, `search_guidance`, and `ask_audio_llm` when a served
    audio-LLM is configured."""

    @tool
    def segment_recording(recording_id: str, runtime: ToolRuntime) -> str:
        """Find the heart cycles of one attached recording: heart rate, signal quality (0 poor to 1 clean),
        whether the segmentation is reliable, and the number of cycles."""
        att = store.get(conversation_of(runtime), recording_id)
        seg = analyzer.segment(att.recording)
        return json.dumps({"recording_id": att.id, "site": att.recording.site,
                           **seg.model_dump(exclude={"intervals"})})

    @tool
    def classify_murmur(runtime: ToolRuntime, recording_ids: list[str] | None = None) -> str:
        """Murmur call (Present / Unknown / Absent with probabilities) for the patient from the given
        attached recordings (all of them when omitted), with the murmur features (timing, shape, grading,
        pitch, quality, most audible location), per-recording signal quality and warnings."""
        conversation = conversation_of(runtime)
        # Each id once, each one attached: a model repeating ids must not multiply the work.
        attached = (store.all(conversation) if not recording_ids
                    else [store.get(conversation, rid) for rid in dict.fromkeys(recording_ids)])
        if not attached:
            raise UnknownRecordingError("no recordings are attached to this conversation")
        findings = analyzer.analyze([a.recording for a in attached], ids=[a.id for a in attached], guidance=False)
        return json.dumps(findings.compact())

    tools: list[BaseTool] = [segment_recording, classify_murmur]
    if analyzer.retriever is not None:
        tools.append(analyzer.retriever.as_tool())
    if audio_llm is not None:

        @tool
        def ask_audio_llm(recording_id: str, question: str, runtime: ToolRuntime) -> str:
            """Ask the fine-tuned audio language model a question about one attached recording (it listens
            to the audio). Its answers are less calibrated than classify_murmur: use them as a second opinion."""
            att = store.get(conversation_of(runtime), recording_id)
            return ask(att.recording, question, audio_llm)

        tools.append(ask_audio_llm)
    return tools
