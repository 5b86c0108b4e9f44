"""Is this a heart recording at all? The evidence the segmenter and the analyzer use to refuse non-heart audio.

The segmenter's network was trained to score "heart audio" against generated noise, speech and
music, but a steady tone fools it: a 50 Hz hum is scored as heart audio and its periodic envelope
ripple decoded as dozens of cycles. Three signal measures that do not depend on the network close
the gaps, all on the 25-2000 Hz band of the recording at 4 kHz:

- tonality: the share of power in the three strongest 2 Hz spectral lines. Mains hum, its
  harmonics and sustained musical notes put most of their power in a few lines; heart sounds are
  short broadband thumps that spread it.
- modulation: the spread (dB, 90th minus 10th percentile) of the 20 ms frame energy in the heart
  band (25-400 Hz). Heart sounds rise tens of dB above the pause between them; a tone, hum or
  steady noise barely moves.
- high-band share: the fraction of power above 400 Hz. Speech formants and hiss live there; heart
  sounds and most murmurs do not.
- crest: the median, over the loudest 128 ms frames, of the 200-1000 Hz spectrum's peak over its
  mean. A musical note is a few harmonic lines there (a high crest); heart sounds put little tonal
  power above 200 Hz and murmurs are spread. (From 60 Hz up, S1 and S2 themselves look tonal.)

`heart_evidence` computes them. `steady_reason` is what the segmenter refuses outright (no cycles can
be in a steady tone or steady noise); `not_heart_reason` adds what the analysis refuses to call a
murmur on (music, speech-like sound with a poor segmentation). Real recordings are not always clean:
a recording of a crying child can trip a rule, which is why the analysis calls a patient Unknown only
when no recording passes. Thresholds were set on the generated non-heart set and the CirCor
development patients (`murmurscope eval nonheart`, docs/benchmarks.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import butter, sosfiltfilt, stft, welch

RATE = 4000
NO_HEART = "no heart sounds found: re-record"


@dataclass(frozen=True)
class GateConfig:
    max_tonality: float = 0.5  # real recordings: at most 0.1
    min_modulation_db: float = 10.0  # real recordings: at least 14 dB
    max_crest: float = 8.0  # real recordings: 1% above
    speech_high_band: float = 0.5  # with a segmentation quality under speech_quality
    speech_quality: float = 0.3


@dataclass(frozen=True)
class HeartEvidence:
    tonality: float
    modulation_db: float
    high_band: float
    crest: float

    def to_dict(self) -> dict[str, float]:
        return {"tonality": round(self.tonality, 4), "modulation_db": round(self.modulation_db, 2),
                "high_band": round(self.high_band, 4), "crest": round(self.crest, 2)}


def heart_evidence(samples: np.ndarray, rate: int) -> HeartEvidence:
    """The gate's measures of mono `samples` at `rate` (resampled to 4 kHz by the caller when needed)."""
    x = np.asarray(samples, dtype=np.float64)
    if rate != RATE:
        from assistant.data.audio import resample

        x = resample(x.astype(np.float32), rate, RATE).astype(np.float64)
    x = x - x.mean()
    freqs, psd = welch(x, RATE, nperseg=min(len(x), 2 * RATE))
    band = (freqs >= 25) & (freqs <= 2000)
    power = psd[band]
    total = float(power.sum()) + 1e-20
    tonality = float(np.sort(power)[-3:].sum() / total)
    high_band = float(psd[(freqs > 400) & (freqs <= 2000)].sum() / total)
    heart = sosfiltfilt(butter(4, (25, 400), btype="band", fs=RATE, output="sos"), x)
    frame = RATE // 50
    n = len(heart) // frame
    energy = (heart[: n * frame].reshape(n, frame) ** 2).mean(axis=1) + 1e-20
    db = 10 * np.log10(energy)
    modulation = float(np.percentile(db, 90) - np.percentile(db, 10)) if n >= 10 else 0.0
    return HeartEvidence(tonality, modulation, high_band, _crest(x))


def _crest(x: np.ndarray) -> float:
    f, _, z = stft(x, RATE, nperseg=512, noverlap=256)
    mag = np.abs(z[(f >= 200) & (f <= 1000)])
    if mag.shape[1] < 4:
        return 0.0
    energy = (mag ** 2).sum(axis=0)
    loud = energy >= np.percentile(energy, 70)
    return float(np.median(mag.max(axis=0)[loud] / (mag.mean(axis=0)[loud] + 1e-12)))


def steady_reason(evidence: HeartEvidence, config: GateConfig = GateConfig()) -> str | None:
    """A steady tone or a steady noise: audio in which no heart cycle can be found, or None."""
    if evidence.tonality > config.max_tonality:
        return "a steady tone or hum, not heart sounds"
    if evidence.modulation_db < config.min_modulation_db:
        return "no beats: steady sound, not heart sounds"
    return None


def not_heart_reason(evidence: HeartEvidence, quality: float, config: GateConfig = GateConfig()) -> str | None:
    """Why a segmented recording does not sound like a heart (tone, steady sound, music, speech), or None."""
    steady = steady_reason(evidence, config)
    if steady:
        return steady
    if evidence.crest > config.max_crest:
        return "musical notes, not heart sounds"
    if evidence.high_band > config.speech_high_band and quality < config.speech_quality:
        return "mostly sound above 400 Hz (speech or hiss) and no clear heart cycles"
    return None
