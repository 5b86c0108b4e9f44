"""Backpressure and deadlines: a full queue answers 503 with Retry-After, a slow request 504, /health stays up."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from langchain_core.messages import AIMessage

from assistant.consult.consultation import Consultation
from assistant.serve.app import APIConfig, create_app
from tests.chat_doubles import ScriptedChatModel
from tests.live_server import serve

pytestmark = pytest.mark.integration


class GatedChatModel(ScriptedChatModel):
    """Answers only once `gate` is set (or after `delay` seconds)."""

    gate: threading.Event
    delay: float = 30.0

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        self.gate.wait(self.delay)
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)


def _ask(url, stream=False, timeout=30):
    return httpx.post(f"{url}/v1/chat/completions", timeout=timeout,
                      json={"model": "murmurscope", "stream": stream, "messages": [{"role": "user", "content": "hi"}]})


def test_full_queue_answers_503_and_health_stays_up(analyzer):
    gate = threading.Event()
    model = GatedChatModel(responses=[AIMessage(content="ok")], seen=[], gate=gate)
    config = APIConfig(workers=1, max_queued=1, deadline_s=30, retry_after_s=7)
    app = create_app(Consultation(analyzer, chat_model=model), config)
    with serve(app) as url, ThreadPoolExecutor(2) as clients:
        held = [clients.submit(_ask, url) for _ in range(2)]
        deadline = time.time() + 10
        while len(model.seen) < 1 and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # the second request is admitted and queued behind the first
        start = time.perf_counter()
        assert httpx.get(f"{url}/health", timeout=2).json() == {"status": "ok"}
        assert httpx.get(f"{url}/v1/models", timeout=2).status_code == 200
        assert time.perf_counter() - start < 1.0
        busy = _ask(url, timeout=5)
        assert busy.status_code == 503 and busy.headers["retry-after"] == "7"
        assert busy.json()["error"]["code"] == 503
        gate.set()
        assert [f.result().status_code for f in held] == [200, 200]
    assert _ask_after(app) == 200


def _ask_after(app) -> int:
    with serve(app) as url:
        return _ask(url).status_code


def test_deadline_answers_504_and_the_slot_comes_back(analyzer):
    gate = threading.Event()
    model = GatedChatModel(responses=[AIMessage(content="ok")], seen=[], gate=gate, delay=2.0)
    config = APIConfig(workers=1, max_queued=0, deadline_s=0.8)
    with serve(create_app(Consultation(analyzer, chat_model=model), config)) as url:
        start = time.perf_counter()
        r = _ask(url)
        assert r.status_code == 504 and "0.8 s deadline" in r.json()["error"]["message"]
        assert time.perf_counter() - start < 1.8
        # The overrunning work still holds the only slot until it finishes: backpressure, not a pile-up.
        assert _ask(url).status_code == 503
        time.sleep(1.5)
        s = _ask(url, stream=True)
        events = [line[6:] for line in s.text.splitlines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]" and json.loads(events[-2])["error"]["code"] == 504
        gate.set()
        time.sleep(0.3)
        assert _ask(url).status_code == 200
