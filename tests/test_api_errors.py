"""Unexpected errors: logged once with a request id, answered without internals; streams end cleanly."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from langchain_core.messages import AIMessage

from assistant.consult.consultation import Consultation
from assistant.serve.app import APIConfig, create_app
from tests.chat_doubles import ScriptedChatModel, call
from tests.live_server import serve

pytestmark = pytest.mark.integration
SECRET = "secret detail at /srv/internal/path"


class BrokenChatModel(ScriptedChatModel):
    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        raise RuntimeError(SECRET)


def _serve(analyzer, model):
    return serve(create_app(Consultation(analyzer, chat_model=model), APIConfig()))


def _ask(url, stream=False):
    return httpx.post(f"{url}/v1/chat/completions", timeout=60,
                      json={"model": "murmurscope", "stream": stream, "messages": [{"role": "user", "content": "hi"}]})


def _tracebacks(caplog, rid):
    return [r for r in caplog.records if r.exc_info and rid in r.getMessage()]


def test_unexpected_error_is_a_500_with_an_id_logged_once(analyzer, caplog):
    caplog.set_level(logging.INFO, logger="murmurscope.api")
    with _serve(analyzer, BrokenChatModel(responses=[AIMessage(content="x")])) as url:
        r = _ask(url)
    assert r.status_code == 500
    err = r.json()["error"]
    rid = r.headers["x-request-id"]
    assert rid in err["message"] and err["code"] == 500 and err["type"] == "server_error"
    assert SECRET not in r.text and "RuntimeError" not in r.text
    assert len(_tracebacks(caplog, rid)) == 1
    assert sum(r.exc_info is not None for r in caplog.records) == 1


def test_streaming_error_ends_with_an_error_event_and_done(analyzer, caplog):
    caplog.set_level(logging.INFO, logger="murmurscope.api")
    with _serve(analyzer, BrokenChatModel(responses=[AIMessage(content="x")])) as url:
        r = _ask(url, stream=True)
    assert r.status_code == 200
    events = [line[len("data: "):] for line in r.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert error["code"] == 500 and SECRET not in r.text
    rid = r.headers["x-request-id"]
    assert rid in error["message"] and len(_tracebacks(caplog, rid)) == 1


def test_agent_step_limit_falls_back_to_the_findings(analyzer):
    looping = ScriptedChatModel(responses=[call("classify_murmur", {}, f"c{k}") for k in range(400)],
                                seen=[])
    with _serve(analyzer, looping) as url:
        r = _ask(url)
        s = _ask(url, stream=True)
    assert r.status_code == 200
    reply = r.json()["choices"][0]["message"]["content"]
    assert "step limit" in reply
    assert s.text.rstrip().endswith("data: [DONE]") and "step limit" in s.text


def test_handled_errors_have_no_traceback(analyzer, caplog):
    caplog.set_level(logging.INFO, logger="murmurscope.api")
    with _serve(analyzer, ScriptedChatModel(responses=[AIMessage(content="x")], seen=[])) as url:
        bad = httpx.post(f"{url}/v1/chat/completions", json={"model": "nope", "messages": []})
        missing = httpx.get(f"{url}/v2/none")
        trace = httpx.request("TRACE", f"{url}/v1/models")
    assert trace.status_code == 405 and trace.headers["allow"] == "GET"
    assert bad.status_code == 400 and missing.status_code == 404 and "x-request-id" in missing.headers
    assert not [r for r in caplog.records if r.exc_info]
