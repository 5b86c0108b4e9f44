from __future__ import annotations

import json

from langchain_core.messages import AIMessage, ToolMessage

from assistant.consult.consultation import Consultation
from tests.chat_doubles import ScriptedChatModel, call

FINAL = "Murmur present (62%). Signal quality 0.8. See [1]. This is decision support, not a diagnosis."


def scripted(*responses):
    return ScriptedChatModel(responses=list(responses), seen=[])


def tool_messages(model: ScriptedChatModel) -> list[ToolMessage]:
    return [m for m in model.seen[-1] if isinstance(m, ToolMessage)]


def test_agent_calls_tools_on_attached_recordings(analyzer, synth_recordings):
    model = scripted(
        call("classify_murmur", {}, "c1"),
        call("segment_recording", {"recording_id": "rec2"}, "c2"),
        call("search_guidance", {"query": "holosystolic murmur referral"}, "c3"),
        AIMessage(content=FINAL),
    )
    c = Consultation(analyzer, chat_model=model)
    conv = c.new_conversation()
    for rec in synth_recordings:
        c.attach(conv, rec)
    reply = c.ask(conv, "Is there a murmur?")

    assert reply.text == FINAL and reply.notice is None
    assert reply.tools_called == ["classify_murmur", "segment_recording", "search_guidance"]
    assert set(model.bound_tools) == {"segment_recording", "classify_murmur", "search_guidance"}
    # The system prompt carries the rules; the first human turn lists the attached ids.
    first = model.seen[0]
    assert "decision support, not a diagnosis" in first[0].content
    assert "rec1 (site AV" in first[1].content and "rec4 (site MV" in first[1].content
    msgs = tool_messages(model)
    findings = json.loads(msgs[0].content)
    assert findings["murmur"] in ("Present", "Unknown", "Absent")
    assert [r["id"] for r in findings["recordings"]] == ["rec1", "rec2", "rec3", "rec4"]
    assert abs(sum(findings["probabilities"].values()) - 1) < 1e-3
    seg = json.loads(msgs[1].content)
    assert seg["recording_id"] == "rec2" and seg["site"] == "PV" and "quality" in seg and "intervals" not in seg
    assert "[1]" in msgs[2].content


def test_tool_failure_reaches_the_model_and_the_conversation_goes_on(analyzer, synth_recordings):
    model = scripted(
        call("segment_recording", {"recording_id": "rec9"}, "c1"),
        AIMessage(content="rec9 does not exist; the attached recording is rec1."),
        call("segment_recording", {"recording_id": "rec1"}, "c2"),
        AIMessage(content="done"),
    )
    c = Consultation(analyzer, chat_model=model)
    conv = c.new_conversation()
    c.attach(conv, synth_recordings[0])
    reply = c.ask(conv, "Segment rec9")
    failed = tool_messages(model)[0]
    assert failed.status == "error"
    assert "no recording 'rec9'" in failed.content and "rec1" in failed.content
    assert reply.text.startswith("rec9 does not exist")

    # Same thread: the checkpointer kept the first turn, and the attachment is not announced twice.
    reply = c.ask(conv, "Then rec1")
    assert reply.text == "done"
    history = model.seen[-1]
    assert any("Segment rec9" in m.content for m in history if m.type == "human")
    humans = [m.content for m in history if m.type == "human"]
    assert humans[0].startswith("[Recordings attached: rec1") and humans[-1] == "Then rec1"
    assert json.loads(tool_messages(model)[-1].content)["recording_id"] == "rec1"


