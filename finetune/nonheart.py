"""Generated recordings with no heart cycles in them: what the segmenter must refuse to segment.

Tests use them, and training calibrates the quality threshold on them (next to real training
recordings). Each imitates one way a user's file can fail to be a phonocardiogram: hiss, a
near-silent line with hum, speech, music, or random knocks with no rhythm.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.signal import butter, lfilter, sosfilt

from assistant.data.audio import Recording

RATE = 4000


def _finish(x: np.ndarray, name: str, level: float = 0.5) -> Recording:
    x = level * x / (np.max(np.abs(x)) + 1e-12)
    return Recording(x.astype(np.float32), RATE, source=f"<{name}>")


def white_noise(rng: np.random.Generator, duration: float = 20.0) -> Recording:
    return _finish(rng.standard_normal(int(duration * RATE)), "white noise")


def brown_noise(rng: np.random.Generator, duration: float = 20.0) -> Recording:
    x = np.cumsum(rng.standard_normal(int(duration * RATE)))
    sos = butter(2, 20, btype="high", fs=RATE, output="sos")
    return _finish(sosfilt(sos, x), "brown noise")


def near_silence(rng: np.random.Generator, duration: float = 20.0) -> Recording:
    """A quiet line: faint hiss and 50 Hz mains hum at -60 dB."""
    t = np.arange(int(duration * RATE)) / RATE
    x = 0.3 * np.sin(2 * np.pi * 50 * t + rng.uniform(0, 6.3)) + rng.standard_normal(t.size)
    return _finish(x, "near silence", level=1e-3)


def speech_like(rng: np.random.Generator, duration: float = 20.0) -> Recording:
    """Voiced syllables: a glottal pulse train (100-220 Hz, drifting) through moving formant resonators."""
    n = int(duration * RATE)
    out = np.zeros(n)
    t = 0
    while t < n:
        syl = int(rng.uniform(0.12, 0.35) * RATE)
        gap = int(rng.exponential(0.12) * RATE)
        f0 = rng.uniform(100, 220) * np.linspace(1.0, rng.uniform(0.8, 1.2), syl)
        phase = np.cumsum(2 * np.pi * f0 / RATE)
        src = (np.sin(phase) > 0.95).astype(float) + 0.05 * rng.standard_normal(syl)
        y = np.zeros(syl)
        for formant, bw in ((rng.uniform(300, 800), 80), (rng.uniform(900, 1800), 120)):
            r = np.exp(-np.pi * bw / RATE)
            a = [1, -2 * r * np.cos(2 * np.pi * formant / RATE), r * r]
            y += lfilter([1 - r], a, src)
        y *= np.hanning(syl)
        end = min(n, t + syl)
        out[t:end] += y[: end - t]
        t += syl + gap
    return _finish(out + 0.01 * rng.standard_normal(n), "speech-like")


def music_like(rng: np.random.Generator, duration: float = 20.0) -> Recording:
    """Harmonic notes of random pitch and length over a sustained chord."""
    n = int(duration * RATE)
    out = np.zeros(n)
    tt = np.arange(n) / RATE
    for f in rng.choice([110.0, 130.8, 164.8, 196.0], size=3, replace=False):
        out += 0.3 * np.sin(2 * np.pi * f * tt)
    t = 0
    while t < n:
        length = int(rng.uniform(0.1, 0.6) * RATE)
        f0 = 220.0 * 2 ** (rng.integers(-12, 12) / 12)
        k = np.arange(length) / RATE
        note = sum(np.sin(2 * np.pi * f0 * h * k) / h for h in (1, 2, 3, 4))
        note *= np.exp(-k / rng.uniform(0.1, 0.5))
        end = min(n, t + length)
        out[t:end] += note[: end - t]
        t += length
    return _finish(out, "music-like")


def random_knocks(rng: np.random.Generator, duration: float = 20.0) -> Recording:
    """Heart-sound-like thumps at random (Poisson) times: sounds, but no cycles."""
    n = int(duration * RATE)
    out = 0.02 * rng.standard_normal(n)
    times = np.cumsum(rng.exponential(0.45, size=int(duration / 0.2)))
    for at in times[times < duration - 0.2]:
        m = int(rng.uniform(0.06, 0.14) * RATE)
        k = np.arange(m) / RATE
        a = int(at * RATE)
        out[a : a + m] += rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * rng.uniform(30, 90) * k) * np.exp(-k / 0.02)
    return _finish(out, "random knocks")


GENERATORS: dict[str, Callable[[np.random.Generator, float], Recording]] = {
    "white noise": white_noise,
    "brown noise": brown_noise,
    "near silence": near_silence,
    "speech-like": speech_like,
    "music-like": music_like,
    "random knocks": random_knocks,
}
