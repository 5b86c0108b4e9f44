"""The Whisper feature reader (assistant/murmur/whisper_features.py), the murmur model's use of it, and the
command that trains it (finetune/whisper_features.py), on a small random Whisper and generated heart sounds."""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from typer.testing import CliRunner

from assistant.cli.main import app
from assistant.data.circor import read_folder
from assistant.data.labels import FEATURES, MURMUR_CLASSES
from assistant.data.synth import Murmur, SynthConfig, synthesize, write_circor_folder
from assistant.errors import MurmurScopeError
from assistant.murmur.encoders import CNNConfig
from assistant.murmur.heads import HeadConfig
from assistant.murmur.model import WEIGHTS_DIR, MurmurConfig, MurmurModel
from assistant.murmur.whisper import load_whisper
from assistant.murmur.whisper_features import (
    PROBES_NAME,
    READER_DIR,
    READER_SOURCE,
    FeatureReaderError,
    ReaderConfig,
    WhisperFeatureReader,
)
from eval.predictors import ClassifierPredictor
from finetune.whisper_features import CHOSEN, export

TINY_HEAD = HeadConfig(in_dim=16, d_model=32, layers=2, heads=4, ff_dim=64)


def _whisper_config():
    from transformers import WhisperConfig

    return WhisperConfig(vocab_size=64, pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
                         suppress_tokens=[], begin_suppress_tokens=[], num_mel_bins=80, d_model=64,
                         encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=128, max_source_positions=1500,
                         decoder_layers=1, decoder_attention_heads=4, decoder_ffn_dim=128, max_target_positions=32)


@pytest.fixture(scope="module")
def small_whisper(tmp_path_factory):
    """A whole random Whisper (what `convert-whisper` writes) at width 64 and 2 layers."""
    from transformers import WhisperModel

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("whisper") / "small"
    WhisperModel(_whisper_config()).save_pretrained(folder)
    return folder


def _fitted(x: np.ndarray, y: np.ndarray):
    return make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000)).fit(x, y)


def _recordings(n: int = 3, murmur: bool = True):
    return [replace(synthesize(SynthConfig(duration=5.0, seed=s, murmurs=(Murmur(),) if murmur else (),
                                           murmur_gain=3.0)).recording, site=site)
            for s, site in zip(range(n), ("AV", "PV", "MV"))]


@pytest.fixture(scope="module")
def reader(small_whisper):
    """A reader on the small encoder (rounded to float16, as saved) with probes fitted on random vectors."""
    encoder = load_whisper(small_whisper)
    encoder.encoder.half().float()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 2 * encoder.dim))
    probes = {name: export(_fitted(x, rng.integers(0, len(FEATURES[name]), len(x))), len(FEATURES[name]))
              for name in CHOSEN}
    recording = export(_fitted(x, rng.integers(0, len(MURMUR_CLASSES), len(x))), len(MURMUR_CLASSES))
    return WhisperFeatureReader(encoder, recording, probes, ReaderConfig(features=CHOSEN, seconds=3.0,
                                                                         n_train={n: 40 for n in CHOSEN}))


def test_an_exported_probe_gives_scikit_learns_probabilities():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 6))
    many = _fitted(x, rng.choice([0, 2, 3], len(x)))  # class 1 never seen: probability 0
    p = export(many, 4).probabilities(x)
    assert np.allclose(p[:, [0, 2, 3]], many.predict_proba(x), atol=1e-9) and np.all(p[:, 1] == 0)
    two = _fitted(x, rng.choice([1, 2], len(x)))  # binary: one row of coefficients
    assert np.allclose(export(two, 3).probabilities(x)[:, [1, 2]], two.predict_proba(x), atol=1e-9)


def test_reader_round_trips_and_band_limits_what_it_hears(reader, tmp_path):
    recs = _recordings()
    vectors = [reader.vector(r) for r in recs]
    assert vectors[0].shape == (2 * reader.encoder.dim,)
    # Every recording passes CirCor's 4 kHz first: a 5 kHz tone (a 44.1 kHz stethoscope's hiss, say) never
    # reaches the encoder, which it would otherwise change.
    wide = recs[0].resampled(16000)
    toned = replace(wide, samples=wide.samples + 0.2 * np.sin(2 * np.pi * 5000 * np.arange(len(wide.samples)) / 16000
                                                               ).astype(np.float32))
    unlimited = WhisperFeatureReader(reader.encoder, reader.recording, reader.features,
                                     replace(reader.config, band_rate=16000))
    kept = np.abs(reader.vector(toned) - vectors[0]).max()
    assert kept < 0.1 * np.abs(unlimited.vector(toned) - unlimited.vector(wide)).max()
    read = reader.read(vectors)
    assert set(read) == set(CHOSEN)
    for name, probs in read.items():
        assert tuple(probs) == tuple(FEATURES[name]) and abs(sum(probs.values()) - 1) < 1e-9
    reader.save(tmp_path / "r")
    loaded = WhisperFeatureReader.load(tmp_path / "r")
    assert loaded.config == reader.config
    again = loaded.read([loaded.vector(r) for r in recs])
    for name in CHOSEN:
        assert np.allclose(list(again[name].values()), list(read[name].values()), atol=1e-6)
    assert WhisperFeatureReader.load(tmp_path / "nothing") is None
    (tmp_path / "r" / PROBES_NAME).write_bytes(b"not safetensors")
    with pytest.raises(FeatureReaderError, match="not a Whisper feature reader"):
        WhisperFeatureReader.load(tmp_path / "r")


