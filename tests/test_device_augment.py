"""Device augmentation (finetune/device_augment.py): each part does what it says to generated audio, and
training with it runs."""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pytest

from assistant.errors import ConfigError, MurmurScopeError
from finetune.device_augment import (
    PARTS,
    DeviceAugmentConfig,
    DeviceAugmenter,
    add_at_snr,
    agc,
    band_limit,
    check_parts,
    clip,
    resample_chain,
    response_curve,
    rub,
)

RATE = 4000


def _heart(seconds: float = 3.0, seed: int = 0) -> np.ndarray:
    from assistant.data.synth import Murmur, SynthConfig, synthesize

    return synthesize(SynthConfig(duration=seconds, murmurs=(Murmur(),), seed=seed)).recording.samples.astype(
        np.float64)


def _band_energy(x: np.ndarray, lo: float, hi: float) -> float:
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / RATE)
    return float(spectrum[(f >= lo) & (f < hi)].sum())


def _white(n: int = 3 * RATE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(n)


def test_band_limit_removes_energy_beyond_the_cutoffs():
    x = _white()
    y = band_limit(x, RATE, highpass=100.0, lowpass=500.0)
    assert _band_energy(y, 1000, 2000) < 1e-4 * _band_energy(x, 1000, 2000)  # > 40 dB down an octave above
    assert _band_energy(y, 1, 25) < 1e-2 * _band_energy(x, 1, 25)
    assert _band_energy(y, 200, 400) > 0.5 * _band_energy(x, 200, 400)  # the pass band stays


def test_response_curve_applies_its_gains():
    x = _white()
    flat = response_curve(x, RATE, np.zeros(6))
    assert np.allclose(flat, x)
    up = response_curve(x, RATE, np.full(6, 6.0))
    assert 10 * np.log10(np.mean(up**2) / np.mean(x**2)) == pytest.approx(6.0, abs=0.05)
    tilted = response_curve(x, RATE, np.zeros(6), tilt_db_per_octave=3.0)
    # 3 dB/octave around 200 Hz: the band near 800 Hz is 6 dB up, the band near 50 Hz 6 dB down.
    assert 10 * np.log10(_band_energy(tilted, 750, 850) / _band_energy(x, 750, 850)) == pytest.approx(6.0, abs=0.5)
    assert 10 * np.log10(_band_energy(tilted, 48, 52) / _band_energy(x, 48, 52)) == pytest.approx(-6.0, abs=0.5)
    peaked = response_curve(x, RATE, np.zeros(6), peak=(300.0, 10.0, 0.5))
    assert 10 * np.log10(_band_energy(peaked, 295, 305) / _band_energy(x, 295, 305)) == pytest.approx(10.0, abs=0.5)


@pytest.mark.parametrize("through", [(2000,), (8000,), (16000,), (44100,), (2000, 44100), (16000, 8000)])
def test_resampling_chain_keeps_length_and_rate(through):
    x = _heart()
    y = resample_chain(x, RATE, through)
    assert y.shape == x.shape and np.isfinite(y).all()
    if min(through) == 2000:  # everything above the lowest rate's Nyquist is gone
        assert _band_energy(y, 1100, 2000) < 1e-3 * _band_energy(x, 1100, 2000)
    else:  # up and back down is nearly transparent in the band that stays
        assert np.corrcoef(x[100:-100], y[100:-100])[0, 1] > 0.99


def test_agc_flattens_a_level_step_and_keeps_the_overall_level():
    x = _white()
    x[: len(x) // 2] *= 10.0  # 20 dB louder first half
    y = agc(x, RATE, seconds=0.05)
    half = len(x) // 2
    before = 10 * np.log10(np.mean(x[:half] ** 2) / np.mean(x[half:] ** 2))
    after = 10 * np.log10(np.mean(y[:half] ** 2) / np.mean(y[half:] ** 2))
    assert before == pytest.approx(20.0, abs=0.5) and abs(after) < 2.0
    assert np.mean(y**2) == pytest.approx(np.mean(x**2), rel=1e-6)


@pytest.mark.parametrize("soft", [False, True])
def test_clipping_bounds_the_peak(soft):
    x = _heart()
    level = 0.3 * np.max(np.abs(x))
    y = clip(x, level, soft=soft)
    assert np.max(np.abs(y)) <= level + 1e-12
    small = np.abs(x) < 0.05 * level
    assert np.allclose(y[small], x[small], rtol=1e-3)  # quiet samples pass


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 30.0])
def test_noise_is_added_at_the_asked_snr(snr_db):
    x = _heart()
    background = rub(len(x), np.random.default_rng(1), RATE)
    y = add_at_snr(x, background, snr_db)
    measured = 10 * np.log10(np.mean(x**2) / np.mean((y - x) ** 2))
    assert measured == pytest.approx(snr_db, abs=1.0)


@pytest.mark.parametrize("kinds", [("coloured",), ("hum",), ("rub",), ("coloured", "hum", "rub")])
def test_noise_part_measures_its_snr(kinds):
    config = DeviceAugmentConfig(probability=1.0, snr_db=(12.0, 12.0), noise_kinds=kinds)
    aug = DeviceAugmenter(("noise",), config, RATE)
    x = _heart().astype(np.float32)
    for seed in range(4):
        y = aug(x, np.random.default_rng(seed))
        measured = 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean((y - x).astype(np.float64) ** 2))
        assert measured == pytest.approx(12.0, abs=1.0)


