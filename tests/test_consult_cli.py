import json
import subprocess
import sys

from typer.testing import CliRunner

from assistant.cli.main import app

runner = CliRunner()


def test_analyze_json_per_patient(analyzer_loaded_once, synth_root):
    result = runner.invoke(app, ["analyze", str(synth_root), "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert len(found) == 8
    first = found[0]
    assert first["patient_id"] == "11000" and [r["site"] for r in first["recordings"]] == ["AV", "PV", "TV", "MV"]
    assert [r["id"] for r in first["recordings"]] == ["11000_AV", "11000_PV", "11000_TV", "11000_MV"]
    assert first["guidance"] and "decision support" in first["disclaimer"]
    assert first["recordings"][0]["segmentation"]["intervals"]


def test_analyze_files_with_plot(analyzer_loaded_once, synth_root, tmp_path):
    files = [str(p) for p in sorted(synth_root.glob("11001_*.wav"))]
    result = runner.invoke(app, ["analyze", *files, "--plot", "--plot-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "Patient 11001" in result.stdout and "Murmur:" in result.stdout and "Guidance" in result.stdout
    png = tmp_path / "murmurscope_11001.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_chat_without_model_gives_findings(analyzer_loaded_once, synth_root, monkeypatch):
    monkeypatch.delenv("MURMURSCOPE_CHAT_BASE_URL", raising=False)
    files = [str(p) for p in sorted(synth_root.glob("11002_*.wav"))]
    result = runner.invoke(app, ["chat", *files], input="is there a murmur?\nexit\n")
    assert result.exit_code == 0, result.output
    assert "attached rec4" in result.stdout and "No chat model" in result.stdout and "Murmur:" in result.stdout


def test_analyze_non_audio_is_one_line(tmp_path):
    bad = tmp_path / "x.wav"
    bad.write_text("not audio")
    result = subprocess.run([sys.executable, "-c", "from assistant.cli.main import main; main()", "analyze", str(bad)],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "not a readable audio file" in result.stderr