def test_the_murmur_model_takes_the_readers_features_and_its_heads_the_rest(reader):
    torch.manual_seed(0)
    cnn = replace(CNNConfig(), channels=(16, 16, 16, 16), dim=TINY_HEAD.in_dim)
    model = MurmurModel(MurmurConfig(head=TINY_HEAD, cnn=cnn, n_train={name: 30 for name in FEATURES}))
    recs = _recordings()
    plain = model.predict_recordings(recs, "1")
    model.feature_reader = reader
    pred = model.predict_recordings(recs, "1")
    expected = reader.read([reader.vector(r) for r in recs])
    assert pred.murmur == plain.murmur and pred.probabilities == plain.probabilities
    for name in FEATURES:
        if name in CHOSEN:
            assert pred.features[name].probabilities == expected[name]
            assert pred.features[name].n_train == 40 and pred.features[name].source == READER_SOURCE
            assert pred.features[name].probabilities != plain.features[name].probabilities
        else:
            assert pred.features[name] == plain.features[name]


def test_a_shipped_feature_reader_is_beside_the_shipped_murmur_model(analyzer):
    model = MurmurModel.load()
    r = model.feature_reader
    assert r is not None and set(r.features) == set(CHOSEN) and r.config.depth == 2
    assert r.encoder.dim == 384 and len(r.encoder.encoder.layers) == 4  # Whisper tiny.en, fine-tuned
    assert all(n >= 100 for n in r.config.n_train.values())
    assert r.config.training["patients"] == 611
    findings = analyzer.analyze(_recordings(), patient_id="1")  # what the API, the app and the reports show
    assert {n for n, f in findings.features.items() if f.source == READER_SOURCE} == set(CHOSEN)


@pytest.mark.slow
def test_training_command_writes_a_reader_the_murmur_model_loads(small_whisper, tmp_path):
    root = tmp_path / "circor"
    write_circor_folder(root, n_patients=24, seed=4, duration=4.0)
    out = tmp_path / "model" / READER_DIR
    args = ["finetune", "whisper-features", "--circor-root", str(root), "--out", str(out), "--whisper",
            str(small_whisper), "--work-dir", str(tmp_path / "work"), "--seconds", "3", "--ft-epochs", "1",
            "--ft-batch-size", "8", "--no-progress"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "systolic_timing, systolic_shape, systolic_pitch, systolic_quality" in result.output
    for name in ("config.json", "model.safetensors", PROBES_NAME, "reader.json"):
        assert (out / name).is_file()
    tuned = load_whisper(out)  # the encoder alone, fine-tuned: not the one it started from
    base = load_whisper(small_whisper)
    assert not torch.allclose(tuned.encoder.conv1.weight, base.encoder.conv1.weight)
    for name in ("murmur.json", "murmur.safetensors"):
        shutil.copy(WEIGHTS_DIR / name, out.parent / name)
    model = MurmurModel.load(out.parent)
    assert model.feature_reader is not None and model.feature_reader.config.training["patients"] == 24
    pred = model.predict_patient(read_folder(root)[0])
    assert set(pred.features) == set(FEATURES)
    # An evaluation run made with the reader is never resumed without it (the features differ).
    with_reader = ClassifierPredictor(out.parent).fingerprint()
    out.rename(tmp_path / "aside")
    assert ClassifierPredictor(out.parent).fingerprint() != with_reader
    (tmp_path / "aside").rename(out)
    again = CliRunner().invoke(app, args)  # `murmurscope` turns this error into one line and exit 2
    assert isinstance(again.exception, MurmurScopeError) and "already holds a feature reader" in str(again.exception)


@pytest.mark.slow
def test_fine_tuning_on_the_training_side_leaves_the_validation_patients_out(small_whisper, tmp_path):
    import json

    from assistant.data.split import split_patients
    from finetune.whisper_features import labelled_patients

    root = tmp_path / "circor"
    write_circor_folder(root, n_patients=16, seed=5, duration=4.0)
    out = tmp_path / "tower"
    args = ["finetune", "whisper-ft", "--circor-root", str(root), "--out", str(out), "--whisper", str(small_whisper),
            "--patients", "train", "--ft-epochs", "1", "--ft-batch-size", "4", "--no-progress"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    train = labelled_patients(root, "train")
    assert {p.patient_id for p in train} == set(split_patients(read_folder(root)).train)
    assert json.loads((out / "adapt.json").read_text())["patients"] == len(train) < 16
    assert load_whisper(out).dim == 64  # loads as the pretrained one does (the audio-LLM's tower, say)
    bad = CliRunner().invoke(app, [*args[:-1], "--patients", "val"])
    assert isinstance(bad.exception, MurmurScopeError) and "--patients must be one of" in str(bad.exception)
