from __future__ import annotations

import argparse
import csv
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from assistant.cli.main import app
from assistant.data.audio import Recording, write_recording
from assistant.data.labels import FEATURES, MURMUR_CLASSES, PREDICTION_COLUMNS
from assistant.data.synth import write_circor_folder
from assistant.errors import MurmurScopeError
from assistant.murmur.encoders import CNNConfig
from assistant.murmur.heads import TOKENS, HeadConfig, MultiSiteHead
from assistant.murmur.m2d import M2DCheckpointError, M2DConfig, M2DViT, load_m2d
from assistant.murmur.model import MurmurConfig, MurmurModel, any_recording_rule, site_tokens
from finetune.losses import LossConfig, distill_loss, focal_loss, head_loss, spec_augment_tokens

TINY_HEAD = HeadConfig(in_dim=16, d_model=32, layers=2, heads=4, ff_dim=64)


def test_head_shapes_and_missing_sites_are_ignored():
    torch.manual_seed(0)
    head = MultiSiteHead(TINY_HEAD).eval()
    x = torch.randn(2, len(TOKENS), 16)
    mask = torch.tensor([[True, False, True, True, False], [False, False, False, True, False]])
    out = head(x, mask)
    assert out.logits.shape == (2, 3)
    assert out.head_logits.shape == (3, 2, 3)
    assert out.site_logits.shape == (2, len(TOKENS), 3)
    assert torch.all(out.site_weights[~mask] == 0)
    assert torch.allclose(out.site_weights.sum(1), torch.ones(2))
    # Whatever sits in a missing site's slot must not matter.
    y = x.clone()
    y[~mask] = 100.0
    assert torch.allclose(head(y, mask).logits, out.logits, atol=1e-5)
    # ...but a present site's content does.
    y[0, 0] += torch.randn(16)
    assert not torch.allclose(head(y, mask).logits[0], out.logits[0])


def test_site_tokens_average_recordings_of_a_site():
    e = [torch.ones(4), 3 * torch.ones(4), 5 * torch.ones(4)]
    tokens, mask = site_tokens(e, ["AV", "AV", None])
    assert mask.tolist() == [True, False, False, False, True]
    assert torch.allclose(tokens[0], 2 * torch.ones(4)) and torch.allclose(tokens[4], 5 * torch.ones(4))
    assert torch.all(tokens[1] == 0)


def test_focal_loss_reduces_to_cross_entropy_and_down_weights_easy_examples():
    logits = torch.tensor([[4.0, 0.0, 0.0], [0.0, 0.5, 0.0]])
    target = torch.tensor([0, 2])
    ce = torch.nn.functional.cross_entropy(logits, target)
    assert torch.allclose(focal_loss(logits, target, gamma=0.0, smoothing=0.0), ce)
    assert focal_loss(logits, target, gamma=2.0, smoothing=0.0) < ce
    smoothed = torch.nn.functional.cross_entropy(logits, target, label_smoothing=0.1)
    assert torch.allclose(focal_loss(logits, target, gamma=0.0, smoothing=0.1), smoothed)
    w = torch.tensor([1.0, 1.0, 0.0])  # zero weight on class 2 leaves only the first example
    assert torch.allclose(focal_loss(logits, target, 0.0, 0.0, w),
                          torch.nn.functional.cross_entropy(logits[:1], target[:1]))


def test_distillation_loss_is_zero_for_agreeing_heads_and_positive_otherwise():
    same = torch.randn(1, 4, 3).repeat(3, 1, 1)
    assert distill_loss(same).abs() < 1e-6
    assert distill_loss(torch.randn(3, 4, 3) * 3) > 0.01


def test_head_loss_combines_its_terms():
    torch.manual_seed(1)
    head = MultiSiteHead(TINY_HEAD)
    x = torch.randn(4, len(TOKENS), 16)
    mask = torch.ones(4, len(TOKENS), dtype=torch.bool)
    mask[0, 2:] = False
    cfg = LossConfig(alpha=0.7, recording_weight=0.5)
    parts = head_loss(head(x, mask), torch.tensor([0, 1, 2, 2]), torch.zeros(4, len(TOKENS), dtype=torch.long),
                      mask, cfg)
    expected = 0.7 * parts["main"] + 0.3 * parts["distill"] + 0.5 * parts["site"]
    assert torch.allclose(parts["total"], expected)
    parts["total"].backward()
    assert head.proj.weight.grad is not None and head.proj.weight.grad.abs().sum() > 0


