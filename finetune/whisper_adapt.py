"""Adapting the pretrained Whisper encoder to heart sounds (Biermann et al., seed paper 002).

- Continued pretraining (CP) on unlabelled recordings. Whisper's own objective needs transcripts, so we use
  masked acoustic modelling (Liu et al.'s Mockingjay/TERA; the generative objective of Audio-MAE, the model
  CP helped most in the seed): spans of the input log-mel are replaced by each band's mean over the crop, and
  a linear layer on the encoder output reconstructs the two mel frames under each output frame (L1, masked
  frames only). The layer is thrown away afterwards.
- Fine-tuning (FT) on the murmur recording labels: the whole encoder and a linear layer on its time-averaged
  output, class-weighted cross-entropy (as in the seed).

Both train every encoder weight on random crops and write a Hugging Face Whisper folder, so that
`assistant.murmur.whisper.load_whisper` reads an adapted encoder exactly as it reads the original.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from assistant.data.circor import Patient, RecordingRef
from assistant.data.labels import MURMUR_CLASSES
from assistant.errors import ConfigError, MurmurScopeError
from assistant.murmur.whisper import WhisperAudioEncoder, load_whisper
from eval.cv_probe import recording_label


@dataclass
class AdaptConfig:
    crop_seconds: float = field(default=3.0, metadata={"help": "Length of each training crop (s)."})
    batch_size: int = field(default=16, metadata={"help": "Crops per step."})
    lr: float = field(default=5e-5, metadata={"help": "Encoder learning rate (AdamW, linear warm-up and decay)."})
    warmup: float = field(default=0.1, metadata={"help": "Share of the steps spent warming the learning rate up."})
    seed: int = field(default=0, metadata={"help": "Random seed (crops, masks, the new linear layer)."})
    threads: int = field(default=1, metadata={"help": "torch CPU threads."})

    def __post_init__(self) -> None:
        if self.crop_seconds < 0.5:
            raise ConfigError(f"--crop-seconds must be at least 0.5, not {self.crop_seconds}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, not {self.batch_size}")


@dataclass
class CPConfig(AdaptConfig):
    steps: int = field(default=200, metadata={"help": "Optimisation steps of continued pretraining."})
    lr: float = field(default=1e-4, metadata={"help": "Encoder learning rate (AdamW, linear warm-up and decay)."})
    mask_fraction: float = field(default=0.3, metadata={"help": "Share of the encoder frames masked per crop."})
    mask_span: int = field(default=5, metadata={"help": "Length of each masked span in encoder frames (20 ms)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.mask_fraction < 1.0:
            raise ConfigError(f"--mask-fraction must lie in (0, 1), not {self.mask_fraction}")
        if self.steps < 1:
            raise ConfigError(f"--cp-steps must be at least 1, not {self.steps}")


@dataclass
class FTConfig(AdaptConfig):
    epochs: int = field(default=3, metadata={"help": "Passes over the recordings (one crop each per pass)."})
    head_lr: float = field(default=1e-3, metadata={"help": "Learning rate of the new linear layer."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.epochs < 1:
            raise ConfigError(f"--ft-epochs must be at least 1, not {self.epochs}")


def load_waveforms(refs: list[RecordingRef], rate: int, progress: bool = True,
                   desc: str = "loading") -> tuple[list[np.ndarray], list[RecordingRef]]:
    """Each readable recording at `rate`, float16 to halve the memory of ~2,700 recordings; unreadable ones are
    left out (with their refs), as every other training command does."""
    waves, kept = [], []
    for ref in tqdm(refs, desc=desc, disable=not progress, leave=False):
        try:
            waves.append(ref.load(rate=rate).samples.astype(np.float16))
        except MurmurScopeError:
            continue
        kept.append(ref)
    return waves, kept


def random_crops(waves: list[np.ndarray], idx: np.ndarray, n: int, rng: np.random.Generator) -> torch.Tensor:
    """(len(idx), n) float32: one random window of each chosen recording, zero-padded when shorter."""
    out = np.zeros((len(idx), n), np.float32)
    for j, i in enumerate(idx):
        w = waves[i]
        start = int(rng.integers(0, len(w) - n + 1)) if len(w) > n else 0
        piece = w[start : start + n]
        out[j, : len(piece)] = piece
    return torch.from_numpy(out)


def span_mask(batch: int, frames: int, fraction: float, span: int, rng: np.random.Generator) -> torch.Tensor:
    """(batch, frames) bool: spans of `span` frames starting at random, until `fraction` of them are covered."""
    mask = np.zeros((batch, frames), bool)
    want = max(1, int(round(fraction * frames)))
    for b in range(batch):
        while mask[b].sum() < want:
            s = int(rng.integers(0, max(1, frames - span + 1)))
            mask[b, s : s + span] = True
    return torch.from_numpy(mask)


def _schedule(optimizer: torch.optim.Optimizer, steps: int, warmup: float) -> torch.optim.lr_scheduler.LambdaLR:
    w = max(1, int(warmup * steps))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / w, max(0.0, (steps - s) / max(1, steps - w))))


def _step(loss: torch.Tensor, encoder: nn.Module, optimizer: torch.optim.Optimizer,
          scheduler: torch.optim.lr_scheduler.LRScheduler) -> float:
    optimizer.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(encoder.parameters(), 1.0)
    optimizer.step()
    scheduler.step()
    return loss.item()


def masked_prediction_loss(encoder: WhisperAudioEncoder, head: nn.Linear, crops: torch.Tensor,
                           config: CPConfig, rng: np.random.Generator) -> torch.Tensor:
    mel = encoder.to_mel(crops)  # (B, n_mels, F)
    b, n_mels, f = mel.shape
    t = (f + 1) // 2  # the second convolution has stride 2
    mask = span_mask(b, t, config.mask_fraction, config.mask_span, rng)
    frame_mask = mask.repeat_interleave(2, dim=1)[:, :f]
    masked = torch.where(frame_mask[:, None, :], mel.mean(-1, keepdim=True), mel)
    states = encoder.frames_from_mel(masked)  # (B, t, dim)
    target = nn.functional.pad(mel, (0, 2 * t - f)).reshape(b, n_mels, t, 2).permute(0, 2, 3, 1)
    error = (head(states).reshape(b, t, 2, n_mels) - target).abs().mean(dim=(-2, -1))
    return error[mask].mean()


def continue_pretraining(encoder: WhisperAudioEncoder, waves: list[np.ndarray], config: CPConfig,
                         progress: bool = True) -> dict:
    """Masked log-mel prediction on `waves` (at the encoder's rate); the encoder is updated in place."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    n = int(config.crop_seconds * encoder.rate)
    head = nn.Linear(encoder.dim, 2 * encoder.to_mel.config.n_mels)
    optimizer = torch.optim.AdamW(list(encoder.parameters()) + list(head.parameters()), lr=config.lr)
    scheduler = _schedule(optimizer, config.steps, config.warmup)
    encoder.train()
    losses = []
    bar = tqdm(range(config.steps), desc="continued pretraining", disable=not progress)
    for _ in bar:
        crops = random_crops(waves, rng.integers(0, len(waves), config.batch_size), n, rng)
        losses.append(_step(masked_prediction_loss(encoder, head, crops, config, rng), encoder, optimizer, scheduler))
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    encoder.eval()
    return {"objective": "masked log-mel prediction (L1, masked frames)", "recordings": len(waves),
            "loss_first": float(np.mean(losses[:10])), "loss_last": float(np.mean(losses[-10:]))}


def fine_tune(encoder: WhisperAudioEncoder, waves: list[np.ndarray], labels: np.ndarray, n_classes: int,
              config: FTConfig, progress: bool = True) -> dict:
    """The encoder and a linear layer on its mean output, class-weighted cross-entropy on one random crop per
    recording per epoch; the encoder is updated in place."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    n = int(config.crop_seconds * encoder.rate)
    head = nn.Linear(encoder.dim, n_classes)
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    weight = torch.tensor(np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / n_classes, 0.0),
                          dtype=torch.float32)
    per_epoch = max(1, len(waves) // config.batch_size)
    steps = config.epochs * per_epoch
    optimizer = torch.optim.AdamW([{"params": encoder.parameters(), "lr": config.lr},
                                   {"params": head.parameters(), "lr": config.head_lr}])
    scheduler = _schedule(optimizer, steps, config.warmup)
    encoder.train()
    losses, correct = [], []
    bar = tqdm(total=steps, desc="fine-tuning", disable=not progress)
    for _ in range(config.epochs):
        order = rng.permutation(len(waves))
        for s in range(per_epoch):
            idx = order[s * config.batch_size : (s + 1) * config.batch_size]
            y = torch.from_numpy(labels[idx]).long()
            logits = head(encoder.frames(random_crops(waves, idx, n, rng)).mean(1))
            losses.append(_step(nn.functional.cross_entropy(logits, y, weight=weight), encoder, optimizer, scheduler))
            correct.append(float((logits.argmax(1) == y).float().mean()))
            bar.update()
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    bar.close()
    encoder.eval()
    return {"objective": "class-weighted cross-entropy on recording labels", "recordings": len(waves),
            "steps": steps, "loss_first": float(np.mean(losses[:10])), "loss_last": float(np.mean(losses[-10:])),
            "train_accuracy_last_epoch": float(np.mean(correct[-per_epoch:]))}


def save_encoder(encoder: WhisperAudioEncoder, base: Path, out: Path, log: dict) -> Path:
    """`base`'s Whisper folder with the adapted encoder weights, written to `out` (the decoder is kept, so the
    folder loads wherever the original does), with `adapt.json` saying how it was made."""
    from transformers import WhisperModel

    model = WhisperModel.from_pretrained(str(base))
    model.encoder.load_state_dict(encoder.encoder.state_dict())
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp)
    (tmp / "adapt.json").write_text(json.dumps(log, indent=1, default=str) + "\n")
    tmp.replace(out)  # the folder exists only once complete, so an interrupted run is redone
    return out


def adapt(base: Path, out: Path, train: Callable[[WhisperAudioEncoder], dict], config: AdaptConfig) -> Path:
    """Load `base`, run `train(encoder)` (CP or FT) and save; `out` is reused when already there."""
    if (out / "config.json").is_file():
        return out
    torch.set_num_threads(config.threads)
    encoder = load_whisper(base)
    started = time.perf_counter()
    log = train(encoder)
    log.update(config=asdict(config), base=str(base), minutes=(time.perf_counter() - started) / 60)
    out.parent.mkdir(parents=True, exist_ok=True)
    return save_encoder(encoder, base, out, log)


def fine_tune_patients(base: Path, out: Path, patients: list[Patient], ft: FTConfig, progress: bool = True,
                       desc: str = "FT audio", **info) -> Path:
    """`base` fine-tuned on the recording labels of `patients` (FT, whole encoder), saved at `out`; reused there."""
    refs = [(r, p) for p in patients for r in p.recordings]

    def run(encoder):
        waves, kept = load_waveforms([r for r, _ in refs], encoder.rate, progress, desc=desc)
        by_name = {r.name: p for r, p in refs}
        labels = np.array([recording_label(by_name[r.name], r.site) for r in kept])
        log = fine_tune(encoder, waves, labels, len(MURMUR_CLASSES), ft, progress)
        return {**log, "patients": len(patients), **info}

    return adapt(base, out, run, ft)
