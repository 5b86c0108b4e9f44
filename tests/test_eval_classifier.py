"""The classifier predictor: the run's predictions are the model's own, and its scores follow from them."""

import csv
from pathlib import Path

import pytest

from assistant.data.labels import FEATURES

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def random_model(tmp_path_factory):
    from assistant.murmur.model import MurmurConfig, MurmurModel

    folder = tmp_path_factory.mktemp("murmur_model")
    MurmurModel(MurmurConfig()).save(folder)
    return folder


def test_classifier_run_reproduces_the_model(random_model, tmp_path):
    from assistant.data.circor import read_folder
    from assistant.data.synth import write_circor_folder
    from assistant.murmur.model import MurmurModel
    from eval.metrics import weighted_accuracy
    from eval.runner import RunConfig, run

    root = tmp_path / "data"
    write_circor_folder(root, n_patients=4, seed=2, duration=4.0)
    result = run(RunConfig(root, f"classifier:{random_model}", tmp_path / "out", split="all", workers=2,
                           bootstrap=20, progress=False))
    model = MurmurModel.load(random_model)
    patients = read_folder(root)
    expected = {p.patient_id: model.predict_patient(p.unlabelled()) for p in patients}
    with (tmp_path / "out" / "predictions.csv").open() as fh:
        rows = {r["patient_id"]: r for r in csv.DictReader(fh)}
    for pid, pred in expected.items():
        want = pred.csv_row()
        got = rows[pid]
        assert got["murmur"] == want["murmur"]
        assert all(got[name] == want[name] for name in FEATURES)
        for col in ("p_present", "p_unknown", "p_absent"):
            assert float(got[col]) == pytest.approx(float(want[col]), abs=1e-4)
    truth = [p.labels.murmur for p in patients]
    wacc = weighted_accuracy(truth, [expected[p.patient_id].murmur for p in patients])
    assert result.metrics["murmur"]["weighted_accuracy"]["value"] == pytest.approx(wacc)
    assert "features_head" in result.metrics and result.metrics["murmur"]["auroc"] is not None


def test_skipped_recordings_are_reported(random_model, tmp_path):
    import soundfile as sf

    from assistant.data.circor import read_folder
    from assistant.data.synth import write_circor_folder
    from eval.runner import RunConfig, run

    root = tmp_path / "data"
    write_circor_folder(root, n_patients=3, seed=4, duration=4.0)
    ref = read_folder(root)[1].recordings[0]
    samples, rate = sf.read(ref.audio_path)
    sf.write(ref.audio_path, samples[: rate // 2], rate)  # 0.5 s: under the 2 s minimum
    result = run(RunConfig(root, f"classifier:{random_model}", tmp_path / "out", split="all", bootstrap=10,
                           progress=False))
    skipped = result.metrics["run"]["skipped"]
    assert list(skipped) == [ref.patient_id] and list(skipped[ref.patient_id]) == [ref.name]
    assert "shorter than" in skipped[ref.patient_id][ref.name]
    report = (tmp_path / "out" / "report.md").read_text()
    assert "recordings skipped" in report and "1 in 1 patients" in report
    with (tmp_path / "out" / "skipped.csv").open() as fh:
        assert [(r["patient_id"], r["recording"]) for r in csv.DictReader(fh)] == [(ref.patient_id, ref.name)]


@pytest.mark.slow
@pytest.mark.realdata
def test_classifier_run_reproduces_the_classifier_benchmark(circor_dev, tmp_path):
    from eval.classifier_bench import ClassifierBenchConfig
    from eval.classifier_bench import run as bench
    from eval.runner import RunConfig, run

    ours = run(RunConfig(circor_dev, "classifier", tmp_path / "run", bootstrap=50, progress=False)).metrics
    theirs = bench(ClassifierBenchConfig(circor_root=circor_dev, out_dir=tmp_path / "bench", bootstrap=50,
                                         timing_runs=1, progress=False))
    assert ours["murmur"]["n"] == theirs["n_val"]
    for key in ("weighted_accuracy", "uar", "accuracy"):
        assert ours["murmur"][key]["value"] == pytest.approx(theirs[key])
    for name, s in theirs["features"].items():
        if s["n_val"]:
            assert ours["features_head"][name]["accuracy"]["value"] == pytest.approx(s["accuracy"])
            assert ours["features_head"][name]["uar"]["value"] == pytest.approx(s["uar"])
