"""`eval device-ablation`: the cross-validated recipes' fold models on PhysioNet 2016 recordings, beside their
CirCor out-of-fold scores; and `eval classifier-cv --device-augment` naming its recipe."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from assistant.cli.main import app
from assistant.data.labels import FEATURES, MURMUR_CLASSES
from assistant.errors import MurmurScopeError
from assistant.murmur.encoders import CNNConfig
from assistant.murmur.heads import HeadConfig
from assistant.murmur.model import MurmurConfig, MurmurModel
from eval.cross_validation import OOFPatient, save_fold
from eval.cv_cnn import cnn_recipe_name
from eval.device_ablation import AwayCalls, RecipeReadout, ablation_rows, away_scores, markdown
from tests.test_eval_physionet2016 import write_physionet2016_folder

TINY_HEAD = HeadConfig(in_dim=16, d_model=32, layers=2, heads=4, ff_dim=64)


def test_away_scores_count_the_calls_and_rank_p_present():
    a = AwayCalls(("normal", "normal", "normal", "normal", "abnormal", "abnormal"),
                  ("Present", "Unknown", "Absent", "Absent", "Present", "Absent"),
                  (0.9, 0.2, 0.1, 0.3, 0.8, 0.4))
    s = away_scores(a)
    assert s["normal_Present"] == 0.25 and s["normal_Unknown"] == 0.25 and s["normal_Absent"] == 0.5
    assert s["abnormal_flagged"] == 0.5
    # abnormal 0.8 and 0.4 each beat 3 of the 4 normals (all but 0.9): 6 / 8.
    assert s["auroc"] == pytest.approx(6 / 8)


def test_rows_average_over_folds_and_the_table_prints_them():
    fold = {"normal_Present": 0.2, "normal_Unknown": 0.1, "normal_Absent": 0.7, "abnormal_flagged": 0.6, "auroc": 0.5}
    readouts = [RecipeReadout("cnn-a", {0: fold, 1: fold | {"normal_Present": 0.4, "auroc": 0.7}},
                              {k: {"wacc": 0.7, "uar": 0.6, "auroc": 0.8} for k in range(5)}, 10),
                RecipeReadout("cnn-b", {2: fold}, {2: {"wacc": 0.5, "uar": 0.5, "auroc": 0.5}}, 10)]
    rows = ablation_rows(readouts)
    assert rows[0]["away_folds"] == [0, 1] and rows[0]["home_folds"] == [0, 1, 2, 3, 4]
    assert rows[0]["away_normal_Present"][0] == pytest.approx(0.3) and rows[0]["away_auroc"][0] == pytest.approx(0.6)
    assert np.isnan(rows[1]["away_auroc"][1])  # one fold: no spread
    table = markdown(rows)
    lines = table.splitlines()
    assert len(lines) == 4 and lines[2].startswith("| cnn-a | 0,1 | 30.0% ± 14.1 |")
    assert "| 0.600 ± 0.141 | 0,1,2,3,4 | 0.700 ± 0.000 |" in lines[2]
    assert lines[3].startswith("| cnn-b | 2 | 20.0% | 10.0% | 70.0% | 60.0% | 0.500 | 2 | 0.500 |")


def _tiny_model(seed: int) -> MurmurModel:
    torch.manual_seed(seed)
    cnn = replace(CNNConfig(), channels=(8, 8, 8, 8), dim=TINY_HEAD.in_dim)
    return MurmurModel(MurmurConfig(head=TINY_HEAD, cnn=cnn, n_train={name: 30 for name in FEATURES}))


def _oof(pid: str, fold: int, truth: str, seed: int) -> OOFPatient:
    p = np.random.default_rng(seed).dirichlet(np.ones(3)).tolist()
    return OOFPatient(pid, fold, truth, p, MURMUR_CLASSES[int(np.argmax(p))])


def test_device_ablation_command_runs_each_fold_model_on_physionet(tmp_path):
    physionet = write_physionet2016_folder(tmp_path / "p2016", {"training-b": [1, -1, -1, 1, -1, -1]})
    recipe = tmp_path / "cv" / "cnn-current-1member-aug-noise"
    for k in (0, 1):
        _tiny_model(k).save(recipe / f"model{k}")
        save_fold(recipe / f"fold{k}.json",
                  [_oof(f"{k}{j}", k, MURMUR_CLASSES[j % 3], 10 * k + j) for j in range(9)], {"recipe": recipe.name})
    _tiny_model(2).save(recipe / "model2")  # a model whose fold never finished is not read
    (tmp_path / "cv" / "whisper-lp").mkdir()  # a recipe without fold models is left out
    out = tmp_path / "ablation.json"
    args = ["eval", "device-ablation", "--cv-root", str(tmp_path / "cv"), "--physionet-root", str(physionet)]
    result = CliRunner().invoke(app, [*args, "--folds", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "6 recordings" in result.output
    (row,) = [line for line in result.output.splitlines() if line.startswith(f"| {recipe.name} |")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "1" and cells[7] == "0,1"  # 2016 from fold 1's model; CirCor from both fold files
    shares = [float(c.rstrip("%")) for c in cells[2:5]]
    assert sum(shares) == pytest.approx(100.0, abs=0.2)  # every normal recording got one of the three calls
    assert 0.0 <= float(cells[6]) <= 1.0
    import json

    saved = json.loads(out.read_text())
    assert saved[0]["recipe"] == recipe.name and list(saved[0]["away"]) == ["1"]
    nothing = CliRunner().invoke(app, [*args, "--folds", "3"])
    assert nothing.exit_code != 0 and isinstance(nothing.exception, MurmurScopeError)
    assert "no recipe has a finished fold" in str(nothing.exception)


def test_augmented_cv_recipes_are_named_by_their_parts():
    assert cnn_recipe_name(1) == "cnn-current-1member"
    assert cnn_recipe_name(5) == "cnn-current"
    assert cnn_recipe_name(1, ("response", "level", "noise")) == "cnn-current-1member-aug-response+level+noise"


def test_classifier_cv_refuses_unknown_augmentation_parts(synth_root, tmp_path):
    base = ["eval", "classifier-cv", "--circor-root", str(synth_root), "--out", str(tmp_path / "cv"), "--cv", "2"]
    result = CliRunner().invoke(app, [*base, "--recipe", "cnn", "--cnn-members", "1", "--device-augment", "reverb"])
    assert result.exit_code != 0 and "--device-augment" in str(result.exception)
    result = CliRunner().invoke(app, [*base, "--recipe", "whisper-lp", "--device-augment", "noise"])
    assert result.exit_code != 0 and "--recipe cnn" in str(result.exception)
    assert not (tmp_path / "cv").exists()


def test_the_murmur_call_alone_matches_the_full_prediction():
    from assistant.data.synth import Murmur, SynthConfig, synthesize

    model = _tiny_model(3)
    rec = replace(synthesize(SynthConfig(duration=4.0, murmurs=(Murmur(),), seed=2)).recording, source="/x/7_AV.wav")
    full = model.predict_recordings([rec], "7")
    alone = model.predict_from_embeddings("7", [model.embed(rec)], [rec.site], ["7_AV"], [], features=False)
    assert alone.murmur == full.murmur and alone.probabilities == pytest.approx(full.probabilities)
    assert alone.features == {} and full.features