def test_internal_tool_errors_are_reported_without_details(analyzer, synth_recordings, monkeypatch):
    def broken(rec):
        raise RuntimeError("secret internal path /data/x")

    monkeypatch.setattr(analyzer, "segment", broken)
    model = scripted(call("segment_recording", {"recording_id": "rec1"}, "c1"), AIMessage(content="missing"))
    c = Consultation(analyzer, chat_model=model)
    conv = c.new_conversation()
    c.attach(conv, synth_recordings[0])
    reply = c.ask(conv, "go")
    # The only analysis failed, so the answer is flagged as not resting on one.
    assert reply.text.startswith("missing") and "No analysis of the attached recordings" in reply.notice
    msg = tool_messages(model)[0]
    assert msg.status == "error" and "RuntimeError" in msg.content and "secret" not in msg.content


def test_conversations_do_not_see_each_others_recordings(analyzer, synth_recordings):
    model = scripted(call("segment_recording", {"recording_id": "rec2"}, "c1"), AIMessage(content="ok"))
    c = Consultation(analyzer, chat_model=model)
    a, b = c.new_conversation(), c.new_conversation()
    c.attach(a, synth_recordings[0])
    c.attach(a, synth_recordings[1])
    c.attach(b, synth_recordings[2])
    c.ask(b, "segment rec2")
    assert tool_messages(model)[0].status == "error"


def test_audio_llm_tool_only_when_configured(analyzer, synth_recordings):
    from assistant.llm.client import AudioLLMConfig

    model = scripted(AIMessage(content="hi"))
    Consultation(analyzer, chat_model=model).ask("x", "hi")
    assert "ask_audio_llm" not in model.bound_tools
    model = scripted(AIMessage(content="hi"))
    Consultation(analyzer, chat_model=model,
                 audio_llm=AudioLLMConfig(base_url="http://127.0.0.1:9/v1", model="m")).ask("x", "hi")
    assert "ask_audio_llm" in model.bound_tools


def test_without_chat_model_the_reply_answers_first_then_guidance(analyzer, synth_recordings):
    c = Consultation(analyzer)
    conv = c.new_conversation()
    for rec in synth_recordings:
        c.attach(conv, rec)
    reply = c.ask(conv, "should I refer for echocardiography?")
    assert reply.notice and "No chat model" in reply.notice
    assert reply.findings is not None and reply.findings.guidance
    assert reply.text.startswith("**Referral: the clinician's decision.**")
    assert f"P({reply.findings.murmur})" in reply.text.split("\n\n")[0]
    assert reply.text.split("\n\n")[-1].startswith("> No chat model")
    assert "[1]" in reply.text and "decision support, not a diagnosis" in reply.text


def test_unreachable_chat_model_falls_back(analyzer, synth_recordings):
    from assistant.consult.agent import ChatModelConfig

    cfg = ChatModelConfig(base_url="http://127.0.0.1:9/v1", timeout=5)
    c = Consultation(analyzer, chat_model=cfg.chat_model(), chat_url=cfg.base_url)
    conv = c.new_conversation()
    c.attach(conv, synth_recordings[0])
    reply = c.ask(conv, "murmur?")
    assert "could not be used (unreachable)" in reply.notice and reply.findings is not None
    streamed = "".join(c.stream(conv, "again?"))
    assert "could not be used" in streamed and "Evidence: 1 recording(s): rec1" in streamed
    assert "127.0.0.1:9" not in reply.text + streamed  # replies never name internal endpoints


def test_audio_llm_failure_does_not_name_the_endpoint(analyzer, synth_recordings):
    from assistant.llm.client import AudioLLMConfig

    model = scripted(call("ask_audio_llm", {"recording_id": "rec1", "question": "murmur?"}, "c1"),
                     AIMessage(content="done"))
    c = Consultation(analyzer, chat_model=model, audio_llm=AudioLLMConfig(base_url="http://127.0.0.1:9/v1", model="m",
                                                                         timeout=5))
    conv = c.new_conversation()
    c.attach(conv, synth_recordings[0])
    c.ask(conv, "ask the audio model")
    (message,) = tool_messages(model)
    assert "could not be reached" in message.content and "127.0.0.1" not in message.content


