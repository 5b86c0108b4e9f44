import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from assistant.cli.main import app

runner = CliRunner()


def _run(*args):
    """The installed entry point, as a user runs it (errors are handled in main(), not in the app)."""
    return subprocess.run([sys.executable, "-c", "from assistant.cli.main import main; main()", *args],
                          capture_output=True, text=True)


def test_help_lists_subcommands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "info" in result.output


def test_info_on_generated_root(synth_root):
    result = _run("info", str(synth_root), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["summary"]["patients"] == 8 and report["summary"]["recordings"] == 32
    assert report["summary"]["sample_rates"] == {"4000": 32}


def test_info_on_a_file(synth_root):
    result = _run("info", str(next(synth_root.glob("*_MV.wav"))))
    assert result.returncode == 0 and "MV" in result.stdout


@pytest.mark.parametrize("kind", ["missing", "text"])
def test_info_bad_input_is_one_line(tmp_path, kind):
    path = tmp_path / "notes.txt"
    if kind == "text":
        path.write_text("not audio\n")
    result = _run("info", str(path))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_synth_refuses_to_overwrite(tmp_path):
    assert _run("synth", str(tmp_path), "--patients", "1", "--duration", "3").returncode == 0
    before = sorted(p.name for p in tmp_path.iterdir())
    again = _run("synth", str(tmp_path), "--patients", "1")
    assert again.returncode != 0 and sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.realdata
def test_info_circor_dev(circor_dev):
    result = _run("info", str(circor_dev), "--json")
    assert result.returncode == 0
    assert json.loads(result.stdout)["summary"]["patients"] == 611


def test_paths_with_markup_are_printed_literally(synth_root, tmp_path):
    # rich would read "[/red]" in a file name as a closing tag and crash or swallow it.
    src = next(synth_root.glob("*_MV.wav"))
    (tmp_path / "x[").mkdir()
    odd = tmp_path / "x[" / "red][bold]y_MV.wav"
    odd.write_bytes(src.read_bytes())
    result = _run("segment", str(odd), "--out", str(tmp_path / "x[" / "red]o.tsv"))
    assert result.returncode == 0, result.stderr
    assert "red][bold]y_MV.wav:" in result.stdout and "x[/red]o.tsv" in result.stdout
    bad = _run("segment", str(tmp_path / "gone[" / "red].wav"))
    assert bad.returncode == 2 and "gone[/red].wav" in bad.stderr.replace("\n", "") and "Traceback" not in bad.stderr
