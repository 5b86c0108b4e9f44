"""Whisper embeddings of every CirCor recording (`assistant.murmur.whisper.block_means`: per depth, the encoder
states averaged over 1 s blocks), cached for linear probing under cross-validation."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from assistant.data.circor import RecordingRef, read_folder
from assistant.errors import MurmurScopeError
from assistant.murmur.whisper import block_means, centre_crop


def labelled_refs(circor_root: Path) -> list[RecordingRef]:
    return [r for p in read_folder(circor_root) if p.labels is not None for r in p.recordings]


def whisper_embeddings(refs: list[RecordingRef], whisper: Path, cache_dir: Path = Path("build/cv"),
                       max_seconds: float | None = None, progress: bool = True) -> dict[str, np.ndarray]:
    """recording name -> (depths, seconds, dim) block means, computed once per (recordings, model, crop).

    `max_seconds`: encode only the centre this long of each recording (what a busy 2-core CPU affords)."""
    from assistant.murmur.whisper import load_whisper

    model_id = hashlib.sha1((Path(whisper) / "model.safetensors").read_bytes()).hexdigest()
    key = hashlib.sha1(json.dumps([model_id, max_seconds, [str(r.audio_path) for r in refs]]).encode()).hexdigest()[:12]
    path = cache_dir / f"whisper-{key}.npz"
    if not path.exists():
        encoder = load_whisper(whisper)
        out = {}
        for ref in tqdm(refs, desc="whisper embeddings", disable=not progress):
            try:
                rec = ref.load(rate=encoder.rate)
            except MurmurScopeError:
                continue
            samples = rec.samples.astype(np.float32)
            if max_seconds is not None:
                samples = centre_crop(samples, int(max_seconds * encoder.rate))
            out[ref.name] = block_means(encoder, samples)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **out)
    with np.load(path) as z:
        return {k: z[k] for k in z.files}
