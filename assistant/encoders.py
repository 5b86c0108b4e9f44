"""Audio encoders behind one interface: waveforms in, frame or clip embeddings out.

`CNNEncoder` is the lightweight log-mel CNN we train on CirCor (the shipped default); the M2D ViT
(assistant/m2d.py) implements the same interface for users who bring the official checkpoint.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from assistant.melspec import CIRCOR_MEL, LogMel, MelConfig


class Encoder(nn.Module):
    """`rate` is the sample rate the waveforms must have; `dim` the embedding size."""

    rate: int
    dim: int

    def frames(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B, L, dim) embeddings along time."""
        raise NotImplementedError

    def clip(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B, dim): the mean of the frame embeddings (M2D's scene embedding)."""
        return self.frames(waveforms).mean(dim=1)


@dataclass(frozen=True)
class CNNConfig:
    mel: MelConfig = CIRCOR_MEL
    channels: tuple[int, ...] = (16, 32, 64, 128)
    dim: int = 128
    dropout: float = 0.2

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CNNConfig:
        return cls(mel=MelConfig(**d["mel"]), channels=tuple(d["channels"]), dim=d["dim"], dropout=d["dropout"])


class ConvBlock(nn.Sequential):
    def __init__(self, c_in: int, c_out: int):
        super().__init__(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class CNNEncoder(Encoder):
    """Log-mel -> per-bin BatchNorm -> 4 conv blocks with 2x2 pooling -> per-frame projection.

    One frame embedding per 8 spectrogram frames (160 ms with CIRCOR_MEL); frequency is pooled to
    3 bands and flattened rather than averaged, so pitch survives into the embedding.
    """

    def __init__(self, config: CNNConfig | None = None):
        super().__init__()
        config = config or CNNConfig()
        self.config = config
        self.rate = config.mel.rate
        self.dim = config.dim
        self.to_mel = LogMel(config.mel)
        self.bn0 = nn.BatchNorm1d(config.mel.n_mels)
        blocks, c_in = [], 1
        for c_out in config.channels:
            blocks.append(ConvBlock(c_in, c_out))
            c_in = c_out
        self.blocks = nn.ModuleList(blocks)
        self.band_pool = nn.AdaptiveAvgPool2d((3, None))
        self.dropout = nn.Dropout(config.dropout)
        self.proj = nn.Linear(3 * c_in, config.dim)

    def frames_from_mel(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, T) log-mel -> (B, T // 8, dim)."""
        x = self.bn0(mel).unsqueeze(1)
        for i, block in enumerate(self.blocks):
            x = block(x)
            # Time is pooled by 2 in the first three blocks only: 160 ms frames keep systole resolved.
            x = nn.functional.avg_pool2d(x, (2, 2) if i < 3 else (2, 1)) if x.shape[2] >= 2 else x
        x = self.band_pool(x)
        b, c, f, t = x.shape
        x = x.permute(0, 3, 1, 2).reshape(b, t, c * f)
        return nn.functional.gelu(self.proj(self.dropout(x)))

    def frames(self, waveforms: torch.Tensor) -> torch.Tensor:
        return self.frames_from_mel(self.to_mel(waveforms))
