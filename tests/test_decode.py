"""Bounded decoding: limits checked before reading, memory bounded by the mono output, only typed errors."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from assistant.data.audio import AudioLimits, load_recording
from assistant.data.decode import BLOCK_FRAMES, decode_mono
from assistant.data.uploads import decode_upload
from assistant.errors import AudioTooLargeError, MurmurScopeError, TooLongError, UnsupportedAudioError
from eval.hostile import flac_bomb, fuzz_cases


def _peak_mb(fn) -> float:
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak / 2**20


@pytest.mark.parametrize("bomb,error", [
    (dict(rate=96_000, channels=8, seconds=599), AudioTooLargeError),  # 1.8 GB if read at once
    (dict(rate=655_000, channels=1, seconds=599), UnsupportedAudioError),  # 12.6 GB at 8 channels
    (dict(rate=655_000, channels=8, seconds=599), UnsupportedAudioError),
    (dict(rate=48_000, channels=1, seconds=3600), TooLongError),
])
def test_bombs_are_refused_before_decoding(tmp_path, bomb, error):
    path = tmp_path / "bomb.flac"
    path.write_bytes(flac_bomb(**bomb))
    assert path.stat().st_size < 10_000
    assert sf.info(str(path)).frames == int(bomb["seconds"] * bomb["rate"])

    def load():
        with pytest.raises(error) as info:
            load_recording(path)
        assert "\n" not in str(info.value)

    assert _peak_mb(load) < 5


def test_unknown_length_is_bounded_while_reading(tmp_path):
    # STREAMINFO total 0: libsndfile reports SF_COUNT_MAX frames; the cap applies to what is decoded.
    path = tmp_path / "unknown.flac"
    path.write_bytes(flac_bomb(rate=4000, channels=1, seconds=0, real_seconds=12, amplitude=0.3))
    with pytest.raises(TooLongError):
        load_recording(path, limits=AudioLimits(max_seconds=10))
    with pytest.raises(AudioTooLargeError):
        load_recording(path, limits=AudioLimits(max_samples=30_000))
    assert load_recording(path).duration == pytest.approx(12.0)


def test_limits_are_configurable(tmp_path):
    x = np.zeros((4000 * 3, 3), np.float32)
    x[:, 0] = 0.1
    sf.write(tmp_path / "three.wav", x, 4000)
    with pytest.raises(UnsupportedAudioError, match="3 channels"):
        load_recording(tmp_path / "three.wav", limits=AudioLimits(max_channels=2))
    with pytest.raises(UnsupportedAudioError, match="4000 Hz"):
        load_recording(tmp_path / "three.wav", limits=AudioLimits(min_rate=8000))
    with pytest.raises(AudioTooLargeError):
        load_recording(tmp_path / "three.wav", limits=AudioLimits(max_samples=3 * 4000 * 3 - 1))
    assert load_recording(tmp_path / "three.wav").samples == pytest.approx(np.full(12000, 0.1 / 3), abs=1e-4)


def test_block_mixing_matches_a_full_read(tmp_path):
    rng = np.random.default_rng(0)
    x = (0.3 * rng.standard_normal((3 * BLOCK_FRAMES + 123, 2))).astype(np.float32)
    sf.write(tmp_path / "s.flac", x, 44100, subtype="PCM_24")
    full, _ = sf.read(tmp_path / "s.flac", dtype="float32")
    got = decode_mono(tmp_path / "s.flac", AudioLimits())
    assert got.channels == 2 and got.rate == 44100
    np.testing.assert_allclose(got.samples, full.mean(axis=1), atol=1e-7)


def test_mono_output_is_the_only_large_allocation(tmp_path):
    # 8 channels x 20 s at 48 kHz: a full read allocates 30 MB; blocks need the 3.7 MB mono output.
    x = np.zeros((48_000 * 20, 8), np.float32)
    x[:, 0] = 0.1
    sf.write(tmp_path / "eight.flac", x, 48_000)
    assert _peak_mb(lambda: load_recording(tmp_path / "eight.flac")) < 12


def test_fuzzed_files_raise_only_typed_errors(tmp_path):
    """2,000 mutated WAV/FLAC/OGG/MP3 files through the upload path: a Recording or a MurmurScopeError."""
    outcomes: dict[str, int] = {}
    for case in fuzz_cases(2000, seed=13):
        try:
            decode_upload(case.data, case.suffix, upload_dir=tmp_path)
            outcome = "ok"
        except MurmurScopeError as e:
            outcome = type(e).__name__
            assert "\n" not in str(e), (case.index, case.mutation)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert sum(outcomes.values()) == 2000
    assert outcomes.get("NotAudioError", 0) > 100 and outcomes.get("ok", 0) > 10, outcomes
    assert not list(tmp_path.iterdir())
