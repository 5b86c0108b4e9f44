"""Short clips (issue 15): from one beat at the slowest searched heart rate (MIN_SECONDS) a recording is
analysed on the cycles it holds, with a thin-evidence warning; a shorter one is refused in one line."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from assistant.cli.main import app
from assistant.consult.analyzer import AnalysisError
from assistant.consult.consultation import Consultation
from assistant.consult.report import findings_markdown
from assistant.data.audio import MIN_SECONDS, Recording, write_recording
from assistant.data.synth import SynthConfig, synthesize
from assistant.segment.gate import NO_HEART
from assistant.segment.segmenter import NO_CYCLES
from assistant.serve.app import APIConfig, create_app

KEY = "test-key-123"
# 1.5 s clips the shipped segmenter finds one and two complete cycles in (tests/test_segmenter.py checks them).
CLIPS = {1: SynthConfig(duration=1.5, heart_rate=100, seed=0), 2: SynthConfig(duration=1.5, heart_rate=120, seed=0)}
TOO_SHORT = f"0.80 s is shorter than the {MIN_SECONDS:g} s minimum"


def clip(n_cycles: int) -> Recording:
    return synthesize(CLIPS[n_cycles]).recording


def too_short() -> Recording:
    return synthesize(SynthConfig(duration=0.8, heart_rate=100, seed=0)).recording


def wav_bytes(rec: Recording) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, rec.samples, rec.rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def thin_warnings(warnings: list[str]) -> list[str]:
    return [w for w in warnings if "thin evidence" in w]


@pytest.mark.parametrize("n_cycles", [1, 2])
def test_a_short_clip_is_analysed_with_a_thin_evidence_warning(analyzer, n_cycles):
    findings = analyzer.analyze([clip(n_cycles)], guidance=False)
    seg = findings.recordings[0].segmentation
    assert seg.reliable and seg.thin_evidence and seg.n_cycles == n_cycles
    assert findings.no_heart is None and findings.murmur in findings.probabilities
    cycles = "1 complete heart cycle" if n_cycles == 1 else "2 complete heart cycles"
    assert thin_warnings(findings.warnings) == [f"rec1: thin evidence, {cycles} in 1.5 s: the call rests on very "
                                                "little audio; confirm it on a longer recording"]
    assert f"warning: {thin_warnings(findings.warnings)[0]}" in findings_markdown(findings)


def test_a_full_recording_is_not_thin(analyzer):
    findings = analyzer.analyze([synthesize(SynthConfig(duration=8.0, heart_rate=100, seed=0)).recording],
                                guidance=False)
    assert not findings.recordings[0].segmentation.thin_evidence and not thin_warnings(findings.warnings)


def test_a_short_clip_without_a_complete_cycle_is_unknown(analyzer):
    findings = analyzer.analyze([synthesize(SynthConfig(duration=1.5, heart_rate=60, seed=0)).recording],
                                guidance=False)
    assert findings.murmur == "Unknown" and findings.no_heart == NO_HEART
    assert f"rec1: {NO_CYCLES}" in findings.warnings and not thin_warnings(findings.warnings)


def test_the_analyzer_refuses_a_clip_under_the_floor(analyzer):
    with pytest.raises(AnalysisError, match=f"^rec1: {TOO_SHORT}$"):
        analyzer.analyze([too_short()], guidance=False)


def test_cli_analyze_short_clip(analyzer_loaded_once, tmp_path):
    path = write_recording(tmp_path / "clip_AV.wav", clip(2))
    result = CliRunner().invoke(app, ["analyze", str(path), "--json"])
    assert result.exit_code == 0, result.output
    [findings] = json.loads(result.stdout)
    assert findings["recordings"][0]["segmentation"]["thin_evidence"]
    assert thin_warnings(findings["warnings"]) and findings["murmur"] in ("Present", "Unknown", "Absent")


def test_cli_refuses_a_clip_under_the_floor_in_one_line(tmp_path):
    path = write_recording(tmp_path / "short.wav", too_short())
    result = subprocess.run([sys.executable, "-c", "from assistant.cli.main import main; main()", "analyze", str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and TOO_SHORT in result.stderr


@pytest.fixture()
def api(analyzer):
    with TestClient(create_app(Consultation(analyzer), APIConfig(api_key=KEY))) as c:
        yield c


def post(api: TestClient, rec: Recording):
    return api.post("/v1/analyze", files=[("files", ("clip.wav", wav_bytes(rec), "audio/wav"))],
                    data={"sites": ["MV"]}, headers={"Authorization": f"Bearer {KEY}"})


@pytest.mark.parametrize("n_cycles", [1, 2])
def test_api_analyses_a_short_clip_with_the_warning(api, n_cycles):
    r = post(api, clip(n_cycles))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["recordings"][0]["segmentation"]["thin_evidence"] and body["recordings"][0]["duration_s"] == 1.5
    assert thin_warnings(body["warnings"])


def test_api_refuses_a_clip_under_the_floor_as_json(api):
    r = post(api, too_short())
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and TOO_SHORT in err["message"] and "\n" not in err["message"]
