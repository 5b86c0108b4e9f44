"""Audio encoders behind one interface: waveforms in, frame or clip embeddings out.

`CNNEncoder` is the lightweight log-mel CNN we train on CirCor (the shipped default); the M2D ViT
(assistant/murmur/m2d.py) implements the same interface for users who bring the official checkpoint.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import torch
from torch import nn

from assistant.murmur.melspec import CIRCOR_MEL, LogMel, MelConfig


class Encoder(nn.Module, abc.ABC):
    """`rate` is the sample rate the waveforms must have; `dim` the embedding size."""

    rate: int
    dim: int

    @abc.abstractmethod
    def frames(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B, L, dim) embeddings along time."""

    def clip(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B, dim): the mean of the frame embeddings (M2D's scene embedding)."""
        return self.frames(waveforms).mean(dim=1)


@dataclass(frozen=True)
class CNNConfig:
    mel: MelConfig = CIRCOR_MEL
    channels: tuple[int, ...] = field(default=(64, 96, 128, 128), metadata={
        "help": "Channels of the CNN's convolution blocks (comma-separated)."})
    kernel: int = field(default=5, metadata={"help": "Convolution kernel size."})
    dim: int = field(default=128, metadata={"help": "Embedding width."})
    dropout: float = field(default=0.2, metadata={"help": "Dropout of the encoder."})

    @classmethod
    def from_dict(cls, d: dict) -> CNNConfig:
        d = dict(d)
        return cls(mel=MelConfig(**d.pop("mel")), channels=tuple(d.pop("channels")), **d)


class ConvBlock(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int):
        super().__init__(nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2, bias=False), nn.BatchNorm1d(c_out),
                         nn.ReLU(inplace=True))


class CNNEncoder(Encoder):
    """Log-mel -> per-recording band centring -> per-bin BatchNorm -> 1-d convolutions over time.

    The mel bins are the input channels of temporal convolutions (a TDNN), several times cheaper on
    CPU than 2-d convolutions at the same width, so training sees more crops per minute. Time is
    pooled by 2 in the first three blocks: one frame embedding per 8 spectrogram frames (160 ms with
    CIRCOR_MEL), fine enough to resolve systole and diastole.
    """

    def __init__(self, config: CNNConfig | None = None):
        super().__init__()
        config = config or CNNConfig()
        self.config = config
        self.rate = config.mel.rate
        self.dim = config.dim
        self.to_mel = LogMel(config.mel)
        self.bn0 = nn.BatchNorm1d(config.mel.n_mels)
        blocks, c_in = [], config.mel.n_mels
        for c_out in config.channels:
            blocks.append(ConvBlock(c_in, c_out, config.kernel))
            c_in = c_out
        self.blocks = nn.ModuleList(blocks)
        self.dropout = nn.Dropout(config.dropout)
        self.proj = nn.Linear(c_in, config.dim)

    def frames_from_mel(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, T) log-mel -> (B, T // 8, dim)."""
        # Centring each band on the recording's own mean removes the stethoscope's and the chest's
        # fixed colouring; what remains is how each band changes over the heart cycle.
        x = self.bn0(mel - mel.mean(dim=-1, keepdim=True))
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i < 3 and x.shape[-1] >= 2:
                x = nn.functional.avg_pool1d(x, 2)
        return nn.functional.gelu(self.proj(self.dropout(x.transpose(1, 2))))

    def frames(self, waveforms: torch.Tensor) -> torch.Tensor:
        return self.frames_from_mel(self.to_mel(waveforms))