def test_stream_yields_the_final_answer(analyzer, synth_recordings):
    model = scripted(call("classify_murmur", {}, "c1"), AIMessage(content=FINAL))
    c = Consultation(analyzer, chat_model=model)
    conv = c.new_conversation()
    c.attach(conv, synth_recordings[0])
    assert "".join(c.stream(conv, "murmur?")) == FINAL


def test_chat_model_config_from_env(monkeypatch):
    from assistant.consult.agent import ChatModelConfig

    monkeypatch.setenv("MURMURSCOPE_CHAT_BASE_URL", "http://h:8000/v1")
    monkeypatch.setenv("MURMURSCOPE_CHAT_MODEL", "Qwen/Qwen2.5-1.5B-Instruct")
    cfg = ChatModelConfig.from_env(api_key="k")
    assert (cfg.base_url, cfg.model, cfg.api_key) == ("http://h:8000/v1", "Qwen/Qwen2.5-1.5B-Instruct", "k")
    monkeypatch.delenv("MURMURSCOPE_CHAT_BASE_URL")
    assert ChatModelConfig.from_env().chat_model() is None


def test_a_model_that_never_calls_a_tool_is_flagged(analyzer, synth_recordings):
    model = scripted(AIMessage(content="There is a loud murmur."), call("classify_murmur", {}, "c1"),
                     AIMessage(content=FINAL), AIMessage(content="As said."))
    c = Consultation(analyzer, chat_model=model)
    conv = c.new_conversation()
    c.attach(conv, synth_recordings[0])
    reply = c.ask(conv, "Is there a murmur?")
    assert reply.tools_called == [] and reply.notice and "No analysis of the attached recordings" in reply.notice
    assert reply.text.startswith("There is a loud murmur.") and reply.text.endswith(f"> {reply.notice}.")
    # Once the recordings have been analysed in the conversation, later answers are not flagged.
    assert c.ask(conv, "Look again").notice is None
    assert c.ask(conv, "And now?").notice is None
    # Without recordings there is nothing to analyse, so nothing to flag.
    assert Consultation(analyzer, chat_model=scripted(AIMessage(content="hi"))).ask("x", "hi").notice is None


def test_a_wrong_tool_call_reaches_the_model_as_an_error(analyzer, synth_recordings):
    model = scripted(call("diagnose_patient", {"recording_id": "rec1"}, "c1"),
                     call("segment_recording", {"recording": 1}, "c2"),
                     call("segment_recording", {"recording_id": "rec1"}, "c3"),
                     AIMessage(content="done"))
    c = Consultation(analyzer, chat_model=model)
    conv = c.new_conversation()
    c.attach(conv, synth_recordings[0])
    reply = c.ask(conv, "Segment it")
    unknown, bad_args, ok = tool_messages(model)
    assert unknown.status == "error" and "diagnose_patient" in unknown.content
    assert bad_args.status == "error" and "recording_id" in bad_args.content
    assert ok.status != "error" and json.loads(ok.content)["recording_id"] == "rec1"
    assert reply.text == "done" and reply.notice is None
    assert reply.tools_called == ["diagnose_patient", "segment_recording", "segment_recording"]


def test_classify_murmur_ids_are_deduplicated_and_checked(analyzer, synth_recordings):
    model = scripted(
        call("classify_murmur", {"recording_ids": ["rec2", "rec1", "rec2", "rec2", "rec1"] * 50}, "c1"),
        call("classify_murmur", {"recording_ids": ["rec1", "rec7"]}, "c2"),
        AIMessage(content="done"),
    )
    c = Consultation(analyzer, chat_model=model)
    conv = c.new_conversation()
    for rec in synth_recordings[:2]:
        c.attach(conv, rec)
    c.ask(conv, "murmur?")
    first, second = tool_messages(model)
    assert [r["id"] for r in json.loads(first.content)["recordings"]] == ["rec2", "rec1"]
    assert second.content.startswith("classify_murmur failed") and "rec7" in second.content
