"""Per-frame features of a phonocardiogram at 50 Hz, after Springer et al. (IEEE TBME 2016).

The four Springer envelopes (homomorphic, Hilbert, power-spectral density and wavelet) are computed
on the 25-400 Hz band at 1 kHz after Schmidt's spike removal, resampled to 50 Hz and standardised
per recording. The neural emission model also sees a log-power spectrogram of the same band at the
same frame rate, which keeps the pitch information the envelopes average away.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pywt
from scipy.signal import butter, hilbert, resample_poly, sosfiltfilt

from assistant.data.audio import resample

FRAME_RATE = 50
ANALYSIS_RATE = 1000
_DECIMATE = ANALYSIS_RATE // FRAME_RATE


@dataclass(frozen=True)
class EnvelopeConfig:
    band_hz: tuple[float, float] = (25.0, 400.0)
    homomorphic_lowpass_hz: float = 8.0
    psd_band_hz: tuple[float, float] = (40.0, 60.0)
    wavelet: str = "rbio3.9"
    wavelet_level: int = 3
    spectrogram_window: int = 64


def n_frames(n_samples: int, rate: int) -> int:
    return int(n_samples * FRAME_RATE // rate)


def _standardise(x: np.ndarray, axis: int = 0) -> np.ndarray:
    mean = x.mean(axis=axis, keepdims=True)
    std = x.std(axis=axis, keepdims=True)
    return (x - mean) / (std + 1e-8)


def remove_spikes(x: np.ndarray, rate: int) -> np.ndarray:
    """Schmidt et al. (2010): zero the loudest spike of any 500 ms window whose peak exceeds 3x the median peak."""
    win = rate // 2
    n = (x.size // win) * win
    if n < 3 * win:
        return x
    x = x.copy()
    frames = x[:n].reshape(-1, win)  # a view: edits land in x
    for _ in range(frames.shape[0]):
        peaks = np.abs(frames).max(axis=1)
        worst = int(np.argmax(peaks))
        if peaks[worst] <= 3 * np.median(peaks):
            break
        w = frames[worst]
        at = int(np.argmax(np.abs(w)))
        crossings = np.flatnonzero(np.diff(np.signbit(w)))
        before = crossings[crossings < at]
        after = crossings[crossings >= at]
        a = before[-1] + 1 if before.size else 0
        b = after[0] + 1 if after.size else win
        w[a:b] = 0.0
    return x


def _to_frames(env: np.ndarray, t: int) -> np.ndarray:
    out = resample_poly(env, 1, _DECIMATE)[:t]
    if out.size < t:
        out = np.pad(out, (0, t - out.size), mode="edge")
    return out


def _bandpassed(samples: np.ndarray, rate: int, cfg: EnvelopeConfig) -> np.ndarray:
    x = resample(np.asarray(samples, dtype=np.float32), rate, ANALYSIS_RATE).astype(np.float64)
    sos = butter(4, cfg.band_hz, btype="band", fs=ANALYSIS_RATE, output="sos")
    return remove_spikes(sosfiltfilt(sos, x), ANALYSIS_RATE)


def _spectrogram(x: np.ndarray, t: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Power spectrogram with one frame per 20 ms, frame k centred on the middle of [k/50, (k+1)/50)."""
    pad = np.pad(x, (window // 2, window))
    starts = np.arange(t) * _DECIMATE + _DECIMATE // 2
    idx = starts[:, None] + np.arange(window)[None, :]
    frames = pad[idx] * np.hanning(window)[None, :]
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    return power, np.fft.rfftfreq(window, 1 / ANALYSIS_RATE)


def springer_envelopes(x: np.ndarray, t: int, cfg: EnvelopeConfig, power: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    analytic = np.abs(hilbert(x))
    lowpass = butter(1, cfg.homomorphic_lowpass_hz, btype="low", fs=ANALYSIS_RATE, output="sos")
    homomorphic = np.exp(sosfiltfilt(lowpass, np.log(analytic + 1e-10)))
    lo, hi = cfg.psd_band_hz
    psd = power[:, (freqs >= lo) & (freqs <= hi)].mean(axis=1)
    coeffs = pywt.wavedec(x, cfg.wavelet, level=cfg.wavelet_level)
    detail = pywt.upcoef("d", coeffs[1], cfg.wavelet, level=cfg.wavelet_level, take=x.size)
    env = np.stack(
        [_to_frames(homomorphic, t), _to_frames(analytic, t), psd, _to_frames(np.abs(detail), t)], axis=1
    )
    return _standardise(env)


def frame_features(samples: np.ndarray, rate: int, cfg: EnvelopeConfig = EnvelopeConfig()) -> np.ndarray:
    """(frames, 4 + bands) float32: the Springer envelopes, then the standardised log spectrogram."""
    t = n_frames(len(samples), rate)
    x = _bandpassed(samples, rate, cfg)
    power, freqs = _spectrogram(x, t, cfg.spectrogram_window)
    lo, hi = cfg.band_hz
    band = (freqs >= lo) & (freqs <= hi)
    log_power = np.log(power[:, band] + 1e-10)
    # One gain for the whole spectrogram keeps the spectral tilt, which tells S1 from S2.
    log_power = (log_power - log_power.mean()) / (log_power.std() + 1e-8)
    return np.concatenate([springer_envelopes(x, t, cfg, power, freqs), log_power], axis=1).astype(np.float32)


N_ENVELOPES = 4
