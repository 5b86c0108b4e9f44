"""The murmur model's recalibration: vector scaling and decision weights fitted on out-of-fold probabilities."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from assistant.data.labels import MURMUR_CLASSES
from assistant.murmur.calibration import Recalibration
from eval.cross_validation import OOFPatient, murmur_scores, recalibrated, save_fold
from eval.metrics import calibration_bins
from finetune.calibration import fit_recalibration, fit_vector_scaling


def _shifted(n: int, seed: int, shift=(1.5, 0.0, -1.5)) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Labels drawn from calibrated probabilities, and the same probabilities shifted between classes
    (what class-weighted training does): (shifted, truth, calibrated)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2.0, (n, 3)) + np.array([-1.0, -1.5, 1.0])
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    truth = [MURMUR_CLASSES[rng.choice(3, p=row)] for row in p]
    q = np.exp(logits + np.array(shift))
    return q / q.sum(1, keepdims=True), truth, p


def test_identity_changes_nothing():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.2, 0.3]])
    r = Recalibration()
    assert torch.allclose(r.log_probabilities(logits), logits.log_softmax(-1))
    assert r.decide(logits.softmax(-1)).tolist() == [0, 2]
    with pytest.raises(ValueError):
        Recalibration(decision_weights=(1.0, 0.0, 1.0))
    with pytest.raises(ValueError):
        Recalibration(scale=(1.0, 1.0))
    with pytest.raises(TypeError):
        Recalibration.from_dict([1.0, 2.0])


def test_vector_scaling_undoes_a_class_shift():
    shifted, truth, _ = _shifted(3000, 0)
    scale, bias = fit_vector_scaling(shifted, truth)
    assert np.allclose(scale, 1.0, atol=0.15)
    assert bias[0] - bias[2] == pytest.approx(-3.0, abs=0.35)  # the shift, undone
    r = Recalibration(tuple(scale), tuple(bias))
    fixed = r.log_probabilities(torch.from_numpy(np.log(shifted))).exp().numpy()
    before = calibration_bins(truth, shifted, MURMUR_CLASSES)["ece"]
    after = calibration_bins(truth, fixed, MURMUR_CLASSES)["ece"]
    assert after < 0.03 < before


def test_decision_weights_follow_the_challenge_cost():
    # Calibrated probabilities: argmax already maximises accuracy, but weighted accuracy (Present x5,
    # Unknown x3) and UAR reward leaning towards the rarer, costlier classes.
    _, truth, calibrated = _shifted(3000, 1, shift=(0.0, 0.0, 0.0))
    r = fit_recalibration(calibrated, truth, "vector")
    assert r.decision_weights[0] > r.decision_weights[1] > r.decision_weights[2]
    assert r.decision_weights[2] == pytest.approx(1.0)


def _rows(n_folds: int = 3, per_fold: int = 400) -> list[OOFPatient]:
    shifted, truth, _ = _shifted(n_folds * per_fold, 2)
    return [OOFPatient(f"p{i}", i // per_fold, t, list(map(float, q)), MURMUR_CLASSES[int(np.argmax(q))])
            for i, (q, t) in enumerate(zip(shifted, truth))]


def test_nested_recalibration_never_sees_the_held_out_labels():
    rows = _rows()
    out = recalibrated(rows, "vector")
    assert [r.patient_id for r in out] == [r.patient_id for r in rows]
    flipped = [r if r.fold != 0 else OOFPatient(r.patient_id, 0, "Absent", r.probabilities, r.call) for r in rows]
    again = recalibrated(flipped, "vector")
    fold0 = [(a.probabilities, a.call) for a in out if a.fold == 0]
    assert fold0 == [(a.probabilities, a.call) for a in again if a.fold == 0]  # fold 0's labels unused
    assert murmur_scores(out)["ece"] < murmur_scores(rows)["ece"]


def test_temperature_mode_changes_confidence_never_a_call():
    rows = _rows()
    # Over-confident: the same ranking, sharper.
    sharp = [OOFPatient(r.patient_id, r.fold, r.murmur, list(np.array(r.probabilities) ** 3 / np.sum(
        np.array(r.probabilities) ** 3)), r.call) for r in rows]
    r = fit_recalibration(np.array([x.probabilities for x in sharp]), [x.murmur for x in sharp], "temperature")
    assert len(set(r.scale)) == 1 and r.scale[0] < 0.6 and r.bias == (0.0, 0.0, 0.0)
    assert r.decision_weights == (1.0, 1.0, 1.0)
    out = recalibrated(sharp, "temperature")
    assert [a.call for a in out] == [a.call for a in sharp]
    assert murmur_scores(out)["ece"] < murmur_scores(sharp)["ece"]
    with pytest.raises(Exception, match="--mode"):
        fit_recalibration(np.array([x.probabilities for x in sharp]), [x.murmur for x in sharp], "platt")


def test_calibrate_command_writes_a_new_model_and_predictions_use_it(tmp_path, synth_root):
    from typer.testing import CliRunner

    from assistant.cli.main import app
    from assistant.data.circor import read_folder
    from assistant.errors import MurmurScopeError
    from assistant.murmur.model import MurmurConfig, MurmurModel

    rows = _rows(2, 300)
    for k in (0, 1):
        save_fold(tmp_path / "cv" / f"fold{k}.json", [r for r in rows if r.fold == k], {"minutes": 0.1})
    torch.manual_seed(0)
    MurmurModel(MurmurConfig()).save(tmp_path / "model")
    base = ["finetune", "calibrate", "--cv", str(tmp_path / "cv"), "--model", str(tmp_path / "model"), "--mode",
            "vector"]
    result = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "calibrated")])
    assert result.exit_code == 0, result.output
    assert "decision weights" in result.output
    saved = json.loads((tmp_path / "calibrated" / "murmur.json").read_text())["recalibration"]
    fitted = json.loads((tmp_path / "calibrated" / "calibration.json").read_text())
    assert fitted["patients"] == 600 and fitted["folds"] == [0, 1] and saved == fitted["recalibration"]
    assert fitted["mode"] == "vector" and len(set(saved["bias"])) > 1
    again = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "calibrated")])
    assert isinstance(again.exception, MurmurScopeError) and "not empty" in str(again.exception)

    patient = read_folder(synth_root)[0]
    plain = MurmurModel.load(tmp_path / "model").predict_patient(patient)
    model = MurmurModel.load(tmp_path / "calibrated")
    assert model.config.recalibration == Recalibration.from_dict(saved)
    pred = model.predict_patient(patient)
    r = model.config.recalibration
    expected = r.log_probabilities(torch.log(torch.tensor([plain.probabilities[c] for c in MURMUR_CLASSES]))).exp()
    assert [pred.probabilities[c] for c in MURMUR_CLASSES] == pytest.approx(expected.tolist(), abs=1e-5)
    assert pred.murmur == MURMUR_CLASSES[int(r.decide(expected))]