def test_hum_noise_sits_at_mains_frequencies():
    config = DeviceAugmentConfig(probability=1.0, snr_db=(0.0, 0.0), noise_kinds=("hum",))
    x = _heart().astype(np.float32)
    noise = DeviceAugmenter(("noise",), config, RATE)(x, np.random.default_rng(0)) - x
    spectrum = np.abs(np.fft.rfft(noise)) ** 2
    f = np.fft.rfftfreq(len(noise), 1 / RATE)
    peak = f[np.argmax(spectrum)]
    assert min(abs(peak - 50), abs(peak - 60)) < 1.0


@pytest.mark.parametrize("parts", [("response",), ("level",), ("noise",), PARTS])
def test_every_part_is_finite_same_length_and_seeded(parts, tmp_path):
    config = DeviceAugmentConfig(probability=1.0, noise_kinds=("coloured", "hum", "rub"))
    aug = DeviceAugmenter(parts, config, RATE)
    x = _heart().astype(np.float32)
    outs = [aug(x, np.random.default_rng(7)) for _ in range(2)]
    assert outs[0].shape == x.shape and outs[0].dtype == np.float32 and np.isfinite(outs[0]).all()
    assert np.array_equal(outs[0], outs[1])  # same seed, same crop
    assert not np.allclose(outs[0], x)  # it did something
    other = aug(x, np.random.default_rng(8))
    assert not np.array_equal(other, outs[0])
    silent = aug(np.zeros_like(x), np.random.default_rng(7))
    assert np.isfinite(silent).all()


def test_no_parts_is_the_identity():
    x = _heart().astype(np.float32)
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    assert DeviceAugmenter((), DeviceAugmentConfig(probability=1.0), RATE)(x, rng) is x
    assert rng.bit_generator.state == state  # and draws nothing


def test_probability_zero_leaves_the_crop_alone():
    x = _heart().astype(np.float32)
    y = DeviceAugmenter(PARTS, DeviceAugmentConfig(probability=0.0, noise_kinds=("rub",)), RATE)(
        x, np.random.default_rng(0))
    assert np.array_equal(x, y)


def test_bad_parts_and_settings_are_one_line_errors():
    assert check_parts(("noise", "response")) == ("response", "noise")  # canonical order
    with pytest.raises(ConfigError, match="--device-augment"):
        check_parts(("reverb",))
    with pytest.raises(ConfigError, match="noise-kinds"):
        DeviceAugmentConfig(noise_kinds=("traffic",))
    with pytest.raises(ConfigError, match="snr-db"):
        DeviceAugmentConfig(snr_db=(30.0, 0.0))


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (Debian package espeak-ng)")
def test_speech_bank_is_made_once_and_mixed_at_its_snr(tmp_path):
    from finetune.device_augment import speech_bank

    config = DeviceAugmentConfig(probability=1.0, snr_db=(5.0, 5.0), noise_kinds=("speech",))
    aug = DeviceAugmenter.for_training(("noise",), config, RATE, tmp_path)
    assert len(aug.speech) >= 8 and all(np.isfinite(s).all() and len(s) > RATE for s in aug.speech)
    (bank,) = tmp_path.glob("speech-*.npz")
    mtime = bank.stat().st_mtime_ns
    assert len(speech_bank(tmp_path, RATE)) == len(aug.speech) and bank.stat().st_mtime_ns == mtime  # cached
    x = _heart().astype(np.float32)
    y = aug(x, np.random.default_rng(0))
    measured = 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean((y - x).astype(np.float64) ** 2))
    assert measured == pytest.approx(5.0, abs=1.0)


def test_missing_espeak_is_a_one_line_error_naming_the_package(tmp_path, monkeypatch):
    import eval.nonheart_bench

    monkeypatch.setattr(eval.nonheart_bench.shutil, "which", lambda name: None)
    with pytest.raises(MurmurScopeError, match="Debian package espeak-ng") as err:
        DeviceAugmenter.for_training(("noise",), DeviceAugmentConfig(), RATE, tmp_path)
    assert "\n" not in str(err.value)
    # Without speech among the noise kinds, espeak-ng is not needed.
    aug = DeviceAugmenter.for_training(("noise",), DeviceAugmentConfig(noise_kinds=("hum",)), RATE, tmp_path)
    assert aug.speech == ()


def test_training_with_device_augmentation_runs(tmp_path):
    from assistant.data.synth import write_circor_folder
    from assistant.murmur.model import MurmurModel
    from finetune.classifier import ClassifierTrainConfig, train_classifier

    write_circor_folder(tmp_path / "train", n_patients=16, seed=5, duration=4.0)
    cfg = ClassifierTrainConfig(circor_root=tmp_path / "train", out=tmp_path / "model", cache_dir=tmp_path / "cache",
                                encoder_epochs=2, encoder_patience=2, head_epochs=3, head_patience=3,
                                feature_epochs=3, feature_epoch_candidates=(3,), feature_inputs=("embedding",),
                                views=1, view_seconds=2.0, members=1, workers=1, progress=False,
                                device_augment=("noise", "level", "response"),
                                augment=replace(DeviceAugmentConfig(), probability=1.0,
                                                noise_kinds=("coloured", "hum", "rub")))
    assert cfg.device_augment == PARTS
    log = train_classifier(cfg)
    assert log["config"]["device_augment"] == list(PARTS)
    assert list((tmp_path / "cache").glob("waves-*.npz")) and list((tmp_path / "cache").glob("mels-*.npz"))
    assert len(log["members"][0]["encoder"]["history"]) == 2
    model = MurmurModel.load(tmp_path / "model")
    assert len(model.encoders) == 1
