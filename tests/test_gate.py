"""The non-heart gate: tones, hum, noise, music and speech are never called Present or Absent."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from assistant.data.audio import Recording
from assistant.segment.gate import NO_HEART, heart_evidence, not_heart_reason, steady_reason
from eval.nonheart_bench import RATE, hum, music, noise


def _rec(x: np.ndarray, rate: int = RATE, site: str = "AV") -> Recording:
    return Recording((0.5 * x / np.max(np.abs(x))).astype(np.float32), rate, site=site)


def _tone(freq: float, rate: int = RATE, seconds: float = 15.0) -> Recording:
    t = np.arange(int(rate * seconds)) / rate
    return _rec(np.sin(2 * np.pi * freq * t), rate)


@pytest.mark.parametrize("freq,rate", [(50.0, 4000), (60.0, 4000), (50.0, 16000), (100.0, 44100)])
def test_segmenter_finds_no_cycles_in_a_pure_tone(analyzer, freq, rate):
    from assistant.segment.segmenter import segment_recording

    result = segment_recording(_tone(freq, rate), segmenter=analyzer.segmenter)
    assert not result.reliable and result.cycles() == [] and "tone" in result.message


def test_heart_recordings_pass(analyzer, synth_recordings):
    findings = analyzer.analyze(synth_recordings, guidance=False)
    # Synthetic audio may be unfamiliar to the murmur model (another gate); the non-heart gate leaves it alone.
    assert findings.no_heart is None and (findings.ungated_murmur is None) == (findings.unfamiliar is None)
    for rec in synth_recordings:
        evidence = heart_evidence(rec.samples, rec.rate)
        assert steady_reason(evidence) is None and not_heart_reason(evidence, 0.8) is None


def _clips(rng) -> dict[str, Recording]:
    n = 12 * RATE
    return {"hum 50 Hz + harmonics": _rec(hum(50.0, (1, 2, 3), n, rng)),
            "hum 60 Hz with hiss": _rec(hum(60.0, (1, 3, 5), n, rng) + 0.05 * rng.standard_normal(n)),
            "pink noise": _rec(noise("pink", n, rng)), "brown noise": _rec(noise("brown", n, rng)),
            "music with a beat": _rec(music("beat", n, rng)), "plucked strings": _rec(music("plucked", n, rng))}


def test_non_heart_audio_is_unknown_with_the_reason(analyzer):
    rng = np.random.default_rng(5)
    for name, rec in _clips(rng).items():
        findings = analyzer.analyze([rec, rec], guidance=False)
        assert findings.murmur == "Unknown", name
        assert findings.no_heart == NO_HEART and findings.warnings[0] == NO_HEART, name
        assert all(r.not_heart for r in findings.recordings), name
        assert all(f.label is None for f in findings.features.values()), name
    from assistant.consult.report import findings_markdown

    assert findings_markdown(findings).startswith(f"**Murmur: Unknown**: {NO_HEART}")


def test_one_heart_recording_keeps_the_models_call(analyzer, synth_recordings):
    rng = np.random.default_rng(6)
    findings = analyzer.analyze([synth_recordings[0], _clips(rng)["pink noise"]], ids=["rec1", "rec2"],
                                guidance=False)
    assert findings.no_heart is None and findings.recordings[1].not_heart
    assert any(w.startswith("rec2: ") for w in findings.warnings)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (Debian package espeak-ng)")
def test_speech_is_never_called_a_murmur(analyzer, tmp_path):
    from eval.nonheart_bench import SPEECH, _fit, espeak

    for lang in ("en-us", "de", "es", "nl"):
        x = _fit(espeak(lang, "m1", 160, SPEECH[lang], tmp_path), 12 * RATE)
        findings = analyzer.analyze([_rec(x)], guidance=False)
        assert findings.murmur == "Unknown" and findings.no_heart == NO_HEART, lang


@pytest.mark.slow
@pytest.mark.realdata
def test_gate_leaves_real_calls_alone(analyzer, circor_dev):
    """On real patients the gate may change at most 1% of the calls (all 611: `murmurscope eval nonheart`)."""
    from eval.nonheart_bench import run_real

    result = run_real(analyzer, circor_dev, limit=60, progress=False)
    assert result["patients"] == 60 and result["changed"] <= 0.01 * 60, result["which"]
    assert result["recordings_refused_by_the_segmenter_as_steady"] == 0
