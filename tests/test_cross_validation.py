"""Patient-level folds, the OOF scoring, and the linear probe on generated patients."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from assistant.data.circor import read_folder
from assistant.data.labels import MURMUR_CLASSES
from assistant.data.split import fold_patients
from eval.cross_validation import CVConfig, OOFPatient, decide, load_recipe, murmur_table, save_fold, summarise
from eval.cv_probe import ProbeConfig, recording_label, run_probe


def test_folds_partition_the_patients_and_keep_the_strata(synth_root):
    patients = read_folder(synth_root)
    splits = fold_patients(patients, folds=4, seed=0)
    held = [pid for s in splits for pid in s.val]
    assert sorted(held) == sorted(p.patient_id for p in patients)  # each patient held out exactly once
    for s in splits:
        assert not set(s.train) & set(s.val)
        assert len(s.train) + len(s.val) == len(patients)
    sizes = [len(s.val) for s in splits]
    assert max(sizes) - min(sizes) <= 1
    assert fold_patients(list(reversed(patients)), folds=4, seed=0) == splits  # independent of file order
    with pytest.raises(ValueError):
        fold_patients(patients, folds=1)


def test_fold_strata_are_spread(synth_root):
    from assistant.data.split import _stratum

    patients = read_folder(synth_root)
    splits = fold_patients(patients, folds=2, seed=3)
    by_id = {p.patient_id: p for p in patients}
    for stratum, n in Counter(_stratum(p) for p in patients).items():
        per_fold = [sum(_stratum(by_id[pid]) == stratum for pid in s.val) for s in splits]
        assert max(per_fold) - min(per_fold) <= 1, (stratum, per_fold)


def _row(pid: str, fold: int, truth: str, probs: list[float]) -> OOFPatient:
    return OOFPatient(pid, fold, truth, probs, MURMUR_CLASSES[int(np.argmax(probs))])


def test_scores_per_fold_and_decision_rules(tmp_path):
    # Present, Unknown, Absent order. Fold 0 perfect; fold 1 calls one Present patient Absent by argmax,
    # which the cost rule (5 x 0.3 > 1 x 0.5) turns back into Present.
    rows0 = [_row("a", 0, "Present", [0.8, 0.1, 0.1]), _row("b", 0, "Absent", [0.1, 0.1, 0.8]),
             _row("c", 0, "Unknown", [0.1, 0.8, 0.1])]
    rows1 = [_row("d", 1, "Present", [0.3, 0.2, 0.5]), _row("e", 1, "Absent", [0.05, 0.05, 0.9]),
             _row("f", 1, "Unknown", [0.1, 0.7, 0.2])]
    save_fold(tmp_path / "r" / "fold0.json", rows0, {"minutes": 1.0})
    save_fold(tmp_path / "r" / "fold1.json", rows1, {"minutes": 2.0})
    rows, infos = load_recipe(tmp_path / "r")
    assert len(rows) == 6 and set(infos) == {0, 1}
    own = murmur_table(rows)
    assert own[0]["wacc"] == 1.0 and own[0]["uar"] == 1.0
    assert own[1]["wacc"] == pytest.approx(4 / 9) and own[1]["uar"] == pytest.approx(2 / 3)
    assert murmur_table(rows, "cost")[1]["wacc"] == 1.0
    assert decide(np.array([[0.3, 0.2, 0.5]]), "argmax") == ["Absent"]
    mean, std = summarise(own)["wacc"]
    assert mean == pytest.approx((1 + 4 / 9) / 2) and std > 0


@pytest.mark.slow
def test_probe_learns_a_separable_signal(synth_root, tmp_path):
    """Embeddings that carry the recording label: the probe's OOF calls must beat chance clearly."""
    patients = read_folder(synth_root)
    rng = np.random.default_rng(0)
    embeddings = {}
    for p in patients:
        for r in p.recordings:
            x = rng.standard_normal((5, 6, 3)).astype(np.float32)  # 16 training rows: no room for noise dims
            x[:, :, recording_label(p, r.site)] += 3.0
            embeddings[r.name] = x.astype(np.float16)
    config = CVConfig(synth_root, out=tmp_path, folds=2)
    splits = fold_patients(patients, 2, config.seed)
    name = run_probe(config, ProbeConfig(depth=-1, c=1.0, inner_folds=2), embeddings, patients, splits, "toy")
    rows, _ = load_recipe(tmp_path / name)
    assert len(rows) == len(patients)
    # Eight patients leave the patient-level stacker next to nothing to learn from; the recording probe must.
    # (Scored where the fold's training patients hold the label at all: with 8 patients, not always.)
    by_id = {p.patient_id: p for p in patients}
    seen = [{recording_label(by_id[pid], r.site) for pid in s.train for r in by_id[pid].recordings} for s in splits]
    scored = [(int(np.argmax(probs)), y) for r in rows for probs, site in zip(r.recording_probabilities,
                                                                               r.recording_sites)
              if (y := recording_label(by_id[r.patient_id], site)) in seen[r.fold]]
    assert len(scored) >= 16
    assert np.mean([a == y for a, y in scored]) >= 0.9
    assert all(abs(sum(r.probabilities) - 1) < 1e-6 for r in rows)
    assert Path(tmp_path / name / "fold1.json").is_file()


