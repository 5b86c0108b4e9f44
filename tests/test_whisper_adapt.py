"""Continued pretraining and fine-tuning of a Whisper encoder (finetune/whisper_adapt.py) and the CV study that
runs them (eval/cv_adapt.py), on a small random Whisper built here and generated heart sounds."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from assistant.data.circor import read_folder
from assistant.data.split import fold_patients
from assistant.data.synth import Murmur, SynthConfig, synthesize, write_circor_folder
from assistant.errors import ConfigError, MurmurScopeError
from assistant.murmur.whisper import load_whisper
from eval.cross_validation import CVConfig, load_recipe
from eval.cv_adapt import AdaptStudyConfig, run_variant
from finetune.whisper_adapt import (
    CPConfig,
    FTConfig,
    adapt,
    continue_pretraining,
    fine_tune,
    masked_prediction_loss,
    span_mask,
)


@pytest.fixture(scope="module")
def small_whisper(tmp_path_factory):
    """Whisper's encoder layout (80 mel bins, two convolutions, 1500 positions) at width 64 and 2 layers."""
    from transformers import WhisperConfig, WhisperModel

    torch.manual_seed(0)
    config = WhisperConfig(vocab_size=64, pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
                           suppress_tokens=[], begin_suppress_tokens=[], num_mel_bins=80, d_model=64,
                           encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=128, max_source_positions=1500,
                           decoder_layers=1, decoder_attention_heads=4, decoder_ffn_dim=128, max_target_positions=32)
    folder = tmp_path_factory.mktemp("whisper") / "small"
    WhisperModel(config).save_pretrained(folder)
    return folder


def _pcg(seed: int, murmur: bool, seconds: float = 4.0) -> np.ndarray:
    murmurs = (Murmur(),) if murmur else ()
    pcg = synthesize(SynthConfig(duration=seconds, seed=seed, heart_rate=70 + 5 * (seed % 7), murmurs=murmurs,
                                 murmur_gain=3.0))
    return pcg.recording.resampled(16000).samples.astype(np.float16)


def test_span_mask_covers_the_fraction_in_spans():
    mask = span_mask(8, 100, 0.3, 5, np.random.default_rng(0))
    covered = mask.float().mean(1)
    assert torch.all(covered >= 0.3) and torch.all(covered <= 0.3 + 5 / 100)
    starts = (mask[:, 1:] & ~mask[:, :-1]).sum(1) + mask[:, 0]
    assert torch.all(starts <= 6)  # spans, not scattered frames


def test_configs_refuse_nonsense():
    with pytest.raises(ConfigError, match="mask-fraction"):
        CPConfig(mask_fraction=1.5)
    with pytest.raises(ConfigError, match="crop-seconds"):
        FTConfig(crop_seconds=0.1)
    with pytest.raises(ConfigError, match="cp-steps"):
        CPConfig(steps=0)
    with pytest.raises(ConfigError, match="ft-epochs"):
        FTConfig(epochs=0)


def test_the_cli_names_every_variant():
    from eval.cv_adapt import VARIANTS
    from eval.cv_cli import ADAPTED

    assert ADAPTED == tuple(f"whisper-{v}" for v in VARIANTS)


def _masked_error(encoder, config: CPConfig) -> float:
    """A new linear layer fitted on the frozen encoder's output to fill masked frames of some crops, scored on
    masked frames of other crops (the CP layer is thrown away, so only what the encoder learnt is measured)."""
    torch.manual_seed(0)
    encoder.requires_grad_(False)
    fit, held = ([torch.from_numpy(_pcg(seed + s, murmur=s % 2 == 0, seconds=1.0).astype(np.float32)) for s in range(8)]
                 for seed in (100, 200))
    head = torch.nn.Linear(encoder.dim, 2 * 80)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    for step in range(80):
        loss = masked_prediction_loss(encoder, head, torch.stack(fit), config, np.random.default_rng(step))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return masked_prediction_loss(encoder, head, torch.stack(held), config, np.random.default_rng(999)).item()


