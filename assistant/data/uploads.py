"""Uploaded bytes to a Recording. The bytes pass through a temporary file (libsndfile reads files)
that is deleted before returning; the Recording keeps no trace of a file name."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from assistant.data.audio import AUDIO_SUFFIXES, AudioLimits, Recording, load_recording
from assistant.errors import EmptyAudioError

# One upload (a request to the API, a file in the app) and the recordings per request or analysis:
# the API's defaults and the app's caps (.streamlit/config.toml repeats MAX_UPLOAD_MB; a test checks).
MAX_UPLOAD_MB = 25.0
MAX_RECORDINGS = 8


def decode_upload(data: bytes, suffix: str, site: str | None = None, upload_dir: Path | None = None,
                  limits: AudioLimits = AudioLimits()) -> Recording:
    if not data:
        raise EmptyAudioError("empty audio")
    suffix = suffix.lower() if suffix.lower() in AUDIO_SUFFIXES else ".wav"
    fd, name = tempfile.mkstemp(suffix=suffix, dir=upload_dir)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        rec = load_recording(name, limits=limits)
    finally:
        os.unlink(name)
    return Recording(rec.samples, rec.rate, site=site, patient_id=None, source="<upload>")


def anonymous(message: str) -> str:
    """An error message with server paths replaced: errors name inputs by position, never by path."""
    return re.sub(r"(/[^\s:]+)+", "<upload>", message)
