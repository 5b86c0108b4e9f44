"""The demo patient of `make demo`: a real CirCor patient with a murmur, small enough to commit,
that the shipped model gets right (a newcomer's first look should not show the system failing)."""

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from assistant.cli.main import app
from assistant.data.circor import read_folder

DEMO = Path(__file__).resolve().parents[1] / "examples" / "circor_68306"
runner = CliRunner()


def test_demo_patient_is_small_flac_with_expert_labels():
    files = sorted(DEMO.iterdir())
    assert sum(f.stat().st_size for f in files) <= 1_000_000
    (patient,) = read_folder(DEMO)
    assert patient.sites == ("AV", "PV", "TV", "MV")
    assert all(r.audio_path.suffix == ".flac" for r in patient.recordings)
    assert patient.labels.murmur == "Present" and patient.labels.systolic_grading == "III/VI"


@pytest.mark.slow
def test_shipped_model_calls_the_demo_patient_as_its_experts_do(analyzer_loaded_once, tmp_path):
    (patient,) = read_folder(DEMO)
    result = runner.invoke(app, ["analyze", str(DEMO), "--plot", "--plot-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "Murmur: Present" in result.stdout and "Murmur features" in result.stdout
    findings = analyzer_loaded_once.analyze([r.load() for r in patient.recordings], guidance=False)
    assert findings.murmur == "Present" and findings.probabilities["Present"] > 0.9
    labels = patient.labels
    for name in ("most_audible_location", "systolic_grading", "systolic_quality"):
        assert findings.features[name].label == labels.feature(name), name
    assert (tmp_path / "murmurscope_68306.png").stat().st_size > 20_000


@pytest.mark.realdata
def test_demo_patient_is_unseen_and_unchanged(circor_dev):
    """From the validation side of the project split (never trained on), samples identical to ../shared."""
    from assistant.data.split import split_patients

    patients = [p for p in read_folder(circor_dev) if p.labels is not None]
    assert "68306" in split_patients(patients).val
    (demo,) = read_folder(DEMO)
    shared = next(p for p in patients if p.patient_id == "68306")
    assert demo.labels == shared.labels
    for mine, theirs in zip(demo.recordings, shared.recordings, strict=True):
        assert np.array_equal(mine.load().samples, theirs.load().samples)
