import csv
import shutil

import pytest

from assistant.data.circor import read_folder, read_patient
from assistant.data.labels import FEATURES, MURMUR_CLASSES
from assistant.data.segmentation import Segmentation, State, read_tsv, write_tsv
from assistant.data.split import SplitConfig, split_patients
from assistant.errors import DatasetError


def test_reads_generated_root(synth_root):
    patients = read_folder(synth_root)
    assert len(patients) == 8
    table = {r["Patient ID"]: r for r in csv.DictReader((synth_root / "training_data.csv").open())}
    for p in patients:
        assert [r.site for r in p.recordings] == ["AV", "PV", "TV", "MV"]
        assert all(r.audio_path.suffix == ".wav" and r.tsv_path for r in p.recordings)
        row = table[p.patient_id]
        assert p.labels.murmur == row["Murmur"]
        assert (p.labels.systolic_timing or "nan") == row["Systolic murmur timing"]
        seg = p.recordings[0].segmentation()
        assert {iv.state for iv in seg.intervals} >= {State.S1, State.S2}
        rec = p.recordings[0].load()
        assert rec.patient_id == p.patient_id and rec.site == "AV"


def test_flac_and_wav_layouts_read_alike(synth_root, tmp_path):
    from assistant.data.audio import Recording, load_recording, write_recording

    for path in synth_root.iterdir():
        if path.suffix == ".wav":
            r = load_recording(path)
            write_recording(tmp_path / f"{path.stem}.flac", Recording(r.samples, r.rate))
        else:
            shutil.copy(path, tmp_path / path.name)
    a, b = read_folder(synth_root), read_folder(tmp_path)
    assert [p.labels for p in a] == [p.labels for p in b]
    ra, rb = a[0].recordings[1].load(), b[0].recordings[1].load()
    assert rb.source.endswith(".flac")
    assert (ra.samples == rb.samples).all()


def test_inference_layout_has_no_labels(tmp_path):
    from assistant.data.synth import write_circor_folder

    write_circor_folder(tmp_path, n_patients=2, seed=3, duration=4.0, with_labels=False)
    patients = read_folder(tmp_path)
    assert len(patients) == 2
    assert all(p.labels is None and all(r.tsv_path is None for r in p.recordings) for p in patients)


def test_single_patient_folder_and_loose_files(synth_root, tmp_path):
    pid = read_folder(synth_root)[0].patient_id
    for f in synth_root.glob(f"{pid}*"):
        shutil.copy(f, tmp_path / f.name)
    [p] = read_folder(tmp_path)
    assert p.patient_id == pid and p.labels is not None
    (tmp_path / f"{pid}.txt").unlink()
    [loose] = read_folder(tmp_path)
    assert loose.patient_id == pid and loose.sites == ("AV", "MV", "PV", "TV") and loose.labels is None


def test_unlabelled_strips_labels(synth_root):
    p = read_folder(synth_root)[0]
    assert p.labels is not None and p.unlabelled().labels is None and p.unlabelled().recordings == p.recordings


def test_bad_folders(tmp_path):
    with pytest.raises(DatasetError):
        read_folder(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("hello\n")
    with pytest.raises(DatasetError):
        read_folder(tmp_path)
    (tmp_path / "123.txt").write_text("123 1 4000\nAV 123_AV.hea 123_AV.wav 123_AV.tsv\n")
    with pytest.raises(DatasetError, match="no audio file"):
        read_patient(tmp_path / "123.txt")


def test_tsv_round_trip(tmp_path):
    import numpy as np

    states = np.repeat([0, 1, 2, 3, 4, 1, 2, 3, 4, 0], [10, 6, 15, 5, 25, 6, 15, 5, 25, 8]).astype(np.int8)
    seg = Segmentation.from_states(states, 50)
    back = read_tsv(write_tsv(tmp_path / "x.tsv", seg))
    assert back == seg
    assert (back.states_at(50, len(states)) == states).all()
    (tmp_path / "bad.tsv").write_text("0 1 seven\n")
    with pytest.raises(DatasetError):
        read_tsv(tmp_path / "bad.tsv")


def test_split_is_deterministic_disjoint_and_stratified(synth_root):
    from assistant.data.circor import Patient
    from assistant.data.labels import PatientLabels

    patients = [Patient(str(i), (), labels=PatientLabels(murmur=MURMUR_CLASSES[i % 3])) for i in range(300)]
    a = split_patients(patients)
    b = split_patients(list(reversed(patients)))
    assert a == b
    assert not set(a.train) & set(a.val) and len(a.train) + len(a.val) == 300
    assert len(a.val) == 45
    by = {p.patient_id: p.labels.murmur for p in patients}
    for cls in MURMUR_CLASSES:
        assert sum(by[i] == cls for i in a.val) == 15
    assert split_patients(patients, SplitConfig(seed=1)) != a


@pytest.mark.realdata
def test_reads_circor_dev(circor_dev):
    patients = read_folder(circor_dev)
    assert len(patients) == 611
    assert sum(len(p.recordings) for p in patients) == 2038
    counts = {c: sum(p.labels.murmur == c for p in patients) for c in MURMUR_CLASSES}
    assert counts == {"Present": 116, "Unknown": 44, "Absent": 451}
    table = {r["Patient ID"]: r for r in csv.DictReader((circor_dev / "training_data.csv").open())}
    for p in patients:
        for key, vocab in FEATURES.items():
            value = p.labels.feature(key)
            assert value is None or value in vocab, (p.patient_id, key, value)
        assert (p.labels.most_audible_location or "nan") == table[p.patient_id]["Most audible location"]
    dup = next(p for p in patients if p.patient_id == "49748")
    assert [r.name for r in dup.recordings][:2] == ["49748_AV_1", "49748_AV_2"]
    split = split_patients(patients)
    assert len(split.val) == pytest.approx(0.15 * 611, abs=3)
