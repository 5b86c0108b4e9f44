"""Log-mel spectrograms with torch.stft and librosa's mel filterbank (no torchaudio).

Two front-ends: `M2D_MEL` is exactly the one the official M2D checkpoints were pre-trained with
(16 kHz, n_fft 400, hop 160, 80 bins 50-8000 Hz). CirCor is recorded at 4 kHz, so after resampling
to 16 kHz everything above 2 kHz is empty and about half of M2D's mel bins carry nothing;
`CIRCOR_MEL` spends all its bins below 2 kHz instead and is what our own encoder uses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import librosa
import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class MelConfig:
    rate: int = field(default=16000, metadata={"help": "Sample rate the log-mel is computed at (Hz)."})
    n_fft: int = field(default=400, metadata={"help": "FFT size."})
    win_length: int = field(default=400, metadata={"help": "Window length (samples)."})
    hop_length: int = field(default=160, metadata={"help": "Hop length (samples)."})
    n_mels: int = field(default=80, metadata={"help": "Mel bins."})
    f_min: float = field(default=50.0, metadata={"help": "Lowest mel frequency (Hz)."})
    f_max: float = field(default=8000.0, metadata={"help": "Highest mel frequency (Hz)."})
    eps: float = field(default=float(torch.finfo(torch.float32).eps), metadata={"help": "Floor added before the log."})

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def frames_per_second(self) -> float:
        return self.rate / self.hop_length


M2D_MEL = MelConfig()
CIRCOR_MEL = MelConfig(rate=4000, n_fft=256, win_length=256, hop_length=80, n_mels=48, f_min=25.0, f_max=2000.0)


class LogMel(nn.Module):
    """(B, T) waveforms -> (B, n_mels, frames) natural-log power mel spectrogram, centred frames."""

    def __init__(self, config: MelConfig = M2D_MEL):
        super().__init__()
        self.config = config
        fb = librosa.filters.mel(sr=config.rate, n_fft=config.n_fft, n_mels=config.n_mels, fmin=config.f_min,
                                 fmax=config.f_max, htk=False, norm="slaney")
        self.register_buffer("filterbank", torch.from_numpy(fb.astype(np.float32)), persistent=False)
        self.register_buffer("window", torch.hann_window(config.win_length), persistent=False)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        c = self.config
        spec = torch.stft(waveforms, n_fft=c.n_fft, hop_length=c.hop_length, win_length=c.win_length,
                          window=self.window, center=True, pad_mode="reflect", return_complex=True)
        power = spec.real.square() + spec.imag.square()
        mel = torch.matmul(self.filterbank, power)
        return (mel + c.eps).log()
