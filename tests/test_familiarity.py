"""The familiarity score and its gate (assistant/murmur/familiarity.py), on generated audio."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from assistant.data.audio import Recording
from assistant.data.synth import SynthConfig, synthesize
from assistant.murmur.familiarity import UNFAMILIAR, Familiarity, FamiliarityConfig
from assistant.murmur.model import WEIGHTS_DIR


@pytest.fixture(scope="module")
def shipped():
    from assistant.murmur.model import MurmurModel

    familiarity = Familiarity.load(WEIGHTS_DIR)
    assert familiarity is not None, "the shipped murmur weights come with a familiarity model"
    return MurmurModel.load(), familiarity


def test_a_foreign_signal_is_farther_than_a_heart_sound(shipped):
    model, familiarity = shipped
    rate, n = 4000, 4000 * 8
    rng = np.random.default_rng(0)
    heart = synthesize(SynthConfig(duration=8.0, seed=3)).recording
    noise = Recording((0.1 * rng.standard_normal(n)).astype(np.float32), rate)
    sine = Recording((0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / rate)).astype(np.float32), rate)
    d = {name: familiarity.score(model.embed(r)) for name, r in (("heart", heart), ("noise", noise), ("sine", sine))}
    assert d["heart"] < d["noise"] and d["heart"] < d["sine"], d
    # Mixing ever more noise into the heart sound moves it ever farther away.
    mixed = [familiarity.score(model.embed(Recording((heart.samples + w * noise.samples).astype(np.float32), rate)))
             for w in (0.0, 1.0, 4.0)]
    assert mixed[0] < mixed[1] < mixed[2], mixed


def test_the_distance_grows_along_any_direction_and_the_threshold_splits_it():
    rng = np.random.default_rng(1)
    from finetune.familiarity import cross_fitted_scores, fit_gaussian

    x = rng.standard_normal((400, 6)) * np.array([1, 2, 3, 1, 1, 0.5])
    mean, precision, _ = fit_gaussian(x)
    threshold = float(np.percentile(cross_fitted_scores(x, 4), 99))
    f = Familiarity(FamiliarityConfig(threshold, 99.0), mean, precision)
    direction = rng.standard_normal(6)
    scores = [f.score(mean + t * direction) for t in (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)]
    assert all(a < b for a, b in zip(scores, scores[1:])) and scores[0] == pytest.approx(0.0, abs=1e-9)
    assert f.unfamiliar(threshold * 1.01) and not f.unfamiliar(threshold * 0.99)
    # A new sample of the same Gaussian lies beyond the cross-fitted 99th percentile about 1% of the time.
    fresh = rng.standard_normal((4000, 6)) * np.array([1, 2, 3, 1, 1, 0.5])
    assert 0.0 < np.mean([f.unfamiliar(f.score(v)) for v in fresh]) < 0.04


def test_most_recordings_must_be_unfamiliar_for_the_patient():
    f = Familiarity(FamiliarityConfig(1.0, 99.0), np.zeros(2), np.eye(2))
    assert f.patient_reason([2.0]) == UNFAMILIAR
    assert f.patient_reason([2.0, 0.5]) is None
    assert f.patient_reason([2.0, 2.0, 0.5]) == UNFAMILIAR
    assert f.patient_reason([]) is None


def test_the_gate_turns_the_call_unknown_with_the_reason(analyzer, synth_recordings):
    from assistant.consult.analyzer import Analyzer
    from assistant.consult.report import findings_markdown

    base = analyzer.familiarity
    distances = [base.score(analyzer.murmur_model.embed(r)) for r in synth_recordings]

    def with_threshold(t: float) -> Analyzer:
        f = Familiarity(replace(base.config, threshold=t), base.mean, base.precision)
        return Analyzer(analyzer.murmur_model, None, segmenter=analyzer.segmenter, familiarity=f,
                        abnormal=analyzer.abnormal)

    strict = with_threshold(min(distances) / 2).analyze(synth_recordings, guidance=False)
    assert strict.murmur == "Unknown" and strict.unfamiliar == UNFAMILIAR and strict.warnings[0] == UNFAMILIAR
    assert strict.ungated_murmur in ("Present", "Unknown", "Absent") and strict.no_heart is None
    assert all(ft.label is None for ft in strict.features.values())
    assert strict.familiarity.unfamiliar_recordings == strict.familiarity.recordings == len(synth_recordings)
    assert UNFAMILIAR in findings_markdown(strict)
    lenient = with_threshold(max(distances) * 2).analyze(synth_recordings, guidance=False)
    assert lenient.unfamiliar is None and lenient.ungated_murmur is None
    assert lenient.murmur == strict.ungated_murmur
    assert [r.familiarity for r in lenient.recordings] == pytest.approx(distances, abs=0.01)


def test_load_finds_nothing_in_an_empty_folder_and_refuses_other_weights(tmp_path):
    from assistant.murmur.familiarity import FamiliarityError

    assert Familiarity.load(tmp_path) is None
    f = Familiarity.load(WEIGHTS_DIR)
    f.save(tmp_path)
    (tmp_path / "murmur.safetensors").write_bytes(b"other weights")
    with pytest.raises(FamiliarityError, match="other murmur weights"):
        Familiarity.load(tmp_path)


@pytest.mark.realdata
def test_other_stethoscopes_are_farther_than_unseen_circor(circor_dev, shipped):
    """PhysioNet 2016 subset d (another device and population) against CirCor validation patients."""
    from pathlib import Path

    from assistant.data.circor import read_folder
    from assistant.data.split import split_patients

    physionet = Path(circor_dev).parent / "physionet2016-dev"
    if not (physionet / "REFERENCE.csv").exists():
        pytest.skip(f"PhysioNet 2016 data not found at {physionet} (it stays in ../shared)")
    model, familiarity = shipped
    from assistant.data.audio import load_recording

    away = [familiarity.score(model.embed(load_recording(f, rate=model.rate)))
            for f in sorted(physionet.glob("d*.flac"))[:20]]
    patients = [p for p in read_folder(circor_dev) if p.labels is not None]
    val = sorted(split_patients(patients).val)[:8]
    home = [familiarity.score(model.embed(r.load(rate=model.rate))) for p in patients if p.patient_id in val
            for r in p.recordings]
    assert np.median(away) > np.percentile(home, 90), (np.median(away), np.percentile(home, 90))
    assert np.mean([familiarity.unfamiliar(d) for d in home]) < 0.1


def test_the_gate_under_cross_validation_is_fitted_per_fold_and_only_turns_calls_unknown(synth_root, tmp_path):
    import json

    import torch
    from typer.testing import CliRunner

    from assistant.cli.main import app
    from assistant.data.circor import read_folder
    from assistant.data.split import fold_patients
    from assistant.murmur.model import MurmurConfig, MurmurModel
    from eval.cross_validation import OOFPatient, save_fold

    patients = read_folder(synth_root)
    for k, split in enumerate(fold_patients(patients, 2, 2022)):
        torch.manual_seed(k)
        MurmurModel(MurmurConfig()).save(tmp_path / "cv" / f"model{k}")
        rows = [OOFPatient(p.patient_id, k, p.labels.murmur, [0.2, 0.1, 0.7], "Absent")
                for p in patients if p.patient_id in split.val]
        save_fold(tmp_path / "cv" / f"fold{k}.json", rows, {"minutes": 0.1})
    base = ["eval", "familiarity-cv", "--cv", str(tmp_path / "cv"), "--circor-root", str(synth_root),
            "--cache-dir", str(tmp_path / "cache")]
    wrong = CliRunner().invoke(app, [*base, "--folds", "3"])
    assert wrong.exit_code != 0 and "does not hold the patients" in str(wrong.exception)
    base += ["--folds", "2"]
    results = {}
    for percentile in ("50", "99"):
        out = tmp_path / f"gate{percentile}.json"
        run = CliRunner().invoke(app, [*base, "--percentile", percentile, "--out", str(out)])
        assert run.exit_code == 0, run.output
        assert "| with gate |" in run.output
        results[percentile] = json.loads(out.read_text())["folds"]
    for folds in results.values():
        assert set(folds) == {"0", "1"}
        for f in folds.values():
            # Every call was Absent: the gate can only have turned some into Unknown.
            assert f["calls_changed"] == f["unfamiliar"]
    gated = {p: sum(f["unfamiliar"] for f in folds.values()) for p, folds in results.items()}
    assert gated["50"] > 0 and gated["50"] >= gated["99"]
    assert results["50"]["0"]["threshold"] < results["99"]["0"]["threshold"]
    missing = CliRunner().invoke(app, ["eval", "familiarity-cv", "--cv", str(tmp_path / "nothing"),
                                       "--circor-root", str(synth_root)])
    assert missing.exit_code != 0 and "no finished folds" in str(missing.exception)
