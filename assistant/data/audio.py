"""Reading, checking and resampling phonocardiogram audio.

soundfile (libsndfile) reads WAV, FLAC, OGG and MP3; soxr resamples. torchaudio is not used: its
PyPI wheels are CUDA-linked and fail to import next to the CPU build of torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from assistant.data.decode import decode_mono, too_long_message
from assistant.errors import (
    AudioError,
    EmptyAudioError,
    MissingFileError,
    NonFiniteError,
    NotAudioError,
    SilentError,
    TooLongError,
    TooShortError,
)

SITES = ("AV", "PV", "TV", "MV", "Phc")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
_NAME = re.compile(r"^(?P<patient>\d+)_(?P<site>AV|PV|TV|MV|Phc)(?:_(?P<index>\d+))?$")
_SITE_IN_NAME = re.compile(r"(?:^|[^A-Za-z])(AV|PV|TV|MV|Phc)(?:$|[^A-Za-z])", re.IGNORECASE)


# The slowest heart rate MurmurScope analyses (the segmenter's default heart-rate search starts here) and the
# shortest recording it accepts: one beat at that rate, 60 / 40 = 1.5 s. A complete cycle runs from one S1
# onset to the next, so a shorter clip cannot hold one at every rate the segmenter searches (whether it could
# would depend on the heart); at or above it the segmenter decides: no complete cycle found and the recording
# does not count, fewer than its `min_cycles` and the findings say the evidence is thin.
SLOWEST_BPM = 40.0
MIN_SECONDS = 60.0 / SLOWEST_BPM


@dataclass(frozen=True)
class AudioLimits:
    """What a recording may be: analysis bounds (seconds) and decoding bounds checked before reading."""

    min_seconds: float = MIN_SECONDS
    max_seconds: float = 600.0
    min_rate: int = 1_000
    max_rate: int = 192_000
    max_channels: int = 8
    # frames x channels: 600 s of 96 kHz mono or 48 kHz stereo; the mono output is at most 230 MB.
    max_samples: int = 57_600_000


@dataclass(frozen=True)
class Recording:
    """Mono float32 samples in [-1, 1] with where they came from."""

    samples: np.ndarray
    rate: int
    site: str | None = None
    patient_id: str | None = None
    source: str = "<memory>"

    @property
    def duration(self) -> float:
        return len(self.samples) / self.rate

    def resampled(self, rate: int) -> Recording:
        if rate == self.rate:
            return self
        return replace(self, samples=resample(self.samples, self.rate, rate), rate=rate)


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return samples
    return soxr.resample(samples, rate, target, quality="HQ").astype(np.float32)


def parse_name(stem: str) -> tuple[str | None, str | None]:
    """Patient id and site from a file stem: `2530_AV`, `49748_PV_2`, or anything naming a site."""
    m = _NAME.match(stem)
    if m:
        return m["patient"], m["site"]
    m = _SITE_IN_NAME.search(stem)
    site = None
    if m:
        site = next(s for s in SITES if s.lower() == m[1].lower())
    return None, site


# Warnings only: such a recording is analysed, but may analyse poorly.
FULL_SCALE = 0.999  # a sample at least this loud (of 1.0) is taken to be clipped ...
MAX_CLIPPED_FRACTION = 1e-3  # ... and more than this fraction of such samples flags the recording
MIN_RMS = 1e-4  # of full scale: barely above the quantisation noise of 16-bit PCM (3e-5)


@dataclass(frozen=True)
class SignalProblem:
    """A reason a recording may not analyse: `flag` names it (`murmurscope info`), `message` tells a user why;
    one with an `error` makes the recording unusable."""

    flag: str
    message: str
    error: type[AudioError] | None = None


def _too_long(duration: float, limits: AudioLimits) -> SignalProblem:
    return SignalProblem("too_long", too_long_message(duration, limits.max_seconds), TooLongError)


def signal_problems(samples: np.ndarray, rate: int, limits: AudioLimits = AudioLimits(),
                    fatal_only: bool = False) -> list[SignalProblem]:
    """Every check of a recording's samples, in one place: the fatal ones first, then (unless `fatal_only`) the
    ones that only warn. An empty, non-finite or silent recording is not checked any further."""
    if samples.size == 0:
        return [SignalProblem("empty", "the recording is empty", EmptyAudioError)]
    if not np.all(np.isfinite(samples)):
        return [SignalProblem("nonfinite", "the recording contains NaN or infinite samples", NonFiniteError)]
    problems = []
    duration = samples.size / rate
    if duration < limits.min_seconds:
        problems.append(SignalProblem(
            "too_short", f"{duration:.2f} s is shorter than the {limits.min_seconds:g} s minimum", TooShortError))
    if duration > limits.max_seconds:
        problems.append(_too_long(duration, limits))
    if not np.any(samples):
        return problems + [SignalProblem("silent", "every sample is zero", SilentError)]
    if fatal_only:
        return problems
    if np.mean(np.abs(samples) >= FULL_SCALE) > MAX_CLIPPED_FRACTION:
        problems.append(SignalProblem("clipped", f"more than {100 * MAX_CLIPPED_FRACTION:g} % of the samples are "
                                      "at full scale"))
    if np.sqrt(np.mean(samples.astype(np.float64) ** 2)) < MIN_RMS:
        problems.append(SignalProblem("very_quiet", f"the RMS level is below {MIN_RMS:g} of full scale"))
    return problems


def check_samples(samples: np.ndarray, rate: int, source: str, limits: AudioLimits = AudioLimits()) -> None:
    """Raise the typed AudioError of the first fatal `signal_problems` of `samples`."""
    for problem in signal_problems(samples, rate, limits, fatal_only=True):
        raise problem.error(f"{source}: {problem.message}")


def load_recording(
    path: str | Path,
    *,
    rate: int | None = None,
    site: str | None = None,
    patient_id: str | None = None,
    limits: AudioLimits = AudioLimits(),
) -> Recording:
    """Read any soundfile-supported file as mono float32, checked, optionally resampled."""
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"{path}: no such file")
    if path.is_dir():
        raise NotAudioError(f"{path}: is a folder, not an audio file")
    # Refused before decoding when the header is over a limit; decoded in blocks, mixed to mono.
    decoded = decode_mono(path, limits, max_seconds=limits.max_seconds)
    samples, file_rate = decoded.samples, decoded.rate
    check_samples(samples, file_rate, str(path), limits)
    named_patient, named_site = parse_name(path.stem)
    rec = Recording(
        samples=samples,
        rate=int(file_rate),
        site=site or named_site,
        patient_id=patient_id or named_patient,
        source=str(path),
    )
    return rec.resampled(rate) if rate else rec


def write_recording(path: str | Path, rec: Recording, subtype: str | None = None) -> Path:
    """Write `rec` in the format its suffix names (PCM_16 by default for WAV and FLAC)."""
    path = Path(path)
    fmt = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".mp3": "MP3"}.get(path.suffix.lower())
    if fmt is None:
        raise NotAudioError(f"{path}: unsupported suffix (use .wav, .flac, .ogg or .mp3)")
    if subtype is None:
        subtype = {"WAV": "PCM_16", "FLAC": "PCM_16", "OGG": "VORBIS", "MP3": "MPEG_LAYER_III"}[fmt]
    sf.write(str(path), np.clip(rec.samples, -1.0, 1.0), rec.rate, format=fmt, subtype=subtype)
    return path