def test_cv_command_prints_the_tables_from_fold_files_and_refuses_bad_input(synth_root, tmp_path):
    from typer.testing import CliRunner

    from assistant.cli.main import app
    from assistant.errors import MurmurScopeError

    base = ["eval", "classifier-cv", "--circor-root", str(synth_root), "--out", str(tmp_path), "--cv", "2"]
    empty = CliRunner().invoke(app, base)
    assert isinstance(empty.exception, MurmurScopeError) and "no finished folds" in str(empty.exception)
    bad = CliRunner().invoke(app, [*base, "--recipe", "gpt"])
    assert isinstance(bad.exception, MurmurScopeError)
    patients = read_folder(synth_root)
    for k, split in enumerate(fold_patients(patients, 2, 2022)):
        rows = [_row(p.patient_id, k, p.labels.murmur, [0.6, 0.2, 0.2]) for p in patients if p.patient_id in split.val]
        save_fold(tmp_path / "always-present" / f"fold{k}.json", rows, {"minutes": 0.5})
    result = CliRunner().invoke(app, [*base, "--plot", str(tmp_path / "cv.png"), "--study-plot",
                                      str(tmp_path / "study.png")])
    assert result.exit_code == 0, result.output
    own = result.output.split("## Every decision rule")[0]
    assert "| always-present | own | 2/2 |" in own and "oof-vector" not in own
    assert (tmp_path / "study.png").read_bytes()[:4] == b"\x89PNG"
    assert any(line.startswith("| always-present | ") and line.count("/2)") + line.count(" - ") == 6
               for line in result.output.splitlines())  # the one-line feature summary (no feature heads)
    assert "| always-present | own | 2/2 |" in result.output
    assert "| always-present | oof-temperature | 2/2 |" in result.output
    assert "| always-present | oof-vector | 2/2 |" in result.output
    assert (tmp_path / "cv.png").read_bytes()[:4] == b"\x89PNG"
    assert "always-present: 2 folds, 1.0 min in all" in result.output
    assert "always-present: pooled OOF ECE" in result.output


def test_the_ece_floor_is_what_a_perfectly_calibrated_model_scores():
    from eval.cross_validation import ece_floor
    from eval.metrics import calibration_bins

    rng = np.random.default_rng(5)
    probs = rng.dirichlet([2, 1, 3], size=600)
    truth = [MURMUR_CLASSES[rng.choice(3, p=p)] for p in probs]  # calibrated by construction
    rows = [OOFPatient(f"p{i}", i % 5, t, list(p), MURMUR_CLASSES[int(np.argmax(p))])
            for i, (p, t) in enumerate(zip(probs, truth))]
    floor = ece_floor(rows, draws=100)
    lo, mid, hi = floor["pooled"]
    assert 0 < lo < mid < hi < 0.1
    assert floor["per_fold"][1] > mid  # 120 patients per fold: more binning noise than 600 pooled
    assert lo <= calibration_bins(truth, probs, MURMUR_CLASSES)["ece"] <= hi
