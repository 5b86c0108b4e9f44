"""Remote audio: public addresses only, the checked address is the one connected, one deadline, one message."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from assistant.serve.app import APIConfig, create_app
from assistant.serve.remote import RemoteAudioError, fetch_audio, is_public
from eval.hostile import seeds

WAV = seeds()["wav"]
MB = 2**20


class Upstream(BaseHTTPRequestHandler):
    hosts: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        Upstream.hosts.append(self.headers.get("Host", ""))
        if self.path == "/a.wav":
            self._send(200, WAV)
        elif self.path == "/redirect.wav":
            self.send_response(302)
            self.send_header("Location", "/a.wav")
            self.end_headers()
        elif self.path == "/big.wav":
            self._send(200, b"\0" * (2 * MB))
        elif self.path == "/drip.wav":
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                for _ in range(100):
                    self.wfile.write(b"\0" * 10)
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:
                pass
        else:
            self._send(404, b"no")

    def _send(self, status, body):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextmanager
def upstream():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()


@pytest.mark.parametrize("address,public", [
    ("127.0.0.1", False), ("10.1.2.3", False), ("172.16.0.1", False), ("192.168.1.1", False),
    ("169.254.169.254", False), ("224.0.0.1", False), ("0.0.0.0", False), ("100.64.0.1", False),
    ("::1", False), ("fe80::1", False), ("fc00::1", False), ("ff02::1", False), ("::ffff:127.0.0.1", False),
    ("93.184.216.34", True), ("2606:2800:220:1:248:1893:25c8:1946", True),
])
def test_address_policy(address, public):
    assert is_public(address) is public


def _message(fn) -> str:
    with pytest.raises(RemoteAudioError) as info:
        fn()
    return str(info.value)


def test_every_refusal_reads_the_same():
    with upstream() as port:
        local = [f"http://127.0.0.1:{port}/a.wav", f"http://localhost:{port}/a.wav", "http://10.0.0.1/a.wav",
                 "http://169.254.169.254/latest/meta-data", "http://[::1]:9/a.wav", "ftp://example.org/a.wav",
                 "http://user:pw@example.org/a.wav"]
        messages = {_message(lambda u=u: fetch_audio(u, MB, 2.0)) for u in local}
        # The upstream is reachable only because the test allows loopback; each failure still reads the same.
        allow = dict(resolver=lambda h, p: ["127.0.0.1"], allow=lambda a: True)
        for path in ("/missing.wav", "/redirect.wav", "/big.wav"):
            messages.add(_message(lambda p=path: fetch_audio(f"http://audio.test:{port}{p}", MB, 2.0, **allow)))
        messages.add(_message(lambda: fetch_audio("http://audio.test:1/a.wav", MB, 2.0, **allow)))
    assert len(messages) == 1 and "public http(s) URL" in messages.pop()


def test_connects_to_the_checked_address_with_the_original_host():
    answers = iter([["127.0.0.1"], ["10.0.0.9"]])  # a rebinding DNS: a private address on the second lookup
    Upstream.hosts.clear()
    with upstream() as port:
        got = fetch_audio(f"http://audio.test:{port}/a.wav", MB, 2.0, resolver=lambda h, p: next(answers),
                          allow=lambda a: a == "127.0.0.1")
    assert got.data == WAV and got.suffix == ".wav"
    assert Upstream.hosts == [f"audio.test:{port}"]


def test_one_deadline_for_the_whole_fetch():
    with upstream() as port:
        start = time.perf_counter()
        _message(lambda: fetch_audio(f"http://audio.test:{port}/drip.wav", MB, 1.0,
                                     resolver=lambda h, p: ["127.0.0.1"], allow=lambda a: True))
        assert time.perf_counter() - start < 1.6


def test_environment_proxies_are_ignored(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    with upstream() as port:
        got = fetch_audio(f"http://audio.test:{port}/a.wav", MB, 2.0, resolver=lambda h, p: ["127.0.0.1"],
                          allow=lambda a: True)
    assert got.data == WAV


@pytest.mark.integration
def test_api_refuses_loopback_audio_urls(analyzer):
    from assistant.consult.consultation import Consultation
    from tests.live_server import serve

    app = create_app(Consultation(analyzer), APIConfig(allow_remote_audio=True))
    with upstream() as port, serve(app) as url:
        replies = [httpx.post(f"{url}/v1/chat/completions", json={"model": "murmurscope", "messages": [
            {"role": "user", "content": [{"type": "audio_url", "audio_url": {"url": u}}]}]})
            for u in (f"http://127.0.0.1:{port}/a.wav", f"http://127.0.0.1:{port}/missing.wav")]
    assert {r.status_code for r in replies} == {422}
    assert len({r.json()["error"]["message"] for r in replies}) == 1