@pytest.mark.slow
def test_continued_pretraining_learns_to_fill_masked_frames(small_whisper):
    torch.set_num_threads(1)
    waves = [_pcg(s, murmur=s % 2 == 0) for s in range(12)]
    config = CPConfig(steps=120, batch_size=8, crop_seconds=1.0, lr=1e-3)
    encoder = load_whisper(small_whisper)
    log = continue_pretraining(encoder, waves, config, progress=False)
    assert log["loss_last"] < 0.7 * log["loss_first"]
    before, after = _masked_error(load_whisper(small_whisper), config), _masked_error(encoder, config)
    assert after < 0.93 * before, (before, after)  # measured 0.100 -> 0.087


@pytest.mark.slow
def test_fine_tuning_learns_the_recording_labels_and_saves_a_loadable_encoder(small_whisper, tmp_path):
    torch.set_num_threads(1)
    waves = [_pcg(s, murmur=s % 2 == 0) for s in range(24)]
    labels = np.array([0 if s % 2 == 0 else 2 for s in range(24)])
    config = FTConfig(epochs=25, batch_size=8, crop_seconds=2.0, lr=1e-3, head_lr=1e-2)
    out = tmp_path / "ft"
    logs = []

    def train(encoder):
        logs.append(fine_tune(encoder, waves, labels, 3, config, progress=False))
        return logs[-1]

    assert adapt(small_whisper, out, train, config) == out
    assert logs[0]["train_accuracy_last_epoch"] == 1.0 and logs[0]["loss_last"] < 0.2 * logs[0]["loss_first"]
    assert json.loads((out / "adapt.json").read_text())["config"]["epochs"] == 25
    adapted, base = load_whisper(out), load_whisper(small_whisper)
    x = torch.from_numpy(waves[0].astype(np.float32))[None]
    with torch.inference_mode():
        assert not torch.allclose(adapted.frames(x), base.frames(x), atol=1e-3)
    # A finished folder is reused, never retrained or overwritten.
    assert adapt(small_whisper, out, lambda e: pytest.fail("retrained"), config) == out


@pytest.mark.slow
def test_cv_study_runs_every_fold_from_the_training_side_only(small_whisper, tmp_path):
    root = tmp_path / "circor"
    write_circor_folder(root, n_patients=24, seed=4, duration=4.0)
    patients = [p for p in read_folder(root) if p.labels is not None]
    config = CVConfig(root, out=tmp_path / "cv", folds=2)
    splits = fold_patients(patients, 2, config.seed)
    study = AdaptStudyConfig(small_whisper, seconds=2.0, cp=CPConfig(steps=2, batch_size=4, crop_seconds=1.0),
                             ft=FTConfig(epochs=1, batch_size=4, crop_seconds=1.0), progress=False)
    names = run_variant(config, study, "cp-in-ft", patients, splits)
    for name in names:
        rows, infos = load_recipe(config.out / name)
        assert sorted(r.patient_id for r in rows) == sorted(p.patient_id for p in patients)
        assert infos[0]["variant"] == study.label("cp-in-ft") == "cp-in-s2-ft-e1"  # the settings that differ
    for k, split in enumerate(splits):
        encoders = config.out / "encoders"
        cp = json.loads((encoders / "cp-in-s2" / f"fold{k}" / "adapt.json").read_text())
        ft = json.loads((encoders / "cp-in-s2-ft-e1" / f"fold{k}" / "adapt.json").read_text())
        assert cp["patients"] == len(split.train)  # the fold's own patients never reach its encoders
        assert ft["patients"] < len(split.train)  # FT on one half; the probe fits on the other
    run_variant(config, study, "ft-whole", patients, splits)
    for k, split in enumerate(splits):
        whole = json.loads((config.out / "encoders" / "pretrained-whole-ft-e1" / f"fold{k}" / "adapt.json").read_text())
        assert whole["patients"] == len(split.train)
    with pytest.raises(MurmurScopeError, match="physionet-root"):
        run_variant(config, study, "cp-all-lp", patients, splits)
    with pytest.raises(MurmurScopeError, match="unknown adaptation variant"):
        run_variant(config, study, "cp-moon", patients, splits)
