"""Cycle-synchronous log-mel: every heart cycle's S1, systole, S2 and diastole warped onto fixed phase bins.

The systolic murmur features are defined relative to systole: timing (where in systole), shape (how
the envelope evolves), grading (how loud against the heart sounds), pitch (which band) and quality
(how the energy spreads over bands). The segmenter's states put each cycle on a common time axis:
each state's frames are averaged into a fixed number of phase bins, the median over cycles is taken
(robust to a stray bump), and the result is expressed relative to the recording's S1/S2 energy, so
the stethoscope's gain cancels. What comes out is a small "mel group x phase" image per recording.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from assistant.data.segmentation import complete_cycles


@dataclass(frozen=True)
class CycleConfig:
    sound_bins: int = field(default=4, metadata={"help": "Phase bins for S1 and for S2 in the cycle image."})
    systole_bins: int = field(default=16, metadata={"help": "Phase bins for systole."})
    diastole_bins: int = field(default=16, metadata={"help": "Phase bins for diastole."})
    mel_groups: int = field(default=8, metadata={"help": "Groups of adjacent mel bins averaged together."})
    min_cycles: int = field(default=2, metadata={"help": "Fewest heart cycles for a cycle image."})

    @property
    def phase_bins(self) -> tuple[int, int, int, int]:
        return (self.sound_bins, self.systole_bins, self.sound_bins, self.diastole_bins)

    @property
    def dim(self) -> int:
        """Length of `cycle_vector`: the flattened image and a 'cycles found' flag."""
        return self.mel_groups * sum(self.phase_bins) + 1


def _bin_means(x: np.ndarray, n: int) -> np.ndarray:
    """(bands, L) -> (bands, n): means over n equal fractions of the segment (at least one frame each)."""
    length = x.shape[1]
    edges = np.linspace(0.0, length, n + 1)
    out = np.empty((x.shape[0], n), dtype=np.float64)
    for k in range(n):
        a = min(int(np.floor(edges[k])), length - 1)
        b = max(int(np.ceil(edges[k + 1])), a + 1)
        out[:, k] = x[:, a:b].mean(axis=1)
    return out


def cycle_image(log_mel: np.ndarray, states: np.ndarray, config: CycleConfig = CycleConfig()) -> np.ndarray | None:
    """(n_mels, T) natural-log mel power + (T',) segmenter states at the same frame rate ->
    (mel_groups, sum(phase_bins)) log power relative to the S1/S2 energy, or None with too few cycles."""
    t = min(log_mel.shape[1], len(states))
    mel, states = np.asarray(log_mel[:, :t], dtype=np.float64), np.asarray(states[:t])
    groups = np.array_split(np.arange(mel.shape[0]), config.mel_groups)
    power = np.stack([np.exp(mel[g]).mean(axis=0) for g in groups])  # mean power per mel group
    # Not `closed`: a last diastole cut by the end of the recording still has frames to average.
    cycles = complete_cycles(states, closed=False)
    if len(cycles) < config.min_cycles:
        return None
    images = []
    for cycle in cycles:
        parts = [_bin_means(power[:, int(iv.start) : int(iv.end)], n) for iv, n in zip(cycle.phases, config.phase_bins)]
        images.append(np.log(np.concatenate(parts, axis=1) + 1e-12))
    image = np.median(np.stack(images), axis=0)
    n = config.sound_bins
    sounds = np.concatenate([image[:, :n], image[:, n + config.systole_bins : 2 * n + config.systole_bins]], axis=1)
    reference = np.log(np.exp(sounds).sum(axis=0).mean())  # total S1/S2 power, summed over mel groups
    return (image - reference).astype(np.float32)


def cycle_vector(log_mel: np.ndarray, states: np.ndarray, config: CycleConfig = CycleConfig()) -> np.ndarray:
    """`cycle_image` flattened plus a final 1.0, or all zeros when the recording has too few cycles."""
    image = cycle_image(log_mel, states, config)
    if image is None:
        return np.zeros(config.dim, dtype=np.float32)
    return np.concatenate([image.ravel(), [1.0]]).astype(np.float32)
