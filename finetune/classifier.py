"""Training the murmur classifier: `murmurscope finetune classifier`.

Stages, all on the project split (validation patients are never trained on):
1. log-mel of every recording, cached under `cache_dir` (keyed by the front-end and the file list);
2. the CNN encoder, trained on random crops with recording-level labels (Present where the site is
   among the patient's murmur locations, Absent elsewhere, Unknown for Unknown patients), early
   stopping on the class-weighted validation loss; skipped for a frozen M2D encoder;
3. clip embeddings of every recording: the whole recording plus `views` random sub-windows, which
   serve as data augmentation for the heads;
   stages 2-3 run once per ensemble member, each from its own seed (in parallel worker processes
   when `workers` > 1);
4. the members' multi-site heads, trained in lockstep with early stopping on the ensemble's validation
   weighted accuracy (the members' probabilities are averaged); temperatures fitted on validation;
5. the feature heads on Present training patients, class-balanced; what they read per site (the
   clip embedding, the cycle-synchronous log-mel of `assistant.murmur.cycle_features` from the segmenter's
   states, or both) and the number of epochs chosen by 5-fold cross-validation inside the training
   patients (validation holds ~17 Present patients: too few to select on).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from assistant.data.circor import Patient, read_folder
from assistant.data.labels import FEATURES, MURMUR_CLASSES
from assistant.data.split import SplitConfig, split_patients
from assistant.errors import ConfigError, MurmurScopeError
from assistant.murmur.cycle_features import CycleConfig, cycle_vector
from assistant.murmur.encoders import CNNConfig, CNNEncoder, Encoder
from assistant.murmur.heads import TOKENS, HeadConfig
from assistant.murmur.melspec import LogMel
from assistant.murmur.model import (
    FEATURE_INPUTS,
    MurmurConfig,
    MurmurModel,
    any_recording_rule,
    standardise_cycles,
    token_index,
)
from eval.metrics import uar, weighted_accuracy
from finetune.device_augment import DeviceAugmentConfig, DeviceAugmenter, check_parts, speech_bank
from finetune.losses import LossConfig, head_loss, spec_augment_tokens

FRAMES_PER_EMBEDDING = 8  # CNNEncoder pools time by 2 three times


@dataclass
class ClassifierTrainConfig:
    circor_root: Path = field(metadata={"help": "Labelled CirCor folder (e.g. ../shared/circor-dev)."})
    out: Path = field(metadata={"help": "Folder for murmur.json, murmur.safetensors and training.json."})
    cache_dir: Path = field(default=Path("build/classifier"), metadata={
        "help": "Where log-mels are cached between runs."})
    seed: int = field(default=0, metadata={"help": "Random seed (member k uses seed + k)."})
    encoder: Literal["cnn", "m2d"] = field(default="cnn", metadata={
        "help": "cnn (trained here) or m2d (frozen; needs --m2d-checkpoint)."})
    m2d_checkpoint: Path | None = field(default=None, metadata={"help": "Official M2D checkpoint file (.pth)."})
    crop_seconds: float = field(default=3.0, metadata={"help": "Length of each CNN training crop (s)."})
    crops_per_recording: int = field(default=2, metadata={"help": "Crops drawn from each recording per CNN epoch."})
    encoder_epochs: int = field(default=30, metadata={"help": "Max CNN epochs (early stopping on val loss)."})
    encoder_patience: int = field(default=6, metadata={"help": "CNN epochs without a better val loss before stopping."})
    batch_size: int = field(default=32, metadata={"help": "CNN crops per step."})
    lr: float = field(default=2e-3, metadata={"help": "CNN encoder learning rate (AdamW)."})
    head_epochs: int = field(default=200, metadata={
        "help": "Max head epochs (early stopping on val weighted accuracy)."})
    head_patience: int = field(default=40, metadata={
        "help": "Head epochs without a better val weighted accuracy before stopping."})
    head_lr: float = field(default=3e-4, metadata={"help": "Multi-site head learning rate (AdamW)."})
    views: int = field(default=8, metadata={
        "help": "Random sub-clip embeddings per recording (augmentation for the head)."})
    view_seconds: float = field(default=8.0, metadata={"help": "Length of each sub-clip view (s)."})
    feature_epochs: int = field(default=300, metadata={"help": "Feature-head epochs (full batch)."})
    feature_epoch_candidates: tuple[int, ...] = field(default=(25, 50, 100, 200, 300), metadata={
        "help": "Feature-head epoch counts compared by cross-validation (comma-separated)."})
    feature_folds: int = field(default=5, metadata={
        "help": "Cross-validation folds choosing the feature heads' input and epochs."})
    feature_hidden: int = field(default=64, metadata={"help": "Hidden width of the feature heads."})
    feature_lr: float = field(default=3e-3, metadata={"help": "Feature-head learning rate (AdamW)."})
    feature_inputs: tuple[str, ...] = field(default=FEATURE_INPUTS, metadata={
        "help": "Feature-head inputs compared: embedding, cycle, both (comma-separated)."})
    cycle: CycleConfig = field(default_factory=CycleConfig)
    # An ensemble of independently seeded members (Lakshminarayanan et al., 2017): one head stopped early
    # on 92 validation patients is a noisy draw; the mean of five is steadier. Fixed up front, not tuned.
    members: int = field(default=5, metadata={"help": "Ensemble members, each from its own seed."})
    # Share of the training patients each member keeps out of its encoder and trains its head on, so the
    # head sees embeddings as unseen patients will give them (split-sample stacking); 0 = both see all.
    head_fraction: float = field(default=0.5, metadata={
        "help": "Share of training patients each member keeps out of its encoder for its head (0 = none)."})
    workers: int = field(default=2, metadata={"help": "Processes training members in parallel."})
    threads: int = field(default=1, metadata={"help": "torch CPU threads per process (1 is fastest on 2 cores)."})
    progress: bool = field(default=True, metadata={"help": "Show progress bars."})
    # Empty: the recipe as before, bit for bit (the encoder reads cached log-mel crops).
    device_augment: tuple[str, ...] = field(default=(), metadata={
        "help": "Device augmentation of the CNN's training crops, parts comma-separated: response (random "
                "frequency response, band limits, resampling chains), level (gain, AGC, clipping), noise "
                "(coloured noise, hum, rubbing, speech); empty = none."})
    augment: DeviceAugmentConfig = field(default_factory=DeviceAugmentConfig)
    cnn: CNNConfig = field(default_factory=CNNConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    # Train on these patients only (the project split then divides them): one fold of a cross-validation.
    patients: tuple[str, ...] | None = field(default=None, metadata={
        "help": "Patient ids to train on (default: every labelled patient in the folder)."})

    def __post_init__(self) -> None:
        if self.members < 1:
            raise ConfigError(f"--members must be at least 1, not {self.members}")
        if not 0.0 <= self.head_fraction < 1.0:
            raise ConfigError(f"--head-fraction must lie in [0, 1), not {self.head_fraction}")
        self.device_augment = check_parts(tuple(self.device_augment))
        if self.device_augment and self.encoder != "cnn":
            raise ConfigError(f"--device-augment trains the CNN encoder; a frozen {self.encoder} encoder has none")


@dataclass
class Item:
    """One recording with its training label."""

    patient_id: str
    site: str | None
    name: str
    label: int
    train: bool
    index: int = -1


def recording_label(patient: Patient, site: str | None) -> str:
    murmur = patient.labels.murmur
    if murmur == "Present":
        return "Present" if site in patient.labels.murmur_locations else "Absent"
    return murmur


def _class_weights(labels: np.ndarray, n: int) -> torch.Tensor:
    counts = np.bincount(labels[labels >= 0], minlength=n).astype(float)
    if not counts.any():
        return torch.ones(n)
    w = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)
    return torch.tensor(w / w[counts > 0].mean(), dtype=torch.float32)


class Data:
    """Patients, recordings, labels and cached log-mels of a labelled CirCor folder."""

    def __init__(self, config: ClassifierTrainConfig):
        self.config = config
        everyone = [p for p in read_folder(config.circor_root) if p.labels is not None]
        keep = set(config.patients) if config.patients is not None else None
        patients = [p for p in everyone if keep is None or p.patient_id in keep]
        if not patients:
            raise MurmurScopeError(f"{config.circor_root}: no labelled patients to train on")
        split = split_patients(patients, config.split)
        self.patients = patients
        self.val_ids = set(split.val)
        self.items = [Item(p.patient_id, r.site, r.name, MURMUR_CLASSES.index(recording_label(p, r.site)),
                           p.patient_id not in self.val_ids)
                      for p in patients for r in p.recordings]
        self.refs = [r for p in patients for r in p.recordings]
        # The caches cover the whole folder, so every fold of a cross-validation reads the same files.
        self.cache_refs = [r for p in everyone for r in p.recordings]
        self.skipped: list[str] = []

    def load_mels(self, mel: LogMel) -> list[np.ndarray | None]:
        key = [mel.config.to_dict(), [str(r.audio_path) for r in self.cache_refs]]

        def log_mel(samples: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return mel(torch.from_numpy(samples)[None])[0].numpy()

        mels = self._cached("mels", key, mel.config.rate, log_mel, "log-mel")
        self.skipped += [f"{it.name}: unreadable" for it, m in zip(self.items, mels) if m is None]
        return mels

    def load_waves(self, rate: int) -> list[np.ndarray | None]:
        """Every recording's waveform at `rate` (float16), cached like the log-mels: device augmentation
        works on waveforms."""
        key = ["waveform", rate, [str(r.audio_path) for r in self.cache_refs]]
        return self._cached("waves", key, rate, lambda samples: samples, "waveforms")

    def _cached(self, kind: str, key: list, rate: int, transform, desc: str) -> list[np.ndarray | None]:
        """`transform(samples)` of every recording of the folder as float16, from `cache_dir`/kind-<hash>.npz
        (made on first use), aligned with `items`; None where a recording could not be read."""
        c = self.config
        path = c.cache_dir / f"{kind}-{hashlib.sha1(json.dumps(key).encode()).hexdigest()[:12]}.npz"
        if not path.exists():
            arrays = {}
            for ref in tqdm(self.cache_refs, desc=desc, disable=not c.progress):
                try:
                    rec = ref.load(rate=rate)
                except MurmurScopeError as e:
                    self.skipped.append(str(e))
                    continue
                arrays[ref.name] = transform(rec.samples).astype(np.float16)
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(path, **arrays)
        with np.load(path) as z:
            return [z[it.name] if it.name in z else None for it in self.items]

    def load_states(self, rate: int) -> list[np.ndarray | None]:
        """The shipped segmenter's states (50 frames/s) for every recording, cached like the log-mels."""
        from assistant.segment.segmenter import WEIGHTS_DIR, WEIGHTS_NAME, default_segmenter

        c = self.config
        segmenter_id = hashlib.sha1((WEIGHTS_DIR / f"{WEIGHTS_NAME}.safetensors").read_bytes()).hexdigest()
        key = hashlib.sha1(json.dumps([segmenter_id, rate, [str(r.audio_path) for r in self.cache_refs]]).encode())
        path = c.cache_dir / f"states-{key.hexdigest()[:12]}.npz"
        if not path.exists():
            segmenter, states = default_segmenter(), {}
            for ref in tqdm(self.cache_refs, desc="segmenter", disable=not c.progress):
                try:
                    states[ref.name] = segmenter.segment(ref.load(rate=rate)).states
                except MurmurScopeError:
                    continue
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(path, **states)
        with np.load(path) as z:
            return [z[it.name] if it.name in z else None for it in self.items]


