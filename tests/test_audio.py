import numpy as np
import pytest
import soundfile as sf

from assistant.data.audio import (
    MIN_SECONDS,
    SLOWEST_BPM,
    AudioLimits,
    Recording,
    check_samples,
    load_recording,
    parse_name,
    resample,
    write_recording,
)
from assistant.data.inspection import quality_flags
from assistant.data.synth import SynthConfig, synthesize
from assistant.errors import (
    EmptyAudioError,
    MissingFileError,
    NonFiniteError,
    NotAudioError,
    SilentError,
    TooLongError,
    TooShortError,
)


def _tone(rate: int, seconds: float = 3.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * 50 * t)).astype(np.float32)


@pytest.mark.parametrize("rate", [2000, 4000, 8000, 22050, 44100])
@pytest.mark.parametrize("fmt,subtype", [("wav", "PCM_16"), ("wav", "PCM_24"), ("wav", "FLOAT"), ("flac", "PCM_16"),
                                         ("flac", "PCM_24"), ("wav", "PCM_U8")])
def test_lossless_round_trip(tmp_path, rate, fmt, subtype):
    x = _tone(rate)
    path = tmp_path / f"a.{fmt}"
    sf.write(path, x, rate, subtype=subtype)
    rec = load_recording(path)
    assert rec.rate == rate
    assert rec.samples.dtype == np.float32
    tol = {"PCM_U8": 1e-2, "PCM_16": 1e-4, "PCM_24": 1e-6, "FLOAT": 0}[subtype]
    np.testing.assert_allclose(rec.samples, x, atol=tol + 1e-7)


@pytest.mark.parametrize("suffix", [".ogg", ".mp3"])
def test_lossy_formats_read(tmp_path, suffix):
    pcg = synthesize(SynthConfig(duration=4.0, rate=8000, seed=2)).recording
    path = write_recording(tmp_path / f"x{suffix}", pcg)
    rec = load_recording(path)
    assert abs(rec.duration - 4.0) < 0.1
    n = min(len(rec.samples), len(pcg.samples))
    # Lossy codecs add delay; compare energy envelopes rather than samples.
    e1 = np.abs(rec.samples[:n]).reshape(-1, 400)[: n // 400].mean(1)
    e0 = np.abs(pcg.samples[:n]).reshape(-1, 400)[: n // 400].mean(1)
    assert np.corrcoef(e0, e1)[0, 1] > 0.8


def test_stereo_becomes_mono(tmp_path):
    x = _tone(4000)
    sf.write(tmp_path / "s.wav", np.stack([x, 0 * x], 1), 4000)
    rec = load_recording(tmp_path / "s.wav")
    assert rec.samples.ndim == 1
    np.testing.assert_allclose(rec.samples, x / 2, atol=1e-4)


def test_resampling_keeps_duration_and_tone(tmp_path):
    x = _tone(44100)
    sf.write(tmp_path / "t.wav", x, 44100)
    rec = load_recording(tmp_path / "t.wav", rate=4000)
    assert rec.rate == 4000 and abs(rec.duration - 3.0) < 1e-3
    spectrum = np.abs(np.fft.rfft(rec.samples))
    assert abs(np.argmax(spectrum) * 4000 / len(rec.samples) - 50) < 1
    assert resample(rec.samples, 4000, 4000) is rec.samples


def test_site_and_patient_from_name(tmp_path):
    assert parse_name("2530_AV") == ("2530", "AV")
    assert parse_name("49748_PV_2") == ("49748", "PV")
    assert parse_name("my recording mv") == (None, "MV")
    sf.write(tmp_path / "85033_TV.wav", _tone(4000), 4000)
    rec = load_recording(tmp_path / "85033_TV.wav")
    assert (rec.patient_id, rec.site) == ("85033", "TV")


@pytest.mark.parametrize(
    "make,error",
    [
        (lambda p: None, MissingFileError),
        (lambda p: p.write_text("this is text, not audio"), NotAudioError),
        (lambda p: sf.write(p, np.zeros(0, np.float32), 4000), EmptyAudioError),
        (lambda p: sf.write(p, _tone(4000, 0.8), 4000), TooShortError),
        (lambda p: sf.write(p, np.zeros(4000 * 3, np.float32), 4000), SilentError),
        (lambda p: sf.write(p, np.full(4000 * 3, np.nan, np.float32), 4000, subtype="FLOAT"), NonFiniteError),
    ],
)
def test_bad_input_is_a_typed_one_line_error(tmp_path, make, error):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(error) as info:
        load_recording(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_the_floor_is_one_beat_at_the_slowest_rate(tmp_path):
    assert MIN_SECONDS == 60 / SLOWEST_BPM == 1.5 and AudioLimits().min_seconds == MIN_SECONDS
    sf.write(tmp_path / "short.wav", _tone(4000, 0.8), 4000)
    with pytest.raises(TooShortError, match=r"short.wav: 0.80 s is shorter than the 1.5 s minimum$"):
        load_recording(tmp_path / "short.wav")
    sf.write(tmp_path / "beat.wav", _tone(4000, MIN_SECONDS), 4000)
    assert load_recording(tmp_path / "beat.wav").duration == pytest.approx(MIN_SECONDS)


def test_length_cap_is_configurable(tmp_path):
    sf.write(tmp_path / "long.wav", _tone(4000, 12.0), 4000)
    with pytest.raises(TooLongError):
        load_recording(tmp_path / "long.wav", limits=AudioLimits(max_seconds=10))
    assert load_recording(tmp_path / "long.wav").duration == pytest.approx(12.0)


@pytest.mark.parametrize(
    "samples,flags,error",
    [
        (np.zeros(4000, np.float32), ["too_short", "silent"], TooShortError),  # the first fatal problem is raised
        (np.zeros(4000 * 3, np.float32), ["silent"], SilentError),
        (np.array([0.5, np.inf] * 6000, np.float32), ["nonfinite"], NonFiniteError),
        (np.zeros(0, np.float32), ["empty"], EmptyAudioError),
        (np.clip(2 * _tone(4000), -1, 1), ["clipped"], None),  # warnings only: still analysed
        (1e-6 * _tone(4000), ["very_quiet"], None),
        (_tone(4000), [], None),
    ],
)
def test_info_flags_and_load_checks_are_the_same_checks(samples, flags, error):
    assert quality_flags(samples, 4000) == flags
    if error is None:
        check_samples(samples, 4000, "x.wav")
    else:
        with pytest.raises(error, match=r"^x\.wav: "):
            check_samples(samples, 4000, "x.wav")


def test_folder_is_not_audio(tmp_path):
    with pytest.raises(NotAudioError):
        load_recording(tmp_path)


def test_recording_resampled_is_a_new_recording():
    rec = Recording(_tone(4000), 4000, site="AV", patient_id="1")
    up = rec.resampled(16000)
    assert up.rate == 16000 and up.site == "AV" and len(up.samples) == 4 * len(rec.samples)
