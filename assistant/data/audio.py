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

from assistant.data.decode import decode_mono
from assistant.errors import (
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


@dataclass(frozen=True)
class AudioLimits:
    """What a recording may be: analysis bounds (seconds) and decoding bounds checked before reading."""

    min_seconds: float = 2.0
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


def check_samples(samples: np.ndarray, rate: int, source: str, limits: AudioLimits = AudioLimits()) -> None:
    """Raise a typed AudioError when `samples` cannot be analysed."""
    if samples.size == 0:
        raise EmptyAudioError(f"{source}: the recording is empty")
    if not np.all(np.isfinite(samples)):
        raise NonFiniteError(f"{source}: the recording contains NaN or infinite samples")
    duration = samples.size / rate
    if duration < limits.min_seconds:
        raise TooShortError(f"{source}: {duration:.2f} s is shorter than the {limits.min_seconds:g} s minimum")
    if duration > limits.max_seconds:
        raise TooLongError(f"{source}: {duration:.0f} s is longer than the {limits.max_seconds:g} s cap")
    if not np.any(samples):
        raise SilentError(f"{source}: every sample is zero")


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