def test_spec_augment_tokens_masks_a_band_and_keeps_a_site():
    g = torch.Generator().manual_seed(0)
    x = torch.ones(64, len(TOKENS), 40)
    mask = torch.zeros(64, len(TOKENS), dtype=torch.bool)
    mask[:, 1] = True
    y, m = spec_augment_tokens(x, mask, feature_width=0.2, drop_site=0.9, generator=g)
    assert torch.equal(m, mask)  # the only present site is never dropped
    assert (y == 0).any() and (y == 1).any()
    assert ((y == 0).sum(-1) <= 8).all()


def test_any_recording_rule():
    p, u, a = ({"Present": 0.6, "Unknown": 0.1, "Absent": 0.3}, {"Present": 0.2, "Unknown": 0.5, "Absent": 0.3},
               {"Present": 0.1, "Unknown": 0.1, "Absent": 0.8})
    assert any_recording_rule([a, u, p])[0] == "Present"
    assert any_recording_rule([a, u])[0] == "Unknown"
    assert any_recording_rule([a, a]) == ("Absent", a)


def _official_checkpoint(folder: Path, config: M2DConfig, prefix: str = "", wrap: bool = True) -> tuple[Path, dict]:
    torch.manual_seed(0)
    vit = M2DViT(config)
    torch.nn.init.normal_(vit.pos_embed, std=0.02)
    state = {prefix + k: v.clone() for k, v in vit.state_dict().items()}
    # The pre-training checkpoint also holds the target encoder and the decoder; the loader drops them.
    state["target_blocks.0.norm1.weight"] = torch.ones(config.embed_dim)
    state["decoder_embed.weight"] = torch.zeros(512, config.embed_dim)
    state["mask_token"] = torch.zeros(1, 1, 512)
    folder.mkdir(parents=True)
    path = folder / "checkpoint-300.pth"
    payload = {"model": state, "epoch": 300, "args": argparse.Namespace(model="m2d_vit_base"),
               "norm_stats": [-6.5, 4.0]} if wrap else state
    torch.save(payload, path)
    return path, vit.state_dict()


@pytest.mark.slow
def test_m2d_loader_reads_the_official_layout(tmp_path):
    """The full-size ViT-Base (85 M random parameters, ~350 MB on disk): slow only for its size."""
    path, reference = _official_checkpoint(tmp_path / "m2d_vit_base-80x608p16x16-221006-mr7", M2DConfig())
    encoder = load_m2d(path)
    assert encoder.config.depth == 12 and encoder.config.embed_dim == 768 and encoder.config.grid == (5, 38)
    assert (encoder.config.norm_mean, encoder.config.norm_std) == (-6.5, 4.0)
    for k, v in encoder.backbone.state_dict().items():
        assert torch.equal(v, reference[k]), k
    with torch.inference_mode():
        frames = encoder.frames(torch.randn(1, 16000 * 2) * 0.1)
    assert frames.shape == (1, 13, 3840)  # 201 mel frames -> 13 patches of 16 (padded), 5 x 768 per step
    assert encoder.clip(torch.randn(2, 16000) * 0.1).shape == (2, 3840)


def test_m2d_loader_evar_prefix_and_bad_files(tmp_path):
    tiny = M2DConfig(embed_dim=64, depth=2, num_heads=1)
    path, _ = _official_checkpoint(tmp_path / "m2d_vit_base-80x608p16x16-evar", tiny,
                                   prefix="module.ar.runtime.backbone.", wrap=False)
    encoder = load_m2d(path)
    assert encoder.config.depth == 2 and encoder.dim == 5 * 64
    bad = tmp_path / "m2d_vit_base-80x608p16x16-x" / "junk.pth"
    bad.parent.mkdir()
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(M2DCheckpointError):
        load_m2d(bad)
    with pytest.raises(M2DCheckpointError):
        load_m2d(path, name="resnet50")


