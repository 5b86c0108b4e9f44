"""Limits the API enforces on what it receives: bytes actually read, JSON size, chat counts and lengths."""

from __future__ import annotations

import base64
import time

import httpx
import pytest
from langchain_core.messages import AIMessage

from assistant.consult.consultation import Consultation
from assistant.serve.app import APIConfig, create_app
from eval.hostile import chunked, flac_bomb, raw_post
from tests.chat_doubles import ScriptedChatModel
from tests.live_server import serve

pytestmark = pytest.mark.integration
KEY = "limits-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS")) / 1024


@pytest.fixture()
def api(analyzer, tmp_path):
    model = ScriptedChatModel(responses=[AIMessage(content="ok")] * 20, seen=[])
    config = APIConfig(api_key=KEY, max_upload_mb=1.0, upload_dir=tmp_path, max_messages=16, max_text_chars=1000,
                       max_json_values=400, max_recordings=2, max_recording_mb=0.5)
    with serve(create_app(Consultation(analyzer, chat_model=model), config)) as url:
        yield url


@pytest.mark.parametrize("headers", [
    {"Content-Length": "10", "Transfer-Encoding": "chunked"},  # the lying length of the report
    {"Transfer-Encoding": "chunked"},
])
def test_chunked_bodies_are_bounded_by_bytes_received(api, headers):
    before = rss_mb()
    status, body, elapsed = raw_post(api, "/v1/chat/completions",
                                     {**AUTH, "Content-Type": "application/json", **headers}, chunked(300 << 20))
    assert status == 413 and body["error"]["code"] == 413 and "1 MB" in body["error"]["message"]
    assert elapsed < 2.0
    assert rss_mb() - before < 100
    assert httpx.get(f"{api}/health").status_code == 200


def test_declared_length_over_the_limit_is_refused_unread(api):
    status, body, elapsed = raw_post(api, "/v1/analyze", {**AUTH, "Content-Length": str(50 << 20)}, [b"x" * 1000])
    assert status == 413 and body["error"]["type"] == "invalid_request_error" and elapsed < 2.0


def test_audio_bomb_is_refused_fast_with_bounded_memory(api):
    before = rss_mb()
    start = time.perf_counter()
    r = httpx.post(f"{api}/v1/analyze", headers=AUTH,
                   files=[("files", ("bomb.flac", flac_bomb(rate=96_000, channels=8, seconds=599), "audio/flac")),
                          ("files", ("bomb2.flac", flac_bomb(rate=655_000, channels=1, seconds=599), "audio/flac"))])
    assert 400 <= r.status_code < 500 and time.perf_counter() - start < 2.0
    assert "file 1" in r.json()["error"]["message"]
    assert rss_mb() - before < 100


def _chat(api, messages):
    return httpx.post(f"{api}/v1/chat/completions", headers=AUTH, json={"model": "murmurscope", "messages": messages})


def test_chat_counts_and_lengths_are_capped(api):
    r = _chat(api, [{"role": "user", "content": "hi"}] * 17)
    assert r.status_code == 400 and "at most 16" in r.json()["error"]["message"]
    r = _chat(api, [{"role": "user", "content": "x" * 1001}])
    assert r.status_code == 422 and "1,000" in r.json()["error"]["message"]
    audio = {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}
    r = _chat(api, [{"role": "user", "content": [audio] * 3}])
    assert r.status_code == 422 and "at most 2 recordings" in r.json()["error"]["message"]
    assert _chat(api, [{"role": "user", "content": "hi"}]).status_code == 200


def test_many_tiny_values_are_refused_before_parsing(api):
    r = _chat(api, [{"role": "user", "content": "a"}] * 5000)
    assert r.status_code == 413 and "JSON values" in r.json()["error"]["message"]


def test_base64_length_is_checked_before_decoding(api):
    # Not valid base64 at all: a decode would answer 400; the length check answers 413 first.
    audio = {"type": "input_audio", "input_audio": {"data": "!" * 800_000, "format": "wav"}}
    r = _chat(api, [{"role": "user", "content": [audio]}])
    assert r.status_code == 413 and "0.5 MB" in r.json()["error"]["message"]
    url = "data:audio/wav;base64," + base64.b64encode(b"\0" * 600_000).decode() + "!!!!"
    r = _chat(api, [{"role": "user", "content": [{"type": "audio_url", "audio_url": {"url": url}}]}])
    assert r.status_code == 413
    r = httpx.post(f"{api}/v1/analyze", headers=AUTH, files=[("files", ("a.wav", b"\0" * 600_000, "audio/wav"))])
    assert r.status_code == 413 and "file 1" in r.json()["error"]["message"]


def test_file_count_is_capped_while_parsing(api):
    files = [("files", (f"{k}.wav", b"RIFF", "audio/wav")) for k in range(3)]
    r = httpx.post(f"{api}/v1/analyze", headers=AUTH, files=files)
    assert r.status_code == 400 and "Too many files" in r.json()["error"]["message"]


def test_large_parts_spool_to_the_upload_dir(tmp_path):
    import asyncio
    import os

    from starlette.datastructures import Headers

    from assistant.serve.limits import _SpoolInDir

    body = (b"--b\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.wav\"\r\n\r\n"
            + b"\0" * (3 << 20) + b"\r\n--b--\r\n")

    async def stream():
        for k in range(0, len(body), 65536):
            yield body[k:k + 65536]

    async def parse():
        parser = _SpoolInDir(Headers({"content-type": "multipart/form-data; boundary=b"}), stream(), max_files=2,
                             max_fields=2, spool_dir=tmp_path)
        return await parser.parse()

    form = asyncio.run(parse())
    upload = form["files"]
    assert upload.size == 3 << 20 and upload.file._rolled
    where = os.readlink(f"/proc/self/fd/{upload.file.fileno()}")
    assert where.startswith(str(tmp_path)), where
    asyncio.run(form.close())
