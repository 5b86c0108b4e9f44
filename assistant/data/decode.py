"""Decoding audio files with memory bounded by the mono output, whatever the file claims.

`soundfile.read` allocates frames x channels x 4 bytes before it decodes anything, so a small
compressed file with many channels or a huge sample rate can ask for gigabytes. Here the header's
rate, channel count and frames x channels are checked against `AudioLimits` first, the file is then
decoded in fixed-size blocks that are mixed to mono as they arrive, and the decoded count is checked
again while reading (a header can understate the length, or leave it unknown).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf

from assistant.errors import AudioTooLargeError, NotAudioError, TooLongError, UnsupportedAudioError

if TYPE_CHECKING:
    from assistant.data.audio import AudioLimits

BLOCK_FRAMES = 1 << 16
UNKNOWN_FRAMES = 2**63 - 1
# Decoding failures libsndfile reports: its own error, a RuntimeError from older soundfile, and the
# TypeError/ValueError soundfile raises on headers it cannot map to a format.
_DECODE_ERRORS = (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OverflowError, EOFError)


@dataclass(frozen=True)
class Decoded:
    samples: np.ndarray  # mono float32
    rate: int
    channels: int
    format: str
    subtype: str


def too_long_message(duration: float, cap: float) -> str:
    """The one wording of "over the duration cap", before decoding (here) and after (signal checks)."""
    return f"{duration:.0f} s is longer than the {cap:g} s cap"


def decode_mono(path: str | Path, limits: AudioLimits, max_seconds: float | None = None) -> Decoded:
    """Mono float32 samples of `path`, refusing before reading anything the limits would not allow.

    `max_seconds` (the analysis cap) raises TooLongError; the decoded-sample cap always applies.
    """
    try:
        fh = sf.SoundFile(str(path))
    except _DECODE_ERRORS:
        raise NotAudioError(f"{path}: not a readable audio file (WAV, FLAC, OGG or MP3)") from None
    with fh:
        rate, channels, frames = int(fh.samplerate), int(fh.channels), int(fh.frames)
        if frames >= UNKNOWN_FRAMES:  # libsndfile's SF_COUNT_MAX: the header does not say
            frames = 0
        if not limits.min_rate <= rate <= limits.max_rate:
            raise UnsupportedAudioError(f"{path}: sample rate {rate} Hz is outside the supported "
                                        f"{limits.min_rate:g}-{limits.max_rate:g} Hz range")
        if not 1 <= channels <= limits.max_channels:
            raise UnsupportedAudioError(f"{path}: {channels} channels; at most {limits.max_channels} are supported")
        if max_seconds is not None and frames > 0 and frames / rate > max_seconds:
            raise TooLongError(f"{path}: {too_long_message(frames / rate, max_seconds)}")
        if frames > 0 and frames * channels > limits.max_samples:
            raise AudioTooLargeError(f"{path}: {frames} frames x {channels} channels is over the "
                                     f"{limits.max_samples:,} decoded-sample limit")
        # The frame cap also binds files whose header leaves the length unknown or gets it wrong.
        cap = limits.max_samples // channels
        if max_seconds is not None:
            cap = min(cap, int(max_seconds * rate))
        samples = _read_blocks(fh, path, cap, frames, max_seconds)
        return Decoded(samples, rate, channels, fh.format, fh.subtype)


def _read_blocks(fh: sf.SoundFile, path: str | Path, cap: int, frames: int, max_seconds: float | None) -> np.ndarray:
    out = np.empty(min(frames, cap) if frames > 0 else min(BLOCK_FRAMES, cap), dtype=np.float32)
    n = 0
    block = np.empty((BLOCK_FRAMES, fh.channels), dtype=np.float32)
    pointer = sf._ffi.cast("float *", block.ctypes.data)
    while True:
        # libsndfile's sequential read, without soundfile's seek-and-tell bookkeeping around it:
        # that bookkeeping fails on streams whose length the header leaves unknown.
        k = int(sf._snd.sf_readf_float(fh._file, pointer, BLOCK_FRAMES))
        if k < 0 or sf._snd.sf_error(fh._file):
            message = sf._ffi.string(sf._snd.sf_strerror(fh._file)).decode("utf-8", "replace")
            raise NotAudioError(f"{path}: could not decode audio ({_one_line(message)})")
        if k == 0:
            break
        if n + k > cap:
            if max_seconds is not None and cap == int(max_seconds * fh.samplerate):
                raise TooLongError(f"{path}: longer than the {max_seconds:g} s cap")
            raise AudioTooLargeError(f"{path}: decodes to more than {cap:,} frames, over the decoding limit")
        if n + k > len(out):
            grown = np.empty(min(cap, max(2 * len(out), n + k)), dtype=np.float32)
            grown[:n] = out[:n]
            out = grown
        out[n:n + k] = block[:k, 0] if fh.channels == 1 else block[:k].mean(axis=1)
        n += k
    return out[:n].copy() if n < len(out) else out


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())
