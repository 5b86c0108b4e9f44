"""The classifier predictor: the run's predictions are the model's own, and its scores follow from them."""

import csv
from pathlib import Path

import pytest

from assistant.data.labels import FEATURES, MURMUR_CLASSES

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
    sf.write(ref.audio_path, samples[: rate // 2], rate)  # 0.5 s: under the 1.5 s minimum (MIN_SECONDS)
    result = run(RunConfig(root, f"classifier:{random_model}", tmp_path / "out", split="all", bootstrap=10,
                           progress=False))
    skipped = result.metrics["run"]["skipped"]
    assert list(skipped) == [ref.patient_id] and list(skipped[ref.patient_id]) == [ref.name]
    assert "shorter than" in skipped[ref.patient_id][ref.name]
    report = (tmp_path / "out" / "report.md").read_text()
    assert "recordings skipped" in report and "1 in 1 patients" in report
    with (tmp_path / "out" / "skipped.csv").open() as fh:
        assert [(r["patient_id"], r["recording"]) for r in csv.DictReader(fh)] == [(ref.patient_id, ref.name)]


@pytest.fixture(scope="module")
def val_root(tmp_path_factory):
    """24 generated patients: the project split puts one or two of each murmur class on the validation side."""
    from assistant.data.synth import write_circor_folder

    root = tmp_path_factory.mktemp("bench_data")
    write_circor_folder(root, n_patients=24, seed=1, duration=3.0)
    return root


def test_classifier_bench_is_the_run_plus_timing(random_model, val_root, tmp_path):
    import json

    from eval.classifier_bench import BENCH_JSON, ClassifierBenchConfig
    from eval.classifier_bench import run as bench
    from eval.runner import RunConfig, run

    config = ClassifierBenchConfig(val_root, model=random_model, out_dir=tmp_path / "bench", bootstrap=30,
                                   timing_runs=1, workers=1, progress=False)
    r = bench(config)
    m = run(RunConfig(val_root, f"classifier:{random_model}", tmp_path / "run", bootstrap=30,
                      progress=False)).metrics
    # `eval classifier` and `eval run --predictor classifier` report the same numbers, intervals included.
    assert r["n_val"] == m["murmur"]["n"] > 0 and all(sum(row) for row in m["murmur"]["confusion"]["matrix"])
    for key in ("weighted_accuracy", "uar", "accuracy"):
        assert r[key] == m["murmur"][key]["value"] and r[f"{key}_ci"] == m["murmur"][key]["ci95"]
    assert json.dumps(r["recall"]) == json.dumps(m["murmur"]["recall"]) and r["confusion"] == m["murmur"]["confusion"]
    for name, s in r["features"].items():
        head = m["features_head"][name]
        # Compared as JSON text: NaN (a feature no validation patient has) equals itself there.
        assert json.dumps([s["n_val"], s["accuracy"], s["uar"], s["uar_ci"], s["majority_uar"]]) == json.dumps(
            [head["n"], head["accuracy"]["value"], head["uar"]["value"], head["uar"]["ci95"],
             head["majority_baseline"]["uar"]])
    assert r["seconds_per_patient"] > 0 and r["timed_recordings"] == 4
    out = tmp_path / "bench"
    saved = json.loads((out / BENCH_JSON).read_text())
    assert saved["weighted_accuracy"] == r["weighted_accuracy"] and saved["uar_ci"] == r["uar_ci"]
    # One confusion plot: the run report's.
    assert (out / "confusion_murmur.png").exists() and (out / "report.md").exists()
    assert not (out / "confusion.png").exists()
    # The same command again scores the cached predictions.
    again = bench(config)
    assert (again["predicted"], again["from_cache"]) == (0, r["n_val"])
    assert again["weighted_accuracy_ci"] == r["weighted_accuracy_ci"]


def test_decision_override_is_part_of_the_run(random_model, val_root, tmp_path):
    from assistant.errors import MurmurScopeError
    from eval.classifier_bench import ClassifierBenchConfig
    from eval.classifier_bench import run as bench
    from eval.predictors import ClassifierPredictor, PredictorError
    from eval.runner import RunExistsError

    own = ClassifierPredictor(random_model).fingerprint()
    assert ClassifierPredictor(random_model, "head").fingerprint() == own  # the model's own rule
    any_recording = ClassifierPredictor(random_model, "any_recording")
    assert any_recording.model.config.decision == "any_recording"
    assert any_recording.fingerprint() == own | {"decision": "any_recording"}
    with pytest.raises(PredictorError, match="--decision must be one of"):
        ClassifierPredictor(random_model, "vote")
    out = tmp_path / "bench"
    config = ClassifierBenchConfig(val_root, model=random_model, out_dir=out, bootstrap=0, timing_runs=1,
                                   progress=False)
    assert bench(config)["decision"] == "head"
    # A head run's cached predictions are never reused for the any-recording rule.
    with pytest.raises(RunExistsError, match="fingerprint"):
        bench(ClassifierBenchConfig(val_root, model=random_model, out_dir=out, decision="any_recording", bootstrap=0,
                                    timing_runs=1, progress=False))
    physionet = tmp_path / "p2016"
    physionet.mkdir()
    (physionet / "REFERENCE.csv").write_text("a0001,1\n")
    with pytest.raises(MurmurScopeError, match="no project val split"):  # the benchmark is CirCor's
        bench(ClassifierBenchConfig(physionet, model=random_model, out_dir=tmp_path / "x", progress=False))


@pytest.mark.slow
@pytest.mark.realdata
def test_classifier_benchmark_reproduces_the_model_and_eval_run(circor_dev, tmp_path):
    """On the real validation split: the benchmark's numbers equal the shipped model's own predictions scored
    directly, and `eval run --predictor classifier` prints the same numbers and intervals."""
    import numpy as np

    from assistant.data.circor import read_folder
    from assistant.data.split import split_patients
    from assistant.murmur.model import MurmurModel
    from eval.classifier_bench import ClassifierBenchConfig
    from eval.classifier_bench import run as bench
    from eval.metrics import accuracy, class_recalls, confusion_matrix, uar, weighted_accuracy
    from eval.runner import RunConfig, run

    theirs = bench(ClassifierBenchConfig(circor_root=circor_dev, out_dir=tmp_path / "bench", bootstrap=50,
                                         timing_runs=1, progress=False))
    ours = run(RunConfig(circor_dev, "classifier", tmp_path / "run", bootstrap=50, progress=False)).metrics
    assert ours["murmur"]["n"] == theirs["n_val"]
    for key in ("weighted_accuracy", "uar", "accuracy"):
        assert ours["murmur"][key]["value"] == theirs[key] and ours["murmur"][key]["ci95"] == theirs[f"{key}_ci"]
    for name, s in theirs["features"].items():
        if s["n_val"]:
            assert ours["features_head"][name]["uar"]["ci95"] == s["uar_ci"]

    # Independently of the runner: the model on each validation patient, scored by eval.metrics.
    labelled = [p for p in read_folder(circor_dev) if p.labels is not None]
    val_ids = set(split_patients(labelled).val)
    val = [p for p in labelled if p.patient_id in val_ids]
    model = MurmurModel.load()
    preds = [model.predict_patient(p) for p in val]
    truth, called = [p.labels.murmur for p in val], [q.murmur for q in preds]
    assert theirs["n_val"] == len(val)
    assert theirs["weighted_accuracy"] == pytest.approx(weighted_accuracy(truth, called))
    assert theirs["uar"] == pytest.approx(uar(truth, called))
    assert theirs["accuracy"] == pytest.approx(accuracy(truth, called))
    assert theirs["recall"] == pytest.approx(class_recalls(truth, called, MURMUR_CLASSES), nan_ok=True)
    assert theirs["confusion"]["matrix"] == confusion_matrix(truth, called, MURMUR_CLASSES).tolist()
    for name, s in theirs["features"].items():
        pairs = [(p.labels.feature(name), q.features[name]) for p, q in zip(val, preds)
                 if p.labels.murmur == "Present" and p.labels.feature(name) is not None]
        assert s["n_val"] == len(pairs)
        if pairs:
            heads = [max(f.probabilities, key=f.probabilities.get) if f and f.probabilities else None
                     for _, f in pairs]
            assert s["accuracy"] == pytest.approx(np.mean([t == h for (t, _), h in zip(pairs, heads)]))
            assert s["uar"] == pytest.approx(uar([t for t, _ in pairs], heads, FEATURES[name]))
