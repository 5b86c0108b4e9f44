"""One recording -> the fixed-length vector the normal/abnormal head reads.

Everything comes from the two models a consultation already runs: the murmur CNN ensemble (the mean and
spread of each member's frame embeddings, and its per-recording murmur probabilities) and the segmenter
(heart rate, how regular and how well backed its cycles are, the state durations, and the
cycle-synchronous log-mel image of `assistant.murmur.cycle_features`). "Abnormal" in PhysioNet 2016 also
covers pathology without a murmur (coronary artery disease), which the rhythm and the cycle image can
show where the murmur embedding cannot.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from assistant.data.audio import Recording
from assistant.data.segmentation import complete_cycles
from assistant.murmur.cycle_features import CycleConfig, cycle_image
from assistant.murmur.model import FrameStatistics, MurmurModel
from assistant.segment.segmenter import SegmentResult

# Parts of the vector, in order; each is standardised by the head, so their scales need not match.
GROUPS = ("embedding_mean", "embedding_std", "murmur_probabilities", "segmentation", "durations", "cycle_image")
DURATION_DIM = 12
SEGMENTATION_DIM = 9


@dataclass(frozen=True)
class FeatureConfig:
    cycle: CycleConfig = field(default_factory=lambda: CycleConfig(mel_groups=16))

    def dims(self, members: int, embedding_dim: int) -> dict[str, int]:
        image = self.cycle.mel_groups * sum(self.cycle.phase_bins) + 1
        return {"embedding_mean": members * embedding_dim, "embedding_std": members * embedding_dim,
                "murmur_probabilities": 3, "segmentation": SEGMENTATION_DIM, "durations": DURATION_DIM,
                "cycle_image": image}


def segmentation_vector(result: SegmentResult, duration_s: float) -> np.ndarray:
    """Heart rate and its confidence, quality and its parts, reliability, complete cycles per second."""
    s = result.stats
    parts = [s.agreement, s.periodicity, s.regularity, s.heart_audio] if s is not None else [0.0] * 4
    cycles = len(complete_cycles(result.states, closed=False))
    return np.array([result.heart_rate or 0.0, result.heart_rate_confidence, result.quality, float(result.reliable),
                     *parts, cycles / max(duration_s, 1e-6)], dtype=np.float32)


def duration_vector(result: SegmentResult) -> np.ndarray:
    """Mean and std of the S1, systole, S2 and diastole durations (s), of the cycle length, and the mean
    systolic and diastolic fractions of the cycle; zeros with fewer than two cycles."""
    cycles = complete_cycles(result.states, closed=False)
    if len(cycles) < 2:
        return np.zeros(DURATION_DIM, dtype=np.float32)
    d = np.array([[iv.end - iv.start for iv in c.phases] for c in cycles], dtype=np.float64) / result.frame_rate
    rr = d.sum(1)
    return np.concatenate([d.mean(0), d.std(0), [rr.mean(), rr.std(), (d[:, 1] / rr).mean(),
                                                 (d[:, 3] / rr).mean()]]).astype(np.float32)


def image_vector(stats: FrameStatistics, result: SegmentResult, config: CycleConfig) -> np.ndarray:
    """The cycle image flattened and a 'cycles found' flag (zeros without enough cycles)."""
    image = cycle_image(stats.log_mel, result.states, config)
    if image is None:
        return np.zeros(config.mel_groups * sum(config.phase_bins) + 1, dtype=np.float32)
    return np.concatenate([image.ravel(), [1.0]]).astype(np.float32)


@torch.inference_mode()
def recording_vector(murmur: MurmurModel, stats: FrameStatistics, result: SegmentResult, recording: Recording,
                     config: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """`stats`: `murmur.frame_statistics(recording)`; `result`: the segmenter's result for it."""
    logits = torch.stack([head.recording_logits(stats.mean[k][None])[0] for k, head in enumerate(murmur.heads)])
    probs = (logits / murmur.config.recording_temperature).softmax(-1).mean(0).numpy()
    parts = [stats.mean.numpy().ravel(), stats.std.numpy().ravel(), np.log(probs + 1e-4),
             segmentation_vector(result, recording.duration), duration_vector(result),
             image_vector(stats, result, config.cycle)]
    return np.concatenate(parts).astype(np.float32)
