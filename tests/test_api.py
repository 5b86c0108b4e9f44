from __future__ import annotations

import base64
import io
import json

import httpx
import openai
import pytest
from langchain_core.messages import AIMessage, ToolMessage

from assistant.consult.consultation import Consultation
from assistant.data.audio import write_recording
from assistant.serve.app import APIConfig, create_app
from tests.chat_doubles import ScriptedChatModel, call
from tests.live_server import serve

pytestmark = pytest.mark.integration
KEY = "test-key-123"
FINAL = "Murmur present (60%), quality 0.8 [1]. This is decision support, not a diagnosis."


@pytest.fixture()
def api(analyzer, tmp_path):
    model = ScriptedChatModel(responses=[call("classify_murmur", {}, "c1"), AIMessage(content=FINAL)], seen=[])
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    config = APIConfig(api_key=KEY, max_upload_mb=1.0, upload_dir=uploads)
    with serve(create_app(Consultation(analyzer, chat_model=model), config)) as url:
        yield url, model, uploads


def wav_bytes(rec) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, rec.samples, rec.rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def audio_part(rec, site=None) -> dict:
    part = {"type": "input_audio", "input_audio": {"data": base64.b64encode(wav_bytes(rec)).decode(), "format": "wav"}}
    if site:
        part["input_audio"]["site"] = site
    return part


def client(url, key=KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


def test_models_and_health(api):
    url, _, _ = api
    assert [m.id for m in client(url).models.list().data] == ["murmurscope"]
    assert httpx.get(f"{url}/health").json() == {"status": "ok"}
    schema = httpx.get(f"{url}/openapi.json", headers={"Authorization": f"Bearer {KEY}"}).json()
    assert {"/v1/chat/completions", "/v1/analyze", "/v1/models", "/health"} <= set(schema["paths"])


def test_chat_with_audio(api, synth_recordings):
    url, model, uploads = api
    response = client(url).chat.completions.create(model="murmurscope", messages=[
        {"role": "system", "content": "ignored"},
        {"role": "user", "content": [{"type": "text", "text": "Is there a murmur?"},
                                     audio_part(synth_recordings[0], "AV"), audio_part(synth_recordings[3], "MV")]},
    ])
    assert response.choices[0].message.content == FINAL and response.object == "chat.completion"
    human = [m for m in model.seen[0] if m.type == "human"][0].content
    assert "rec1 (site AV, 8.0 s), rec2 (site MV, 8.0 s)" in human and human.endswith("Is there a murmur?")
    tool = [m for m in model.seen[-1] if isinstance(m, ToolMessage)][0]
    assert [r["site"] for r in json.loads(tool.content)["recordings"]] == ["AV", "MV"]
    assert not list(uploads.iterdir())


def test_streaming_chat_with_audio(api, synth_recordings):
    url, _, uploads = api
    stream = client(url).chat.completions.create(model="murmurscope", stream=True, messages=[
        {"role": "user", "content": [audio_part(synth_recordings[1])]}])
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == FINAL
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert not list(uploads.iterdir())


def test_analyze_upload(api, synth_recordings):
    url, _, uploads = api
    files = [("files", (f"{r.site}.wav", wav_bytes(r), "audio/wav")) for r in synth_recordings[:2]]
    r = httpx.post(f"{url}/v1/analyze", files=files, data={"sites": ["AV", "TV"]},
                   headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [(x["id"], x["site"]) for x in body["recordings"]] == [("rec1", "AV"), ("rec2", "TV")]
    assert body["murmur"] in body["probabilities"] and body["guidance"]
    assert not list(uploads.iterdir())


def test_auth(api):
    url, _, _ = api
    with pytest.raises(openai.AuthenticationError) as e:
        client(url, key="wrong").models.list()
    assert e.value.status_code == 401 and e.value.body["type"] == "authentication_error"
    assert httpx.post(f"{url}/v1/analyze").status_code == 401


def test_size_limit(api):
    url, _, _ = api
    big = [("files", ("big.wav", b"\0" * (1024 * 1024 + 10), "audio/wav"))]
    r = httpx.post(f"{url}/v1/analyze", files=big, headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 413 and r.json()["error"]["code"] == 413
    with pytest.raises(openai.APIStatusError) as e:
        client(url).chat.completions.create(model="murmurscope", messages=[
            {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "A" * 1_500_000}}]}])
    assert e.value.status_code == 413


def test_non_audio_upload(api, tmp_path):
    url, _, uploads = api
    r = httpx.post(f"{url}/v1/analyze", files=[("files", ("notes.wav", b"hello, not audio", "audio/wav"))],
                   headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 415
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and "not a readable audio file" in err["message"]
    assert "/" not in err["message"].replace("<upload>", "")
    assert not list(uploads.iterdir())
    with pytest.raises(openai.APIStatusError) as e:
        client(url).chat.completions.create(model="murmurscope", messages=[{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": base64.b64encode(b"text").decode(), "format": "wav"}}]}])
    assert e.value.status_code == 415


@pytest.mark.parametrize("audio_url", ["http://127.0.0.1:9/a.wav", "file:///etc/passwd"])
def test_remote_and_file_urls_refused(api, audio_url):
    url, _, _ = api
    with pytest.raises(openai.PermissionDeniedError) as e:
        client(url).chat.completions.create(model="murmurscope", messages=[{"role": "user", "content": [
            {"type": "audio_url", "audio_url": {"url": audio_url}}]}])
    assert "disabled" in e.value.body["message"]


def test_bad_requests(api, synth_recordings):
    url, _, _ = api
    with pytest.raises(openai.NotFoundError):
        client(url).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.UnprocessableEntityError):  # valid by the schema, but no question to answer
        client(url).chat.completions.create(model="murmurscope", messages=[{"role": "assistant", "content": "hi"}])
    r = httpx.post(f"{url}/v1/analyze", headers={"Authorization": f"Bearer {KEY}"},
                   files=[("files", ("a.wav", wav_bytes(synth_recordings[0]), "audio/wav"))], data={"sites": ["XX"]})
    assert r.status_code == 400 and r.json()["error"]["param"].startswith("sites")


def test_file_urls_inside_the_allowed_folder(analyzer, synth_recordings, tmp_path):
    model = ScriptedChatModel(responses=[AIMessage(content="ok")], seen=[])
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    write_recording(allowed / "a.wav", synth_recordings[0])
    app = create_app(Consultation(analyzer, chat_model=model), APIConfig(allowed_local_audio_dir=allowed))
    with serve(app) as url:
        c = client(url, key="none")
        ok = c.chat.completions.create(model="murmurscope", messages=[{"role": "user", "content": [
            {"type": "audio_url", "audio_url": {"url": f"file://{allowed}/a.wav"}}]}])
        # The scripted model never calls a tool, so the answer carries the ungrounded notice.
        assert ok.choices[0].message.content.startswith("ok\n\n> No analysis of the attached recordings")
        with pytest.raises(openai.PermissionDeniedError):
            c.chat.completions.create(model="murmurscope", messages=[{"role": "user", "content": [
                {"type": "audio_url", "audio_url": {"url": "file:///etc/hostname"}}]}])