def _crop(m: np.ndarray, frames: int, rng: np.random.Generator) -> np.ndarray:
    """A random `frames`-long window along the last axis (log-mel frames or waveform samples)."""
    if m.shape[-1] < frames:  # tile short recordings rather than pad with silence
        m = np.tile(m, (1,) * (m.ndim - 1) + (frames // m.shape[-1] + 1,))
    start = rng.integers(0, m.shape[-1] - frames + 1)
    return m[..., start : start + frames]


def augmented_mels(waves: list[np.ndarray], idx: np.ndarray, frames: int, hop: int, augmenter: DeviceAugmenter,
                   mel: LogMel, rng: np.random.Generator) -> torch.Tensor:
    """(B, n_mels, frames) log-mels of random waveform crops of recordings `idx`, each through the
    device augmenter, by the encoder's own front end (one batch)."""
    crops = np.stack([augmenter(_crop(waves[i], frames * hop, rng).astype(np.float32), rng) for i in idx])
    with torch.no_grad():
        return mel(torch.from_numpy(crops))[..., :frames]  # centred frames: one more than samples / hop


def _spec_augment(x: torch.Tensor, rng: np.random.Generator, time_width: int = 25, freq_width: int = 6) -> torch.Tensor:
    x = x.clone()
    fill = x.mean()
    for b in range(x.shape[0]):
        for _ in range(2):
            t = rng.integers(0, time_width + 1)
            t0 = rng.integers(0, x.shape[2] - t + 1)
            x[b, :, t0 : t0 + t] = fill
            f = rng.integers(0, freq_width + 1)
            f0 = rng.integers(0, x.shape[1] - f + 1)
            x[b, f0 : f0 + f, :] = fill
    return x


def _patient_calls(items: list[Item], probs: list[np.ndarray]) -> dict[str, str]:
    by_patient: dict[str, list[dict[str, float]]] = {}
    for it, p in zip(items, probs):
        by_patient.setdefault(it.patient_id, []).append(dict(zip(MURMUR_CLASSES, p.tolist())))
    return {pid: any_recording_rule(ps)[0] for pid, ps in by_patient.items()}


def stage_patients(data: Data, config: ClassifierTrainConfig) -> tuple[set[str], set[str]]:
    """(encoder patients, head patients) among the training patients of the member seeded `config.seed`."""
    train = [p for p in data.patients if p.patient_id not in data.val_ids]
    everyone = {p.patient_id for p in train}
    if config.head_fraction <= 0 or config.encoder == "m2d":  # a frozen encoder was trained on none of them
        return everyone, everyone
    split = split_patients(train, SplitConfig(config.head_fraction, config.seed + 5))
    return set(split.train), set(split.val)


def train_encoder(data: Data, mels: list[np.ndarray | None], config: ClassifierTrainConfig, log: dict,
                  waves: list[np.ndarray | None] | None = None) -> CNNEncoder:
    """The CNN encoder on random crops; with `config.device_augment`, crops of `waves` through the device
    augmenter. Validation (early stopping) reads the clean log-mels, as recordings from home come."""
    c = config
    encoder_patients = stage_patients(data, c)[0]
    rng = np.random.default_rng(c.seed)
    augmenter = None
    if c.device_augment:
        if waves is None:
            raise ValueError("device augmentation needs the waveforms (Data.load_waves)")
        augmenter = DeviceAugmenter.for_training(c.device_augment, c.augment, c.cnn.mel.rate, c.cache_dir)
    encoder = CNNEncoder(c.cnn)
    classifier = nn.Sequential(nn.Dropout(0.3), nn.Linear(encoder.dim, len(MURMUR_CLASSES)))
    params = [*encoder.parameters(), *classifier.parameters()]
    opt = torch.optim.AdamW(params, lr=c.lr, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, c.encoder_epochs)
    train = [i for i, it in enumerate(data.items) if it.patient_id in encoder_patients and mels[i] is not None]
    val = [i for i, it in enumerate(data.items) if not it.train and mels[i] is not None]
    weights = _class_weights(np.array([data.items[i].label for i in train]), len(MURMUR_CLASSES))
    labels = {p.patient_id: p.labels.murmur for p in data.patients}
    frames = int(c.crop_seconds * c.cnn.mel.frames_per_second)
    best, best_state, stale, history = float("inf"), None, 0, []
    bar = tqdm(range(c.encoder_epochs), desc=f"encoder (seed {c.seed})", disable=not c.progress)
    for epoch in bar:
        encoder.train(), classifier.train()
        order = rng.permutation(np.repeat(train, c.crops_per_recording))
        losses = []
        for b0 in range(0, len(order), c.batch_size):
            idx = order[b0 : b0 + c.batch_size]
            if augmenter is None:
                x = torch.from_numpy(np.stack([_crop(mels[i], frames, rng) for i in idx]).astype(np.float32))
            else:
                x = augmented_mels(waves, idx, frames, c.cnn.mel.hop_length, augmenter, encoder.to_mel, rng)
            x = _spec_augment(x, rng)
            y = torch.tensor([data.items[i].label for i in idx])
            logits = classifier(encoder.frames_from_mel(x).mean(1))
            loss = nn.functional.cross_entropy(logits, y, weight=weights, label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        sched.step()
        encoder.eval(), classifier.eval()
        with torch.inference_mode():
            logits = torch.cat([classifier(encoder.frames_from_mel(torch.from_numpy(mels[i].astype(np.float32))[None])
                                           .mean(1)) for i in val])
        y_val = torch.tensor([data.items[i].label for i in val])
        val_loss = nn.functional.cross_entropy(logits, y_val, weight=weights).item()
        calls = _patient_calls([data.items[i] for i in val], list(logits.softmax(-1).numpy()))
        truth = [labels[pid] for pid in calls]
        wa, ur = weighted_accuracy(truth, list(calls.values())), uar(truth, list(calls.values()))
        history.append({"epoch": epoch, "loss": float(np.mean(losses)), "val_loss": val_loss,
                        "val_wa_any_recording": wa, "val_uar_any_recording": ur})
        bar.set_postfix(loss=f"{np.mean(losses):.3f}", val_loss=f"{val_loss:.3f}", wa=f"{wa:.3f}")
        # The encoder stops on the class-weighted validation loss: the patient-level weighted accuracy
        # of a recording classifier swings with a few threshold crossings and stopped training too early.
        if val_loss < best:
            best, stale = val_loss, 0
            best_state = {k: v.clone() for k, v in encoder.state_dict().items()}
        else:
            stale += 1
            if stale >= c.encoder_patience:
                break
    encoder.load_state_dict(best_state)
    log["encoder"] = {"best_val_loss": best, "history": history}
    return encoder.eval()


@torch.inference_mode()
def embed_views(encoder: Encoder, data: Data, mels: list[np.ndarray | None] | None, config: ClassifierTrainConfig
                ) -> tuple[np.ndarray, np.ndarray]:
    """(N, 1 + views, D) clip embeddings (whole recording first) and an (N,) usable flag."""
    c = config
    rng = np.random.default_rng(c.seed + 1)
    out = np.zeros((len(data.items), 1 + c.views, encoder.dim), dtype=np.float32)
    ok = np.zeros(len(data.items), dtype=bool)
    frame_rate = (c.cnn.mel.frames_per_second / FRAMES_PER_EMBEDDING if isinstance(encoder, CNNEncoder)
                  else 100.0 / 16)
    width = max(1, int(c.view_seconds * frame_rate))
    for i, ref in enumerate(tqdm(data.refs, desc="embeddings", disable=not c.progress)):
        if mels is not None:
            if mels[i] is None:
                continue
            frames = encoder.frames_from_mel(torch.from_numpy(mels[i].astype(np.float32))[None])[0]
        else:
            try:
                rec = ref.load(rate=encoder.rate)
            except MurmurScopeError as e:
                data.skipped.append(str(e))
                continue
            frames = encoder.frames(torch.from_numpy(rec.samples)[None])[0]
        ok[i] = True
        out[i, 0] = frames.mean(0).numpy()
        for v in range(c.views):
            start = rng.integers(0, max(1, frames.shape[0] - width + 1))
            out[i, 1 + v] = frames[start : start + width].mean(0).numpy()
    return out, ok


@dataclass
class PatientTensors:
    ids: list[str]
    tokens: torch.Tensor  # (P, 1 + views, S, D)
    mask: torch.Tensor  # (P, S)
    target: torch.Tensor  # (P,)
    site_target: torch.Tensor  # (P, S)
    train: np.ndarray  # (P,) bool


def patient_tensors(data: Data, emb: np.ndarray, ok: np.ndarray) -> PatientTensors:
    views, dim = emb.shape[1], emb.shape[2]
    by_patient: dict[str, list[int]] = {}
    for i, it in enumerate(data.items):
        if ok[i]:
            by_patient.setdefault(it.patient_id, []).append(i)
    patients = [p for p in data.patients if p.patient_id in by_patient]
    tokens = torch.zeros(len(patients), views, len(TOKENS), dim)
    mask = torch.zeros(len(patients), len(TOKENS), dtype=torch.bool)
    site_target = torch.full((len(patients), len(TOKENS)), MURMUR_CLASSES.index("Absent"), dtype=torch.long)
    for k, p in enumerate(patients):
        counts = torch.zeros(len(TOKENS))
        for i in by_patient[p.patient_id]:
            t = token_index(data.items[i].site)
            tokens[k, :, t] += torch.from_numpy(emb[i])
            counts[t] += 1
            # Class order Present < Unknown < Absent: a token mixing recordings takes the most urgent label.
            site_target[k, t] = min(int(site_target[k, t]), data.items[i].label)
        mask[k] = counts > 0
        tokens[k, :, mask[k]] /= counts[mask[k]][None, :, None]
    target = torch.tensor([MURMUR_CLASSES.index(p.labels.murmur) for p in patients])
    train = np.array([p.patient_id not in data.val_ids for p in patients])
    return PatientTensors([p.patient_id for p in patients], tokens, mask, target, site_target, train)


def _evaluate_head(head: nn.Module, t: PatientTensors, idx: np.ndarray) -> tuple[float, float, torch.Tensor]:
    head.eval()
    with torch.inference_mode():
        logits = head(t.tokens[idx, 0], t.mask[idx]).logits
    pred = [MURMUR_CLASSES[j] for j in logits.argmax(-1).tolist()]
    truth = [MURMUR_CLASSES[j] for j in t.target[idx].tolist()]
    return weighted_accuracy(truth, pred), uar(truth, pred), logits


class HeadRun:
    """One member's multi-site head under training: model, optimiser, schedule and its own random streams."""

    def __init__(self, head_config: HeadConfig, t: PatientTensors, config: ClassifierTrainConfig,
                 train_idx: np.ndarray):
        from assistant.murmur.heads import MultiSiteHead

        self.t, self.config = t, config
        torch.manual_seed(config.seed)
        self.gen = torch.Generator().manual_seed(config.seed)
        self.rng = np.random.default_rng(config.seed + 2)
        self.head = MultiSiteHead(head_config)
        self.opt = torch.optim.AdamW(self.head.parameters(), lr=config.head_lr, weight_decay=1e-2)
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, config.head_epochs)
        self.train_idx = train_idx
        self.weights = _class_weights(t.target[self.train_idx].numpy(), len(MURMUR_CLASSES))
        self.site_weights = _class_weights(t.site_target[self.train_idx][t.mask[self.train_idx]].numpy(),
                                           len(MURMUR_CLASSES))

    def epoch(self) -> float:
        """One pass over the training patients, each seen through a random view; the mean loss."""
        t, c, rng = self.t, self.config, self.rng
        self.head.train()
        n_views = t.tokens.shape[1]
        order = rng.permutation(self.train_idx)
        losses = []
        for b0 in range(0, len(order), c.batch_size):
            idx = order[b0 : b0 + c.batch_size]
            view = torch.from_numpy(rng.integers(1, n_views, len(idx))) if n_views > 1 else torch.zeros(len(idx))
            x = t.tokens[torch.from_numpy(idx), view.long()]
            x, mask = spec_augment_tokens(x, t.mask[idx], generator=self.gen)
            parts = head_loss(self.head(x, mask), t.target[idx], t.site_target[idx], mask, c.loss, self.weights,
                              self.site_weights)
            self.opt.zero_grad()
            parts["total"].backward()
            self.opt.step()
            losses.append(parts["total"].item())
        self.sched.step()
        return float(np.mean(losses))


def train_heads(head_config: HeadConfig, tensors: list[PatientTensors], configs: list[ClassifierTrainConfig],
                head_patients: list[set[str]], log: dict) -> list[nn.Module]:
    """The members' heads, trained in lockstep with early stopping on the *ensemble's* validation weighted
    accuracy (ties broken by UAR): the model that ships is the ensemble, so that is what the stopping epoch
    is chosen for, once, rather than once per member."""
    from assistant.murmur.model import ensemble_logits

    c = configs[0]
    runs = [HeadRun(head_config, t, mc, np.flatnonzero([pid in ids for pid in t.ids]))
            for t, mc, ids in zip(tensors, configs, head_patients)]
    val_idx = np.flatnonzero(~tensors[0].train)
    truth = [MURMUR_CLASSES[j] for j in tensors[0].target[val_idx].tolist()]
    best, best_epoch, best_states, stale, history = (-1.0, -1.0), 0, None, 0, []
    bar = tqdm(range(c.head_epochs), desc=f"heads ({len(runs)} members)", disable=not c.progress)
    for epoch in bar:
        losses = [run.epoch() for run in runs]
        logits = ensemble_logits(torch.stack([_evaluate_head(run.head, run.t, val_idx)[2] for run in runs]))
        calls = [MURMUR_CLASSES[j] for j in logits.argmax(-1).tolist()]
        wa, ur = weighted_accuracy(truth, calls), uar(truth, calls)
        history.append({"epoch": epoch, "loss": float(np.mean(losses)), "val_wa": wa, "val_uar": ur})
        bar.set_postfix(loss=f"{np.mean(losses):.3f}", wa=f"{wa:.3f}", uar=f"{ur:.3f}")
        if (wa, ur) > best:
            best, best_epoch, stale = (wa, ur), epoch, 0
            best_states = [{k: v.clone() for k, v in run.head.state_dict().items()} for run in runs]
        else:
            stale += 1
            if stale >= c.head_patience:
                break
    for run, state in zip(runs, best_states):
        run.head.load_state_dict(state)
    log["head"] = {"best_val_wa": best[0], "best_val_uar": best[1], "best_epoch": best_epoch,
                   "epochs_run": len(history), "history": history}
    return [run.head.eval() for run in runs]


def fit_temperature(logits: torch.Tensor, target: torch.Tensor) -> float:
    """The temperature minimising validation NLL (a 1-d grid search; argmax is unchanged)."""
    grid = np.exp(np.linspace(np.log(0.1), np.log(10.0), 400))
    nll = [nn.functional.cross_entropy(logits / g, target).item() for g in grid]
    return float(grid[int(np.argmin(nll))])


def feature_targets(data: Data, t: PatientTensors) -> dict[str, torch.Tensor]:
    by_id = {p.patient_id: p for p in data.patients}
    out = {}
    for name, vocab in FEATURES.items():
        vals = [by_id[pid].labels.feature(name) for pid in t.ids]
        out[name] = torch.tensor([vocab.index(v) if v in vocab else -1 for v in vals])
    present = t.target == MURMUR_CLASSES.index("Present")
    out["diastolic"] = torch.where(present, (out["diastolic_timing"] >= 0).long(), torch.tensor(-1))
    for name in FEATURES:
        out[name] = torch.where(present, out[name], torch.tensor(-1))
    return out


SELECTION_FEATURES = ("most_audible_location", "systolic_timing", "systolic_shape", "systolic_grading",
                      "systolic_pitch", "systolic_quality")


def _fit_features(features: nn.Module, t: PatientTensors, targets: dict[str, torch.Tensor], idx: np.ndarray,
                  epochs: int, config: ClassifierTrainConfig, seed: int,
                  checkpoints: dict[int, object] | None = None) -> float:
    """Full-batch class-balanced training on patients `idx`; `checkpoints[e](features)` runs after epoch e."""
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    vocab_sizes = {name: len(v) for name, v in FEATURES.items()} | {"diastolic": 2}
    weights = {name: _class_weights(targets[name][idx].numpy(), n) if name != "diastolic" else None
               for name, n in vocab_sizes.items()}
    opt = torch.optim.AdamW(features.parameters(), lr=config.feature_lr, weight_decay=5e-2)
    n_views = t.tokens.shape[1]
    loss = torch.zeros(())
    for epoch in range(1, epochs + 1):
        features.train()
        view = torch.from_numpy(rng.integers(1, n_views, len(idx))) if n_views > 1 else torch.zeros(len(idx))
        x, mask = spec_augment_tokens(t.tokens[torch.from_numpy(idx), view.long()], t.mask[idx], drop_site=0.0,
                                      generator=gen)
        out = features(x, mask)
        loss = torch.zeros(())
        for name in vocab_sizes:
            y = targets[name][idx]
            keep = y >= 0
            if keep.sum() == 0:
                continue
            loss = loss + nn.functional.cross_entropy(out[name][keep], y[keep], weight=weights[name])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if checkpoints and epoch in checkpoints:
            features.eval()
            checkpoints[epoch](features)
    features.eval()
    return float(loss.item())


def select_features(inputs: dict[str, PatientTensors], targets: dict[str, torch.Tensor], idx: np.ndarray,
                    config: ClassifierTrainConfig, log: dict) -> tuple[str, int]:
    """Input and epoch count by 5-fold cross-validation inside the training patients (mean UAR of the
    location and systolic heads): the validation split holds too few Present patients to choose on."""
    from assistant.murmur.heads import FeatureHeads

    candidates = [e for e in config.feature_epoch_candidates if e <= config.feature_epochs] or [config.feature_epochs]
    rng = np.random.default_rng(config.seed + 4)
    folds = np.array_split(rng.permutation(idx), config.feature_folds)
    scores = {(name, e): {f: [] for f in SELECTION_FEATURES} for name in inputs for e in candidates}
    for name, t in inputs.items():
        for k in tqdm(range(len(folds)), desc=f"feature-head CV ({name})", disable=not config.progress):
            held = folds[k]
            fit = np.concatenate([f for j, f in enumerate(folds) if j != k])

            def score(features: nn.Module, epoch: int, held=held, t=t, name=name) -> None:
                with torch.inference_mode():
                    out = features(t.tokens[torch.from_numpy(held), 0], t.mask[held])
                for f in SELECTION_FEATURES:
                    y = targets[f][held]
                    keep = y >= 0
                    truth = [FEATURES[f][i] for i in y[keep].tolist()]
                    pred = [FEATURES[f][i] for i in out[f][keep].argmax(-1).tolist()]
                    scores[name, epoch][f].append(uar(truth, pred, FEATURES[f]))

            torch.manual_seed(config.seed + 10 + k)
            features = FeatureHeads(t.tokens.shape[-1], config.feature_hidden)
            _fit_features(features, t, targets, fit, max(candidates), config, config.seed + 10 + k,
                          {e: (lambda f, e=e: score(f, e)) for e in candidates})
    per_feature = {key: {f: float(np.nanmean(v)) for f, v in fs.items()} for key, fs in scores.items()}
    mean = {key: float(np.mean(list(v.values()))) for key, v in per_feature.items()}
    order = list(inputs)
    best = max(mean, key=lambda key: (round(mean[key], 4), -order.index(key[0]), -key[1]))
    log["feature_cv"] = {"mean_uar": {f"{n}/{e}": v for (n, e), v in mean.items()},
                         "uar_by_feature": {f"{n}/{e}": v for (n, e), v in per_feature.items()},
                         "chosen_input": best[0], "chosen_epochs": best[1]}
    return best


def train_features(features: nn.Module, t: PatientTensors, targets: dict[str, torch.Tensor], epochs: int,
                   config: ClassifierTrainConfig, log: dict) -> dict[str, int]:
    idx = np.flatnonzero(t.train & (targets["diastolic"].numpy() >= 0))
    n_train = {name: int((targets[name][idx] >= 0).sum()) for name in FEATURES}
    torch.manual_seed(config.seed + 3)
    final_loss = _fit_features(features, t, targets, idx, epochs, config, config.seed + 3)
    log["features"] = {"n_train": n_train, "epochs": epochs, "final_loss": final_loss}
    return n_train


def cycle_statistics(vectors: np.ndarray, data: Data) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of the cycle images over training recordings where cycles were found."""
    use = np.array([it.train for it in data.items]) & (vectors[:, -1] > 0)
    if not use.any():
        raise MurmurScopeError("the segmenter found heart cycles in no training recording")
    images = vectors[use, :-1]
    return torch.from_numpy(images.mean(0)), torch.from_numpy(images.std(0) + 1e-3)


def cycle_tokens(data: Data, t: PatientTensors, ok: np.ndarray, mels: list[np.ndarray | None],
                 config: ClassifierTrainConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(P, views, S, cycle dim) standardised cycle tokens aligned with `t`, and the standardisation."""
    c = config
    states = data.load_states(c.cnn.mel.rate)
    vectors = np.stack([cycle_vector(m.astype(np.float32), s, c.cycle) if m is not None and s is not None
                        else np.zeros(c.cycle.dim, dtype=np.float32) for m, s in zip(mels, states)])
    mean, std = cycle_statistics(vectors, data)
    z = standardise_cycles(torch.from_numpy(vectors), mean, std).numpy()
    cycles = patient_tensors(data, z[:, None], ok).tokens.expand(-1, t.tokens.shape[1], -1, -1)
    return cycles.contiguous(), mean, std


def feature_inputs(t: PatientTensors, cycles: torch.Tensor | None, names: tuple[str, ...]) -> dict[str, PatientTensors]:
    """Patient tensors for each candidate feature-head input."""
    inputs = {"embedding": t} if "embedding" in names else {}
    if cycles is not None and "cycle" in names:
        inputs["cycle"] = replace(t, tokens=cycles)
    if cycles is not None and "both" in names:
        inputs["both"] = replace(t, tokens=torch.cat([t.tokens, cycles], -1))
    return inputs


@dataclass
class Member:
    """One ensemble member's encoder and the embeddings it gives every recording."""

    encoder: Encoder
    embeddings: np.ndarray  # (N, 1 + views, D)
    usable: np.ndarray  # (N,) bool: the recording could be embedded
    log: dict


def embed_member(data: Data, mels: list[np.ndarray | None], config: ClassifierTrainConfig,
                 waves: list[np.ndarray | None] | None = None) -> Member:
    """Stages 2-3 for the seed `config.seed`: train a CNN encoder, embed every recording."""
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    log: dict = {"seed": config.seed}
    encoder = train_encoder(data, mels, config, log, waves)
    # The views (the heads' inputs) come from the clean cached log-mels: device augmentation is for the
    # encoder, which learns to give the same embedding whatever the device; the heads are trained on a
    # fixed set of views computed once, where a random device drawn per view would be frozen into them,
    # and their early stopping and temperatures are chosen on clean validation recordings.
    return Member(encoder, *embed_views(encoder, data, mels, config), log)


def _member_process(config: ClassifierTrainConfig) -> tuple[dict, np.ndarray, np.ndarray, dict]:
    """Worker-process entry: rebuild the data (log-mels and waveforms come from the cache) and train one encoder."""
    data = Data(config)
    waves = data.load_waves(config.cnn.mel.rate) if config.device_augment else None
    m = embed_member(data, data.load_mels(LogMel(config.cnn.mel)), config, waves)
    return {k: v.numpy() for k, v in m.encoder.state_dict().items()}, m.embeddings, m.usable, m.log


def embed_members(data: Data, mels: list[np.ndarray | None] | None, configs: list[ClassifierTrainConfig],
                  waves: list[np.ndarray | None] | None = None) -> list[Member]:
    """One member per config; a frozen M2D encoder is shared and embeds once."""
    c = configs[0]
    if c.encoder == "m2d":
        if c.m2d_checkpoint is None:
            raise MurmurScopeError("--encoder m2d needs --m2d-checkpoint PATH (the official weights are not shipped)")
        from assistant.murmur.m2d import load_m2d

        encoder = load_m2d(c.m2d_checkpoint)
        emb, ok = embed_views(encoder, data, None, c)
        return [Member(encoder, emb, ok, {"seed": mc.seed}) for mc in configs]
    if c.encoder != "cnn":
        raise MurmurScopeError(f"--encoder must be cnn or m2d, not {c.encoder!r}")
    if c.workers <= 1 or len(configs) == 1:
        return [embed_member(data, mels, mc, waves) for mc in configs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # Workers train without their own bars (interleaved bars are unreadable); this one counts encoders.
    quiet = [replace(mc, progress=False) for mc in configs]
    results: dict[int, tuple] = {}
    # spawn, not fork: a forked torch thread pool can deadlock.
    with ProcessPoolExecutor(min(c.workers, len(configs)), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_member_process, mc): k for k, mc in enumerate(quiet)}
        bar = tqdm(as_completed(futures), total=len(futures), desc=f"encoders ({c.workers} workers)",
                   disable=not c.progress)
        for future in bar:
            results[futures[future]] = future.result()
    members = []
    for k, mc in enumerate(configs):
        state, emb, ok, log = results[k]
        encoder = CNNEncoder(mc.cnn)
        encoder.load_state_dict({n: torch.from_numpy(v) for n, v in state.items()})
        members.append(Member(encoder.eval(), emb, ok, log))
    return members


def train_classifier(config: ClassifierTrainConfig) -> dict:
    """Train every part, write `config.out`/murmur.{json,safetensors} and training.json; return the log."""
    from assistant.murmur.model import ensemble_logits

    c = config
    torch.set_num_threads(c.threads)
    torch.manual_seed(c.seed)
    started = time.perf_counter()
    log: dict = {"config": json.loads(json.dumps(asdict(c), default=str))}
    data = Data(c)
    log["patients"] = {"train": int(sum(p.patient_id not in data.val_ids for p in data.patients)),
                       "val": len(data.val_ids)}
    mels = data.load_mels(LogMel(c.cnn.mel)) if c.encoder == "cnn" else None
    waves = None
    if c.device_augment:  # made here once, so parallel members only read the caches
        waves = data.load_waves(c.cnn.mel.rate)
        if "noise" in c.device_augment and "speech" in c.augment.noise_kinds:
            speech_bank(c.cache_dir, c.cnn.mel.rate)
    # Seeds seed, seed + 1000, ...: member 0 alone is the single model of the same seed.
    configs = [replace(c, seed=c.seed + 1000 * k) for k in range(c.members)]
    members = embed_members(data, mels, configs, waves)
    log["members"] = [m.log for m in members]
    tensors = [patient_tensors(data, m.embeddings, m.usable) for m in members]
    head_config = replace(c.head, in_dim=members[0].encoder.dim)
    heads = train_heads(head_config, tensors, configs, [stage_patients(data, mc)[1] for mc in configs], log)
    first = tensors[0]
    val_idx = np.flatnonzero(~first.train)
    val_logits = ensemble_logits(torch.stack([_evaluate_head(h, t, val_idx)[2] for h, t in zip(heads, tensors)]))
    temperature = fit_temperature(val_logits, first.target[val_idx])
    val_items = [i for i, it in enumerate(data.items) if not it.train and members[0].usable[i]]
    with torch.inference_mode():
        rec_logits = ensemble_logits(torch.stack([h.recording_logits(torch.from_numpy(m.embeddings[val_items, 0]))
                                                  for h, m in zip(heads, members)]))
    rec_temperature = fit_temperature(rec_logits, torch.tensor([data.items[i].label for i in val_items]))
    uses_cycles = bool(set(c.feature_inputs) - {"embedding"})
    cycles, cycle_mean, cycle_std = None, torch.zeros(0), torch.zeros(0)
    if uses_cycles:
        if mels is None:  # the cycle images use our 4 kHz log-mel
            mels = data.load_mels(LogMel(c.cnn.mel))
        cycles, cycle_mean, cycle_std = cycle_tokens(data, first, members[0].usable, mels, c)
    targets = feature_targets(data, first)
    present_train = np.flatnonzero(first.train & (targets["diastolic"].numpy() >= 0))
    feature_input, feature_epochs = select_features(feature_inputs(first, cycles, c.feature_inputs), targets,
                                                    present_train, c, log)
    model_config = MurmurConfig(
        encoder=c.encoder, cnn=c.cnn, m2d_checkpoint=str(c.m2d_checkpoint) if c.m2d_checkpoint else None,
        head=head_config, feature_hidden=c.feature_hidden,
        temperature=temperature, recording_temperature=rec_temperature, feature_input=feature_input, cycle=c.cycle,
        members=c.members,
    )
    encoders = [members[0].encoder] if c.encoder == "m2d" else [m.encoder for m in members]
    model = MurmurModel(model_config, encoders=encoders)
    for head, trained in zip(model.heads, heads):
        head.load_state_dict(trained.state_dict())
    if model_config.uses_cycles:
        model.cycle_mean.copy_(cycle_mean)
        model.cycle_std.copy_(cycle_std)
    n_train = {}
    for features, t, m, mc in zip(model.features, tensors, members, configs):
        n_train = train_features(features, feature_inputs(t, cycles, (feature_input,))[feature_input], targets,
                                 feature_epochs, mc, m.log)
    model.config = replace(model_config, n_train=n_train)
    model.eval()
    model.save(c.out)
    log.update(temperature=temperature, recording_temperature=rec_temperature, skipped=data.skipped,
               minutes=(time.perf_counter() - started) / 60)
    (c.out / "training.json").write_text(json.dumps(log, indent=2) + "\n")
    return log