def test_murmur_model_runs_on_the_m2d_encoder(tmp_path):
    tiny = M2DConfig(embed_dim=64, depth=1, num_heads=1)
    path, _ = _official_checkpoint(tmp_path / "m2d_vit_base-80x608p16x16-t", tiny)
    config = MurmurConfig(encoder="m2d", m2d_checkpoint=str(path), head=replace(TINY_HEAD, in_dim=320))
    model = MurmurModel(config)
    model.save(tmp_path / "model")
    loaded = MurmurModel.load(tmp_path / "model")
    rng = np.random.default_rng(0)
    recs = [Recording((rng.standard_normal(4000 * 3) * 0.1).astype(np.float32), 4000, site, "1", f"/x/1_{site}.wav")
            for site in ("AV", "MV")]
    pred = loaded.predict_recordings(recs, "1")
    assert pred.murmur in MURMUR_CLASSES and abs(sum(pred.probabilities.values()) - 1) < 1e-5
    assert [r.name for r in pred.recordings] == ["1_AV", "1_MV"]


@pytest.fixture(scope="module")
def random_model_dir(tmp_path_factory) -> Path:
    """An untrained CNN model: enough for the CSV contract, which must hold whatever the weights."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("model")
    MurmurModel(MurmurConfig(n_train={name: 30 for name in FEATURES})).save(folder)
    return folder


def test_model_saved_with_the_old_decision_name_loads(tmp_path, random_model_dir):
    from assistant.data.synth import SynthConfig, synthesize

    folder = tmp_path / "model"
    shutil.copytree(random_model_dir, folder)
    config = json.loads((folder / "murmur.json").read_text())
    (folder / "murmur.json").write_text(json.dumps({**config, "decision": "niizumi"}))  # the rule's earlier name
    model = MurmurModel.load(folder)
    assert model.config.decision == "any_recording"
    recordings = [replace(synthesize(SynthConfig(duration=4.0, seed=s)).recording, site=site)
                  for s, site in ((1, "AV"), (2, "MV"))]
    pred = model.predict_recordings(recordings, "1")
    assert (pred.murmur, pred.probabilities) == any_recording_rule([r.probabilities for r in pred.recordings])


def _read_csv(path: Path) -> tuple[list[str], list[dict]]:
    with path.open() as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames), list(reader)


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_predict_csv_contract(tmp_path, random_model_dir, suffix):
    labelled, unlabelled = tmp_path / "labelled", tmp_path / "unlabelled"
    write_circor_folder(labelled, n_patients=3, seed=4, suffix=suffix, duration=5.0)
    write_circor_folder(unlabelled, n_patients=3, seed=4, suffix=suffix, duration=5.0, with_labels=False)
    runner = CliRunner()
    outs = []
    for folder in (labelled, unlabelled):
        out = tmp_path / f"{folder.name}.csv"
        result = runner.invoke(app, ["predict", str(folder), "--out", str(out), "--model", str(random_model_dir)])
        assert result.exit_code == 0, result.output
        outs.append(out)
    header, rows = _read_csv(outs[0])
    assert header == list(PREDICTION_COLUMNS)
    assert len(rows) == 3
    for row in rows:
        assert row["murmur"] in MURMUR_CLASSES
        assert abs(sum(float(row[k]) for k in ("p_present", "p_unknown", "p_absent")) - 1) < 1e-3
        for name, vocab in FEATURES.items():
            if row["murmur"] != "Present" or name.startswith("diastolic"):
                assert row[name] == "" or (row["murmur"] == "Present" and row[name] in vocab)
            else:
                assert row[name] in vocab
    assert outs[0].read_text() == outs[1].read_text()  # labels are never read
    again = runner.invoke(app, ["predict", str(labelled), "--out", str(outs[0]), "--model", str(random_model_dir)])
    assert again.exit_code != 0 and isinstance(again.exception, MurmurScopeError)
    assert "--force" in str(again.exception)


def test_predict_patient_without_usable_recordings_is_unknown(tmp_path, random_model_dir):
    write_circor_folder(tmp_path / "data", n_patients=2, seed=5, duration=5.0, with_labels=False)
    silent = sorted((tmp_path / "data").glob("15000_*.wav"))
    for f in silent:
        write_recording(f, Recording(np.zeros(4000 * 5, dtype=np.float32), 4000))
    out = tmp_path / "pred.csv"
    result = CliRunner().invoke(app, ["predict", str(tmp_path / "data"), "--out", str(out),
                                      "--model", str(random_model_dir)])
    assert result.exit_code == 0, result.output
    assert "no usable recording" in result.output
    rows = {r["patient_id"]: r for r in _read_csv(out)[1]}
    assert rows["15000"]["murmur"] == "Unknown" and all(rows["15000"][f] == "" for f in FEATURES)
    assert rows["15001"]["murmur"] in MURMUR_CLASSES


def test_shipped_model_loads_and_predicts(synth_root):
    from assistant.data.circor import read_folder

    model = MurmurModel.load()
    pred = model.predict_patient(read_folder(synth_root)[0])
    assert set(pred.probabilities) == set(MURMUR_CLASSES)
    assert set(pred.features) == set(FEATURES)
    assert pred.features["diastolic_timing"].low_confidence and pred.features["diastolic_timing"].n_train < 5
    assert not pred.features["systolic_timing"].low_confidence


@pytest.mark.slow
def test_training_on_synthetic_patients_learns(tmp_path):
    from assistant.data.circor import read_folder
    from finetune.classifier import ClassifierTrainConfig, train_classifier

    write_circor_folder(tmp_path / "train", n_patients=48, seed=11, duration=6.0)
    write_circor_folder(tmp_path / "test", n_patients=24, seed=12, duration=6.0)
    cfg = ClassifierTrainConfig(circor_root=tmp_path / "train", out=tmp_path / "model", cache_dir=tmp_path / "cache",
                                encoder_epochs=6, encoder_patience=6, head_epochs=40, head_patience=40,
                                feature_epochs=30, views=2, view_seconds=3.0, crop_seconds=3.0, members=2, workers=2,
                                progress=False)
    log = train_classifier(cfg)
    assert log["feature_cv"]["chosen_input"] in ("embedding", "cycle", "both")  # chosen by CV inside training
    assert [m["seed"] for m in log["members"]] == [0, 1000]
    model = MurmurModel.load(tmp_path / "model")
    assert len(model.encoders) == len(model.heads) == len(model.features) == 2
    patients = read_folder(tmp_path / "test")
    hits = [model.predict_patient(p).murmur == p.labels.murmur for p in patients]
    assert np.mean(hits) >= 0.7  # chance is 1/3 for balanced calls; the Absent-majority baseline 0.5


@pytest.mark.parametrize("feature_input", ["cycle", "both"])
def test_feature_heads_on_cycle_features(tmp_path, feature_input):
    from assistant.data.synth import Murmur, SynthConfig, synthesize

    torch.manual_seed(0)
    config = MurmurConfig(head=TINY_HEAD, cnn=replace(CNNConfig(), channels=(16, 16, 16, 16), dim=TINY_HEAD.in_dim),
                          feature_input=feature_input, n_train={name: 30 for name in FEATURES})
    model = MurmurModel(config)
    assert model.features[0].norm.normalized_shape[0] == config.feature_dim
    model.cycle_mean.fill_(-3.0)  # the standardisation must survive save / load
    model.save(tmp_path / "model")
    loaded = MurmurModel.load(tmp_path / "model")
    assert loaded.config.feature_input == feature_input and float(loaded.cycle_mean[0]) == -3.0
    pcg = synthesize(SynthConfig(duration=8.0, murmurs=(Murmur(),), seed=1))
    rec = replace(pcg.recording, site="MV", source="/x/9_MV.wav")
    silent_cycles = Recording(np.full(4000 * 3, 0.01, dtype=np.float32), 4000, "AV", "9", "/x/9_AV.wav")
    vec = loaded.cycle_features(rec)
    assert vec.shape == (config.cycle.dim,) and float(vec[-1]) == 1.0  # the segmenter found cycles
    assert not loaded.cycle_features(silent_cycles).any()  # no cycles: all zeros, the flag off
    pred = loaded.predict_recordings([rec, silent_cycles], "9")
    assert set(pred.features) == set(FEATURES)
    with pytest.raises(ValueError, match="cycle_features"):
        loaded.predict_from_embeddings("9", [loaded.embed(rec)], ["MV"], ["9_MV"], [])


def test_ensemble_logits_average_member_probabilities():
    from assistant.murmur.model import ensemble_logits

    member_logits = torch.tensor([[[2.0, 0.0, -1.0]], [[-1.0, 0.5, 3.0]]])
    expected = member_logits.softmax(-1).mean(0)
    assert torch.allclose(ensemble_logits(member_logits).exp(), expected, atol=1e-6)
    assert torch.allclose(ensemble_logits(member_logits[:1]), member_logits[0].log_softmax(-1))


def test_ensemble_model_round_trips_in_half_precision(tmp_path):
    from safetensors.torch import load_file

    torch.manual_seed(0)
    cnn = replace(CNNConfig(), channels=(16, 16, 16, 16), dim=TINY_HEAD.in_dim)
    model = MurmurModel(MurmurConfig(head=TINY_HEAD, cnn=cnn, members=3, n_train={name: 30 for name in FEATURES}))
    assert len(model.encoders) == len(model.heads) == len(model.features) == 3
    model.save(tmp_path / "model")
    stored = load_file(str(tmp_path / "model" / "murmur.safetensors"))
    assert {v.dtype for v in stored.values() if v.is_floating_point()} == {torch.float16}
    assert any(k.startswith("heads.2.") for k in stored)
    loaded = MurmurModel.load(tmp_path / "model")
    rng = np.random.default_rng(1)
    recs = [Recording((rng.standard_normal(4000 * 4) * 0.1).astype(np.float32), 4000, site, "7", f"/x/7_{site}.wav")
            for site in ("AV", "PV", "MV")]
    a, b = model.predict_recordings(recs, "7"), loaded.predict_recordings(recs, "7")
    assert all(abs(a.probabilities[c] - b.probabilities[c]) < 0.02 for c in MURMUR_CLASSES)
    assert loaded.embed(recs[0]).shape == (3, TINY_HEAD.in_dim)
    with pytest.raises(MurmurScopeError, match="members"):
        MurmurModel(MurmurConfig(members=0))


def test_each_member_keeps_its_head_patients_out_of_its_encoder(tmp_path):
    from finetune.classifier import ClassifierTrainConfig, Data, stage_patients

    write_circor_folder(tmp_path / "data", n_patients=40, seed=3, duration=2.0)
    config = ClassifierTrainConfig(circor_root=tmp_path / "data", out=tmp_path / "out", head_fraction=0.5)
    data = Data(config)
    training = {p.patient_id for p in data.patients} - data.val_ids
    encoder, head = stage_patients(data, config)
    assert encoder | head == training and not encoder & head and abs(len(head) - len(training) / 2) <= 2
    assert stage_patients(data, config) == (encoder, head)  # seeded
    assert stage_patients(data, replace(config, seed=1000)) != (encoder, head)  # another member, another split
    assert stage_patients(data, replace(config, head_fraction=0.0)) == (training, training)


@pytest.mark.parametrize("option", [["--members", "0"], ["--head-fraction", "1.0"], ["--head-fraction", "-0.1"]])
def test_classifier_training_refuses_bad_ensemble_options(tmp_path, option):
    result = CliRunner().invoke(app, ["finetune", "classifier", "--circor-root", str(tmp_path),
                                      "--out", str(tmp_path / "model"), *option])
    assert result.exit_code != 0 and isinstance(result.exception, MurmurScopeError)
    assert option[0] in str(result.exception)
    assert not (tmp_path / "model").exists()
