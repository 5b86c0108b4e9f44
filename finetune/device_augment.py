"""Device augmentation for the murmur CNN's training crops: the same heart heard through another
stethoscope, in another room. Only training uses it, so it lives here and not beside the encoder.

A crop (a 4 kHz waveform) goes through the parts named in `ClassifierTrainConfig.device_augment`, each
applied with probability `DeviceAugmentConfig.probability`, in the order sound takes through a device:
- `noise`: what the chest piece picks up besides the heart: coloured noise (white, pink, brown), mains hum
  at 50 or 60 Hz with harmonics, rubbing (bursts of band-passed noise and knocks) and speech (espeak-ng
  clips), one or two of them mixed at a random SNR;
- `response`: the device's frequency response: a random smooth gain curve over log frequency with a
  tilt and sometimes a resonance, random band limits (high-pass and low-pass), and resampling chains
  through other rates (2, 8, 16, 44.1 kHz) and back, as recorders and codecs do; a chain through 2 kHz
  leaves nothing above 1 kHz, like PhysioNet 2016's recordings;
- `level`: the device's level handling: a random gain, an automatic gain control (sliding-RMS
  normalisation with a random time constant) and hard or soft clipping.
Short clips are not a part: the encoder already trains on 3 s crops and tiles a recording shorter than a
crop (`finetune.classifier._crop`), which is what a short teaching clip gives it.

A static gain and a fixed smooth colouring are largely undone by the encoder itself (CNNEncoder centres
every mel band on the recording's mean); what these parts can teach beyond that is what the centring
cannot undo: missing bands, gain that moves over time, clipping and noise.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soxr
from scipy.signal import butter, lfilter, sosfilt

from assistant.errors import ConfigError

PARTS = ("response", "level", "noise")
NOISE_KINDS = ("coloured", "hum", "rub", "speech")
# Training speech, kept apart from the non-heart benchmark's sentences and voices (eval/nonheart_bench.py),
# so the benchmark never hears what training mixed in.
TRAINING_SPEECH = {
    "en-us": "Can you lie back on the bed for me and lift your shirt a little, that's it, thank you.",
    "en-gb": "She was born at thirty eight weeks and has been feeding well, no problems so far.",
    "pt-br": "Fique quietinho um pouco, meu amor, o doutor vai escutar o seu peito agora.",
    "es": "¿Le duele cuando respira? Dígame si siente algo raro aquí o en la espalda.",
    "fr-fr": "Il a eu de la fièvre la semaine dernière, mais maintenant il va beaucoup mieux.",
    "de": "Setzen Sie sich bitte aufrecht hin und atmen Sie ganz normal weiter, danke.",
    "it": "Il bambino dorme bene la notte, ma si stanca molto quando corre con gli altri.",
    "hi": "बच्चे को कभी कभी सांस लेने में तकलीफ होती है, खासकर खेलते समय।",
}
TRAINING_VOICES = ("m2", "f1", "m4", "f3")


@dataclass(frozen=True)
class DeviceAugmentConfig:
    probability: float = field(default=0.5, metadata={"help": "Chance that each named part is applied to a crop."})
    response_db: float = field(default=6.0, metadata={
        "help": "Std (dB) of the random response curve at its control points."})
    response_points: int = field(default=6, metadata={
        "help": "Control points of the random response curve, log-spaced from 25 Hz to Nyquist."})
    tilt_db_per_octave: float = field(default=3.0, metadata={
        "help": "Largest spectral tilt of the response (dB per octave, either sign)."})
    band_limit_probability: float = field(default=0.5, metadata={
        "help": "Chance of a random high-pass and low-pass within the response part."})
    highpass_hz: tuple[float, float] = field(default=(20.0, 150.0), metadata={
        "help": "Range of the random high-pass cutoff (Hz, two values)."})
    lowpass_hz: tuple[float, float] = field(default=(400.0, 1800.0), metadata={
        "help": "Range of the random low-pass cutoff (Hz, two values)."})
    resample_probability: float = field(default=0.5, metadata={
        "help": "Chance of a resampling chain within the response part."})
    resample_rates: tuple[int, ...] = field(default=(2000, 8000, 16000, 44100), metadata={
        "help": "Rates (Hz) a resampling chain passes through (one or two of them) before coming back."})
    gain_db: float = field(default=20.0, metadata={"help": "Largest random gain (dB, either sign)."})
    agc_probability: float = field(default=0.5, metadata={
        "help": "Chance of an automatic gain control within the level part."})
    agc_seconds: tuple[float, float] = field(default=(0.05, 1.0), metadata={
        "help": "Range of the AGC's sliding-RMS time constant (s, two values)."})
    clip_probability: float = field(default=0.3, metadata={"help": "Chance of clipping within the level part."})
    clip_quantile: tuple[float, float] = field(default=(0.9, 0.999), metadata={
        "help": "Range of the clipping level as a quantile of the crop's |amplitude| (two values)."})
    snr_db: tuple[float, float] = field(default=(0.0, 30.0), metadata={
        "help": "Range of the noise part's signal-to-noise ratio (dB, two values)."})
    noise_kinds: tuple[str, ...] = field(default=NOISE_KINDS, metadata={
        "help": "Noise kinds drawn from: coloured, hum, rub, speech (comma-separated)."})

    def __post_init__(self) -> None:
        bad = [k for k in self.noise_kinds if k not in NOISE_KINDS]
        if bad or not self.noise_kinds:
            raise ConfigError(f"--augment-noise-kinds must name some of {', '.join(NOISE_KINDS)}, not "
                              f"{','.join(self.noise_kinds)!r}")
        for name in ("highpass_hz", "lowpass_hz", "agc_seconds", "clip_quantile", "snr_db"):
            lo_hi = getattr(self, name)
            if len(lo_hi) != 2 or lo_hi[0] > lo_hi[1]:
                raise ConfigError(f"--augment-{name.replace('_', '-')} must be two values, low then high, "
                                  f"not {lo_hi!r}")


def check_parts(parts: tuple[str, ...]) -> tuple[str, ...]:
    """The parts in their canonical order; a ConfigError names an unknown one."""
    bad = [p for p in parts if p not in PARTS]
    if bad:
        raise ConfigError(f"--device-augment parts are {', '.join(PARTS)}, not {bad[0]!r}")
    return tuple(p for p in PARTS if p in parts)


# ---- response ----------------------------------------------------------------------------------------

def response_curve(x: np.ndarray, rate: int, gains_db: np.ndarray, tilt_db_per_octave: float = 0.0,
                   peak: tuple[float, float, float] | None = None) -> np.ndarray:
    """`x` through a smooth zero-phase gain curve: `gains_db` at control points log-spaced from 25 Hz to
    Nyquist (linear in log frequency between them), plus a tilt around 200 Hz, plus an optional
    resonance `peak` = (centre Hz, gain dB, bandwidth in octaves)."""
    n = len(x)
    f = np.fft.rfftfreq(n, 1 / rate)
    logf = np.log2(np.maximum(f, 1.0))
    points = np.linspace(np.log2(25.0), np.log2(rate / 2), len(gains_db))
    db = np.interp(logf, points, gains_db) + tilt_db_per_octave * (logf - np.log2(200.0))
    if peak is not None:
        centre, gain, octaves = peak
        db += gain * np.exp(-0.5 * ((logf - np.log2(centre)) / (octaves / 2)) ** 2)
    return np.fft.irfft(np.fft.rfft(x) * 10 ** (db / 20), n)


def band_limit(x: np.ndarray, rate: int, highpass: float | None = None, lowpass: float | None = None,
               order: int = 8) -> np.ndarray:
    """`x` through Butterworth high- and low-pass filters (causal, like a device's)."""
    if highpass is not None:
        x = sosfilt(butter(max(2, order // 4), highpass, btype="high", fs=rate, output="sos"), x)
    if lowpass is not None and lowpass < rate / 2:
        x = sosfilt(butter(order, lowpass, btype="low", fs=rate, output="sos"), x)
    return x


def resample_chain(x: np.ndarray, rate: int, through: tuple[int, ...]) -> np.ndarray:
    """`x` resampled (soxr) through each rate of `through` in turn and back to `rate`, at its own length."""
    y, at = x, rate
    for r in (*through, rate):
        y, at = soxr.resample(y, at, r), r
    if len(y) >= len(x):
        return y[: len(x)]
    return np.pad(y, (0, len(x) - len(y)))


def _response(x: np.ndarray, rate: int, rng: np.random.Generator, c: DeviceAugmentConfig) -> np.ndarray:
    gains = rng.normal(0.0, c.response_db, c.response_points)
    peak = (float(np.exp(rng.uniform(np.log(60), np.log(rate / 2.5)))), float(rng.uniform(-12, 12)),
            float(rng.uniform(0.3, 1.5))) if rng.random() < 0.5 else None
    x = response_curve(x, rate, gains, rng.uniform(-c.tilt_db_per_octave, c.tilt_db_per_octave), peak)
    if rng.random() < c.band_limit_probability:
        x = band_limit(x, rate, rng.uniform(*c.highpass_hz), rng.uniform(*c.lowpass_hz), int(rng.choice([4, 8])))
    if rng.random() < c.resample_probability and c.resample_rates:
        k = int(rng.integers(1, min(2, len(c.resample_rates)) + 1))
        x = resample_chain(x, rate, tuple(int(r) for r in rng.choice(c.resample_rates, k, replace=False)))
    return x


# ---- level ---------------------------------------------------------------------------------------------

def agc(x: np.ndarray, rate: int, seconds: float, strength: float = 1.0) -> np.ndarray:
    """Automatic gain control: `x` divided by its sliding RMS (an exponential average of x^2 with time
    constant `seconds`) to the power `strength`, then brought back to the input's overall RMS."""
    alpha = 1.0 - np.exp(-1.0 / (seconds * rate))
    power = x**2
    start = power[: max(1, int(seconds * rate))].mean()  # no start-up transient
    env = np.sqrt(lfilter([alpha], [1, alpha - 1], power, zi=[(1 - alpha) * start])[0])
    rms = np.sqrt(power.mean())
    y = x / (env + 1e-3 * rms + 1e-12) ** strength
    return y * rms / (np.sqrt((y**2).mean()) + 1e-12)


def clip(x: np.ndarray, level: float, soft: bool = False) -> np.ndarray:
    """Hard clipping at +-`level`, or soft (level * tanh(x / level)); either way |y| <= level."""
    return level * np.tanh(x / level) if soft else np.clip(x, -level, level)


def _level(x: np.ndarray, rate: int, rng: np.random.Generator, c: DeviceAugmentConfig) -> np.ndarray:
    x = x * 10 ** (rng.uniform(-c.gain_db, c.gain_db) / 20)
    if rng.random() < c.agc_probability:
        x = agc(x, rate, rng.uniform(*c.agc_seconds), rng.uniform(0.5, 1.0))
    if rng.random() < c.clip_probability:
        level = float(np.quantile(np.abs(x), rng.uniform(*c.clip_quantile)))
        if level > 0:
            x = clip(x, level, soft=bool(rng.random() < 0.5))
    return x


# ---- noise ---------------------------------------------------------------------------------------------

def add_at_snr(x: np.ndarray, background: np.ndarray, snr_db: float) -> np.ndarray:
    """`x` plus `background` scaled so that power(x) / power(scaled background) is `snr_db`."""
    p_signal, p_noise = np.mean(x**2), np.mean(background**2)
    if p_signal == 0 or p_noise == 0:
        return x
    return x + background * np.sqrt(p_signal / (p_noise * 10 ** (snr_db / 10)))


def rub(n: int, rng: np.random.Generator, rate: int) -> np.ndarray:
    """Handling noise: bursts of band-passed noise (the chest piece rubbing on skin or clothes) and the
    odd knock (a decaying low thump)."""
    out = np.zeros(n)
    for _ in range(int(rng.integers(1, 5))):
        length = min(n, int(rng.uniform(0.05, 0.6) * rate))
        lo = rng.uniform(40, 300)
        hi = min(rng.uniform(2 * lo, 6 * lo), 0.45 * rate)
        burst = sosfilt(butter(2, (lo, hi), btype="band", fs=rate, output="sos"), rng.standard_normal(length))
        start = int(rng.integers(0, n - length + 1))
        out[start : start + length] += burst * np.hanning(length) * rng.uniform(0.3, 1.0)
    if rng.random() < 0.5:
        t = np.arange(min(n, int(0.2 * rate))) / rate
        knock = np.sin(2 * np.pi * rng.uniform(20, 80) * t) * np.exp(-t / rng.uniform(0.01, 0.05))
        start = int(rng.integers(0, n - len(t) + 1))
        out[start : start + len(t)] += knock * rng.uniform(1.0, 4.0) * out.std()  # louder than the rubbing
    return out


def _background(kind: str, n: int, rng: np.random.Generator, rate: int, speech: list[np.ndarray]) -> np.ndarray:
    from eval.nonheart_bench import hum, noise

    if kind == "coloured":
        return noise(str(rng.choice(["white", "pink", "brown"])), n, rng, rate)
    if kind == "hum":
        harmonics = [(1,), (1, 2, 3), (1, 3, 5), (1, 2, 3, 4, 5)][int(rng.integers(4))]
        return hum(float(rng.choice([50.0, 60.0])), harmonics, n, rng, rate)
    if kind == "rub":
        return rub(n, rng, rate)
    clip_ = speech[int(rng.integers(len(speech)))]
    start = int(rng.integers(0, len(clip_)))
    return np.resize(np.roll(clip_, -start), n)  # repeated when the clip is shorter than the crop


def _noise(x: np.ndarray, rate: int, rng: np.random.Generator, c: DeviceAugmentConfig,
           speech: list[np.ndarray]) -> np.ndarray:
    kinds = [k for k in c.noise_kinds if k != "speech" or speech]
    chosen = rng.choice(kinds, min(len(kinds), int(rng.integers(1, 3))), replace=False)
    background = np.zeros(len(x))
    for kind in chosen:
        b = _background(str(kind), len(x), rng, rate, speech)
        background += b / (np.sqrt(np.mean(b**2)) + 1e-12) * rng.uniform(0.3, 1.0)
    return add_at_snr(x, background, rng.uniform(*c.snr_db))


# ---- speech bank ---------------------------------------------------------------------------------------

def speech_bank(cache_dir: Path, rate: int) -> list[np.ndarray]:
    """espeak-ng clips of TRAINING_SPEECH in TRAINING_VOICES at `rate`, generated once into `cache_dir`."""
    from assistant.data.audio import Recording
    from eval.nonheart_bench import RATE, espeak, require_espeak

    key = hashlib.sha1(json.dumps([TRAINING_SPEECH, TRAINING_VOICES, rate]).encode()).hexdigest()[:12]
    path = Path(cache_dir) / f"speech-{key}.npz"
    if not path.exists():
        require_espeak("--device-augment noise (its speech)")
        clips = {}
        with tempfile.TemporaryDirectory() as tmp:
            for k, (language, text) in enumerate(TRAINING_SPEECH.items()):
                for j, voice in enumerate(TRAINING_VOICES[:2] if k % 2 else TRAINING_VOICES[2:]):
                    samples = espeak(language, voice, 140 + 20 * ((k + j) % 3), text, Path(tmp))
                    clips[f"{language}+{voice}"] = Recording(samples, RATE).resampled(rate).samples.astype(np.float32)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written under a unique name, then moved: parallel members may generate the bank at once.
        fd, tmp_path = tempfile.mkstemp(suffix=".npz", dir=path.parent)
        os.close(fd)
        np.savez(tmp_path, **clips)
        os.replace(tmp_path, path)
    with np.load(path) as z:
        return [z[k].astype(np.float64) for k in sorted(z.files)]


# ---- the augmenter -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DeviceAugmenter:
    """Maps a waveform crop and a Generator to the crop as another device in another room would give it."""

    parts: tuple[str, ...]
    config: DeviceAugmentConfig = DeviceAugmentConfig()
    rate: int = 4000
    speech: tuple[np.ndarray, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "parts", check_parts(self.parts))
        if "noise" in self.parts and self.config.noise_kinds == ("speech",) and not self.speech:
            raise ConfigError("--augment-noise-kinds speech needs the speech bank (speech_bank)")

    @classmethod
    def for_training(cls, parts: tuple[str, ...], config: DeviceAugmentConfig, rate: int,
                     cache_dir: Path) -> DeviceAugmenter:
        """The augmenter with its speech bank (made once into `cache_dir`) when the noise part uses speech."""
        parts = check_parts(parts)
        wants_speech = "noise" in parts and "speech" in config.noise_kinds
        return cls(parts, config, rate, tuple(speech_bank(cache_dir, rate)) if wants_speech else ())

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """`x` (T,) -> (T,) float32; with no parts, `x` itself."""
        if not self.parts:
            return x
        y = x.astype(np.float64)
        c = self.config
        if "noise" in self.parts and rng.random() < c.probability:
            y = _noise(y, self.rate, rng, c, list(self.speech))
        if "response" in self.parts and rng.random() < c.probability:
            y = _response(y, self.rate, rng, c)
        if "level" in self.parts and rng.random() < c.probability:
            y = _level(y, self.rate, rng, c)
        return np.nan_to_num(y, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
