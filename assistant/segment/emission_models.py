"""Emission models of the segmenter: per-frame state posteriors P(state | features).

`LogisticEmission` is Springer's: a (multinomial) logistic regression over the four envelopes of one
frame. `SegmenterNet` is the neural variant in the spirit of the CUED entry of the 2022 Challenge: a small
non-causal temporal convolutional network (residual blocks with dilations 1, 2, 4, ... 32) over the
envelopes and the log spectrogram, so each frame sees about 2.5 s of context, more than a heart
cycle. Convolutions rather than a GRU keep training and inference fast on one CPU core. Both feed
the same HSMM, which divides the posterior by the state prior to get a scaled likelihood.

The network has a fifth output, "no heart sound here", trained on generated non-heart audio (noise,
hum, speech, music, random knocks; `finetune.nonheart`), so that the segmenter can tell a recording
with no cycles from a hard one instead of forcing four states onto it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from assistant.segment.envelopes import N_ENVELOPES
from assistant.segment.hsmm import N_STATES


@dataclass(frozen=True)
class NetConfig:
    n_features: int
    channels: int = 32
    kernel: int = 3
    levels: int = 6
    dropout: float = 0.1
    reject_class: bool = True


class _Block(nn.Module):
    def __init__(self, channels: int, kernel: int, dilation: int, dropout: float):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel, padding=dilation * (kernel // 2), dilation=dilation)
        self.norm = nn.BatchNorm1d(channels)
        self.mix = nn.Conv1d(channels, channels, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.drop(self.mix(nn.functional.gelu(self.norm(self.conv(h)))))


class SegmenterNet(nn.Module):
    def __init__(self, config: NetConfig):
        super().__init__()
        self.config = config
        self.inp = nn.Conv1d(config.n_features, config.channels, 1)
        self.blocks = nn.Sequential(
            *(_Block(config.channels, config.kernel, 2**i, config.dropout) for i in range(config.levels))
        )
        self.head = nn.Conv1d(config.channels, N_STATES + int(config.reject_class), 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(batch, frames, features) -> (batch, frames, 4 or 5) logits; the fifth is "not a heart sound"."""
        return self.head(self.blocks(self.inp(features.transpose(1, 2)))).transpose(1, 2)

    @torch.inference_mode()
    def posteriors(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """P(state | features, heart audio) (T, 4) and P(not heart audio | features) (T,)."""
        logits = self(torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))[None])[0]
        p = torch.softmax(logits, dim=-1).numpy().astype(np.float64)
        heart = p[:, :N_STATES]
        none = p[:, N_STATES] if self.config.reject_class else np.zeros(p.shape[0])
        return heart / heart.sum(axis=1, keepdims=True), none


@dataclass(frozen=True)
class LogisticEmission:
    """Multinomial logistic regression over the Springer envelopes (the first N_ENVELOPES features)."""

    coef: np.ndarray  # (4, N_ENVELOPES)
    intercept: np.ndarray  # (4,)

    def posteriors(self, features: np.ndarray) -> np.ndarray:
        z = features[:, :N_ENVELOPES].astype(np.float64) @ self.coef.T + self.intercept
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)
