"""Frozen Whisper embeddings of every CirCor recording, cached for linear probing under cross-validation.

Per recording and per depth (after the convolutions, after each transformer layer) the encoder states are
averaged over consecutive 1 s blocks (50 frames): any window's mean is then a mean of blocks, so the probe
can train on sub-window views and predict on the whole recording without running the encoder again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from assistant.data.circor import RecordingRef, read_folder
from assistant.errors import MurmurScopeError

FRAMES_PER_BLOCK = 50  # one second of Whisper encoder frames


@torch.inference_mode()
def block_means(encoder, samples: np.ndarray) -> np.ndarray:
    """(depths, seconds, dim) float16 for one 16 kHz recording, window by window (30 s each)."""
    n = encoder.to_mel.config.window_samples
    out = []
    for s in range(0, len(samples), n):
        chunk = samples[s : s + n]
        if s > 0 and len(chunk) < encoder.to_mel.config.n_fft * 4:
            break
        states = torch.stack(encoder.hidden_states(encoder.to_mel(torch.from_numpy(chunk)[None])))[:, 0]
        blocks = max(1, states.shape[1] // FRAMES_PER_BLOCK)
        used = states[:, : blocks * FRAMES_PER_BLOCK] if states.shape[1] >= FRAMES_PER_BLOCK else states
        out.append(used.reshape(states.shape[0], blocks, -1, states.shape[-1]).mean(2))
    return torch.cat(out, 1).half().numpy()


def centre_crop(samples: np.ndarray, n: int) -> np.ndarray:
    start = max(0, (len(samples) - n) // 2)
    return samples[start : start + n]


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
