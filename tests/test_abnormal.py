"""The normal/abnormal model (assistant/abnormal): its features, head, weights and predictor, on generated
audio; on the real PhysioNet 2016 folder when ../shared holds it."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from assistant.abnormal.features import FeatureConfig, recording_vector
from assistant.abnormal.model import CAVEAT, AbnormalModel, AbnormalModelError
from assistant.data.synth import Murmur, SynthConfig, synthesize

PHYSIONET_DEV = Path(__file__).resolve().parents[1].parent / "shared" / "physionet2016-dev"
LOUD = Murmur(timing="Holosystolic", grading="III/VI", pitch="High", quality="Harsh")


@pytest.fixture(scope="module")
def models():
    from assistant.murmur.model import MurmurModel
    from assistant.segment.segmenter import default_segmenter

    return MurmurModel.load(), default_segmenter()


def _vector(models, config: SynthConfig) -> np.ndarray:
    murmur, segmenter = models
    rec = synthesize(config).recording
    return recording_vector(murmur, murmur.frame_statistics(rec), segmenter.segment(rec), rec)


@pytest.fixture(scope="module")
def synth_vectors(models):
    """Six murmur-free and six loud-murmur synthetic recordings of 6 s, each at its own heart rate."""
    x, y = [], []
    for k in range(12):
        murmurs = (LOUD,) if k % 2 else ()
        x.append(_vector(models, SynthConfig(duration=6.0, heart_rate=70 + 5 * k, murmurs=murmurs, seed=k)))
        y.append(k % 2)
    return np.stack(x), np.array(y)


def test_the_vector_holds_every_declared_group(models, synth_vectors):
    murmur, _ = models
    dims = FeatureConfig().dims(murmur.config.members, murmur.config.cnn.dim)
    x, _ = synth_vectors
    assert x.shape[1] == sum(dims.values()) and np.isfinite(x).all()
    assert x[:, -1].min() == 1.0  # the cycle-image flag: the segmenter found cycles in every synthetic recording


def test_the_head_separates_held_out_murmurs_and_survives_a_round_trip(models, synth_vectors, tmp_path):
    from finetune.abnormal import fit_head

    x, y = synth_vectors
    model, c = fit_head(x, y, inner_folds=3)
    assert c > 0
    held_out = np.stack([_vector(models, SynthConfig(duration=6.0, heart_rate=hr, murmurs=m, seed=100 + hr))
                         for hr, m in ((82, ()), (96, (LOUD,)), (74, ()), (104, (LOUD,)))])
    p = model.probability(held_out)
    assert p[1] > p[0] and p[3] > p[2], p
    model.save(tmp_path)
    again = AbnormalModel.load(tmp_path)
    np.testing.assert_allclose(again.probability(held_out), p, rtol=1e-3, atol=1e-4)
    call = again.predict({"a": held_out[0], "b": held_out[1]})
    assert call.label == ("abnormal" if call.probability >= call.threshold else "normal")
    assert call.probability == pytest.approx(np.mean(list(call.recordings.values())))


def test_the_head_refuses_one_class_and_a_wrong_width(synth_vectors):
    from assistant.errors import MurmurScopeError
    from finetune.abnormal import fit_head

    x, y = synth_vectors
    with pytest.raises(MurmurScopeError, match="only one class"):
        fit_head(x, np.zeros_like(y))
    with pytest.raises(AbnormalModelError, match="this head reads"):
        AbnormalModel.load().probability(x[:, :10])


def test_load_says_what_is_missing_or_mismatched(tmp_path):
    with pytest.raises(AbnormalModelError, match="no normal/abnormal model here"):
        AbnormalModel.load(tmp_path)
    other = tmp_path / "murmur"
    other.mkdir()
    (other / "murmur.safetensors").write_bytes(b"other weights")
    with pytest.raises(AbnormalModelError, match="other murmur weights"):
        AbnormalModel.load(None, other)


def test_the_predictor_calls_a_generated_patient(tmp_path):
    from assistant.data.circor import read_folder
    from assistant.data.synth import write_circor_folder
    from eval.predictors import PROB_COLUMNS, build_predictor

    write_circor_folder(tmp_path, n_patients=1, seed=4, duration=6.0)
    (patient,) = read_folder(tmp_path)
    predictor = build_predictor("abnormal", [])
    out = predictor.predict(patient)
    assert out.murmur in ("Present", "Absent") and set(out.probabilities) == set(PROB_COLUMNS)
    assert sum(out.probabilities.values()) == pytest.approx(1.0)
    assert (out.murmur == "Present") == (out.probabilities["Present"] >= predictor.model.config.threshold)
    assert predictor.fingerprint()["weights_sha256"]


def test_the_analysis_reports_the_call_with_its_caveat(analyzer, synth_recordings):
    findings = analyzer.analyze(synth_recordings, guidance=False)
    assert findings.abnormal is not None and findings.abnormal.caveat == CAVEAT
    assert "coronary artery disease" in CAVEAT and "not validated on children" in CAVEAT
    per = [r.abnormal_probability for r in findings.recordings]
    assert findings.abnormal.probability == pytest.approx(np.mean(per), abs=1e-3)


@pytest.mark.realdata
def test_eval_run_takes_it_on_a_physionet_layout_folder(tmp_path):
    if not (PHYSIONET_DEV / "REFERENCE.csv").exists():
        pytest.skip(f"PhysioNet 2016 data not found at {PHYSIONET_DEV} (it stays in ../shared)")
    from eval.runner import RunConfig, run

    rows = list(csv.reader((PHYSIONET_DEV / "REFERENCE.csv").open()))
    chosen = [r for r in rows if r[0].startswith("d")][:12]
    data = tmp_path / "training-d"
    data.mkdir()
    with (data / "REFERENCE.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows(chosen)
    for name, _ in chosen:
        shutil.copy(PHYSIONET_DEV / f"{name}.flac", data / f"{name}.flac")
    result = run(RunConfig(data_root=tmp_path, predictor="abnormal", out=tmp_path / "run", workers=1,
                           bootstrap=50, progress=False))
    binary = result.metrics["binary"]
    assert binary["n"] == 12 and binary["auroc"] is not None and (tmp_path / "run" / "report.md").exists()


def test_abnormal_cv_prints_both_schemes_on_a_generated_physionet_folder(tmp_path):
    """Two generated 'databases' (b, d), half with a loud murmur: the command runs LOSO and k-fold end to end."""
    from typer.testing import CliRunner

    from assistant.cli.main import app
    from assistant.data.audio import write_recording

    data = tmp_path / "pn"
    data.mkdir()
    rows = []
    for k in range(16):
        name = f"{'bd'[k % 2]}{k:04d}"
        murmurs = (LOUD,) if (k // 2) % 2 else ()
        rec = synthesize(SynthConfig(rate=2000, duration=5.0, heart_rate=70 + 3 * k, murmurs=murmurs, seed=k))
        write_recording(data / f"{name}.wav", rec.recording)
        rows.append([name, "1" if murmurs else "-1"])
    with (data / "REFERENCE.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    out = tmp_path / "cv.json"
    result = CliRunner().invoke(app, ["eval", "abnormal-cv", "--data-root", str(data), "--cache-dir",
                                      str(tmp_path / "cache"), "--folds", "2", "--inner-folds", "2",
                                      "--bootstrap", "20", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "| leave-one-subset-out | b | 8 |" in result.output and "| 2-fold stratified | all (pooled) | 16 |" in \
        result.output
    assert "challenge2016-best-macc" in result.output
    import json

    schemes = json.loads(out.read_text())["schemes"]
    assert [len(s["probabilities"]) for s in schemes] == [16, 16] and len(schemes[0]["chosen_c"]) == 2
