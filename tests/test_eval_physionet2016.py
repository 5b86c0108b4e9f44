"""The PhysioNet/CinC 2016 layout: REFERENCE.csv folders of 2 kHz .wav records, scored abnormal/normal."""

import csv
import json

import pytest

from assistant.data.audio import write_recording
from assistant.data.synth import Murmur, SynthConfig, synthesize
from assistant.errors import DatasetError
from eval.datasets import PHYSIONET2016, load_eval_set
from eval.runner import RunConfig, run
from eval.scoring import to_binary


def write_physionet2016_folder(root, layout):
    """`layout` maps a training-x folder to its records' labels (1 abnormal, -1 normal)."""
    for folder, labels in layout.items():
        d = root / folder
        d.mkdir(parents=True)
        lines = []
        for k, label in enumerate(labels):
            name = f"{folder[-1]}{k + 1:04d}"
            murmurs = (Murmur(),) if label == 1 else ()
            pcg = synthesize(SynthConfig(rate=2000, duration=3.0, murmurs=murmurs, seed=k))
            write_recording(d / f"{name}.wav", pcg.recording)
            lines.append(f"{name},{label}")
        (d / "REFERENCE.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def root_2016(tmp_path_factory):
    # 4 abnormal, 6 normal over two source folders, as in training-a ... training-f.
    return write_physionet2016_folder(tmp_path_factory.mktemp("p2016"),
                                      {"training-a": [1, -1, -1, 1, -1], "training-b": [1, -1, 1, -1, -1]})


def test_layout_is_detected_and_read(root_2016):
    es = load_eval_set(root_2016)
    assert es.layout == PHYSIONET2016 and es.protocol == "physionet2016:all"
    assert len(es.patients) == 10 and sum(v == "abnormal" for v in es.binary_truth.values()) == 4
    assert all(p.labels is None and len(p.recordings) == 1 for p in es.patients)
    rec = es.patients[0].recordings[0].load()
    assert rec.rate == 2000
    with pytest.raises(DatasetError):
        load_eval_set(root_2016, "val")


def test_unknown_mapping():
    assert to_binary("Present", "abnormal") == "abnormal"
    assert to_binary("Absent", "abnormal") == "normal"
    assert to_binary("Unknown", "abnormal") == "abnormal"
    assert to_binary("Unknown", "normal") == "normal"
    assert to_binary(None, "normal") == "abnormal"  # no valid class counts as Present


def test_csv_run_on_2016(root_2016, tmp_path):
    # Right on both abnormal records of training-a, wrong on one normal one, Unknown on a0002 (normal).
    preds = tmp_path / "preds.csv"
    truth = load_eval_set(root_2016).binary_truth
    rows = []
    for name, label in truth.items():
        murmur = "Present" if label == "abnormal" else "Absent"
        if name == "a0003":
            murmur = "Present"
        if name == "a0002":
            murmur = "Unknown"
        rows.append({"patient_id": name, "murmur": murmur})
    with preds.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["patient_id", "murmur"])
        w.writeheader()
        w.writerows(rows)
    for unknown_as, spec in (("abnormal", 4 / 6), ("normal", 5 / 6)):
        out = tmp_path / unknown_as
        result = run(RunConfig(root_2016, f"csv:{preds}", out, unknown_as=unknown_as, bootstrap=50,
                               progress=False))
        b = result.metrics["binary"]
        assert b["sensitivity"]["value"] == pytest.approx(1.0)
        assert b["specificity"]["value"] == pytest.approx(spec)
        assert b["uar"]["value"] == pytest.approx((1 + spec) / 2)
        assert b["unknown_outputs"] == 1
    m = json.loads((tmp_path / "normal" / "metrics.json").read_text())
    koike = next(r for r in m["baselines"] if r["id"] == "koike2020-panns-uar")
    assert koike["comparable"] and koike["ours"] == pytest.approx((1 + 5 / 6) / 2)
    assert not next(r for r in m["baselines"] if r["id"] == "niizumi2024-m2d-wacc")["comparable"]
    assert "PhysioNet 2016" in (tmp_path / "normal" / "report.md").read_text()


def test_majority_on_2016(root_2016, tmp_path):
    result = run(RunConfig(root_2016, "majority", tmp_path / "maj", bootstrap=0, progress=False))
    b = result.metrics["binary"]
    assert (b["sensitivity"]["value"], b["specificity"]["value"]) == (0.0, 1.0)
    assert b["auroc"] == pytest.approx(0.5)
