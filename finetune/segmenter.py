"""Training the segmenter on CirCor `.tsv` annotations (the project split's training patients only).

Learns, from the same per-frame features the segmenter computes: the state prior, the
heart-rate-conditioned duration model, Springer's logistic-regression emission and the neural
emission; then sets the quality threshold from the training recordings and from generated
recordings with no heart cycles. Frames annotated 0 are left out of every fit.
"""

from __future__ import annotations

import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from assistant.data.circor import RecordingRef, read_folder
from assistant.data.segmentation import Segmentation, complete_cycles
from assistant.data.split import SplitConfig, split_patients
from assistant.errors import DatasetError
from assistant.segment.envelopes import FRAME_RATE, N_ENVELOPES, EnvelopeConfig, frame_features
from assistant.segment.hsmm import DurationModel
from assistant.segment.segmenter import Emission


@dataclass
class SegmenterTrainConfig:
    circor_root: Path = field(metadata={"help": "CirCor root with .tsv annotations (training split only)."})
    out: Path = field(metadata={"help": "Folder for segmenter.safetensors, segmenter.json and the loss plot."})
    seed: int = field(default=0, metadata={"help": "Random seed."})
    epochs: int = field(default=40, metadata={"help": "Passes over the training recordings."})
    batch_size: int = field(default=32, metadata={"help": "Crops per step."})
    crop_seconds: float = field(default=8.0, metadata={"help": "Length of each training crop."})
    learning_rate: float = field(default=3e-3, metadata={"help": "Peak learning rate (one-cycle schedule)."})
    weight_decay: float = field(default=1e-4, metadata={"help": "AdamW weight decay."})
    channels: int = field(default=48, metadata={"help": "Channels of the temporal convolutional network."})
    levels: int = field(default=7, metadata={"help": "Dilated residual blocks (dilations 1, 2, ... 2^(levels-1))."})
    emission: Emission = field(default="neural", metadata={"help": "Default emission saved: neural or logistic."})
    max_recordings: int | None = field(default=None, metadata={"help": "Use at most this many recordings."})
    non_heart: int = field(default=300, metadata={"help": "Generated non-heart recordings (the reject class)."})
    synthetic: int = field(default=200, metadata={"help": "Generated heart recordings added to the network's data."})
    workers: int = field(default=2, metadata={"help": "Processes computing features."})
    threads: int = field(default=1, metadata={"help": "torch threads."})
    split: SplitConfig = field(default_factory=SplitConfig)


@dataclass
class Example:
    name: str
    features: np.ndarray  # (T, F) float32
    labels: np.ndarray  # (T,) int8, 0-4


NOT_HEART = 5  # label of generated non-heart frames: the network's fifth output


def non_heart_examples(n: int, env: EnvelopeConfig, seed: int) -> list[Example]:
    """Generated recordings without heart sounds, every frame labelled NOT_HEART."""
    from finetune.nonheart import GENERATORS

    rng = np.random.default_rng(seed)
    kinds = list(GENERATORS)
    out = []
    for i in tqdm(range(n), desc="non-heart audio", unit="rec"):
        kind = kinds[i % len(kinds)]
        rec = GENERATORS[kind](rng, float(rng.uniform(6, 30)))
        features = frame_features(rec.samples, rec.rate, env)
        out.append(Example(f"{kind} {i}", features, np.full(features.shape[0], NOT_HEART, dtype=np.int8)))
    return out


def synthetic_examples(n: int, env: EnvelopeConfig, seed: int) -> list[Example]:
    """Generated heart recordings with exact labels (`assistant.data.synth`): they widen what the network accepts as
    heart audio beyond the one stethoscope of CirCor, so the reject class learns "no cycles", not "not CirCor"."""
    from assistant.data.synth import SynthConfig, random_labels, synthesize

    rng = np.random.default_rng(seed)
    out = []
    for i in tqdm(range(n), desc="synthetic heart audio", unit="rec"):
        _, murmurs = random_labels(rng)
        pcg = synthesize(SynthConfig(
            duration=float(rng.uniform(8, 30)),
            heart_rate=float(rng.uniform(55, 170)),
            hrv=float(rng.uniform(0.01, 0.06)),
            snr_db=float(rng.uniform(8, 35)),
            murmurs=murmurs,
            seed=int(rng.integers(1 << 31)),
        ))
        features = frame_features(pcg.recording.samples, pcg.recording.rate, env)
        out.append(Example(f"synthetic {i}", features, pcg.segmentation.states_at(FRAME_RATE, features.shape[0])))
    return out


def _example(ref: RecordingRef, env: EnvelopeConfig) -> Example:
    rec = ref.load()
    features = frame_features(rec.samples, rec.rate, env)
    labels = ref.segmentation().states_at(FRAME_RATE, features.shape[0])
    return Example(ref.name, features, labels)


def load_examples(refs: list[RecordingRef], env: EnvelopeConfig, workers: int, desc: str) -> list[Example]:
    if workers <= 1:
        return [_example(r, env) for r in tqdm(refs, desc=desc, unit="rec")]
    with ProcessPoolExecutor(workers) as pool:
        return list(tqdm(pool.map(_example, refs, [env] * len(refs), chunksize=8), total=len(refs), desc=desc,
                         unit="rec"))


def training_refs(config: SegmenterTrainConfig) -> list[RecordingRef]:
    patients = read_folder(config.circor_root)
    split = split_patients(patients, config.split)
    train = set(split.train)
    refs = [r for p in patients if p.patient_id in train for r in p.recordings if r.tsv_path is not None]
    if not refs:
        raise DatasetError(f"{config.circor_root}: no training recordings with a .tsv annotation")
    if config.max_recordings:
        rng = np.random.default_rng(config.seed)
        refs = [refs[i] for i in sorted(rng.permutation(len(refs))[: config.max_recordings])]
    return refs


def _cycle_durations(seg: Segmentation) -> list[tuple[float, float, float, float, float]]:
    """(S1, systole, S2, diastole, RR) durations of every complete cycle in the annotation."""
    return [(*(iv.end - iv.start for iv in c.phases), c.end - c.start) for c in complete_cycles(seg)]


def fit_durations(segmentations: list[Segmentation]) -> DurationModel:
    """Duration moments, with systole linear in the recording's median RR (what inference can estimate)."""
    rows = []
    for seg in segmentations:
        cycles = np.array(_cycle_durations(seg))
        if len(cycles) < 2:
            continue
        rr_median = np.median(cycles[:, 4])
        rows.append(np.column_stack([cycles, np.full(len(cycles), rr_median)]))
    if not rows:
        raise DatasetError("no complete annotated heart cycles to fit the duration model on")
    c = np.concatenate(rows)
    s1, sys_, s2, dia, rr = c[:, 0], c[:, 1], c[:, 2], c[:, 3], c[:, 5]
    slope, intercept = np.polyfit(rr, sys_, 1)
    sys_resid = sys_ - (intercept + slope * rr)
    dia_pred = np.maximum(rr - s1.mean() - (intercept + slope * rr) - s2.mean(), 0.06)
    dia_fraction = float(np.std((dia - dia_pred) / dia_pred))
    return DurationModel(
        s1_mean=float(s1.mean()),
        s1_std=float(s1.std()),
        s2_mean=float(s2.mean()),
        s2_std=float(s2.std()),
        systole_intercept=float(intercept),
        systole_slope=float(slope),
        systole_std=float(sys_resid.std()),
        diastole_std_fraction=dia_fraction,
        diastole_std_floor=0.006,
    )


def state_prior(examples: list[Example]) -> np.ndarray:
    counts = np.bincount(np.concatenate([e.labels for e in examples]), minlength=5)[1:].astype(np.float64)
    return counts / counts.sum()


def fit_logistic(examples: list[Example], seed: int, max_frames: int = 300_000):
    from sklearn.linear_model import LogisticRegression

    from assistant.segment.emission_models import LogisticEmission

    x = np.concatenate([e.features[:, :N_ENVELOPES] for e in examples])
    y = np.concatenate([e.labels for e in examples])
    keep = np.flatnonzero(y > 0)
    rng = np.random.default_rng(seed)
    keep = rng.choice(keep, size=min(max_frames, keep.size), replace=False)
    model = LogisticRegression(max_iter=500).fit(x[keep], y[keep] - 1)
    return LogisticEmission(model.coef_.astype(np.float64), model.intercept_.astype(np.float64))


def train_net(examples: list[Example], config: SegmenterTrainConfig):
    import torch
    from torch import nn

    from assistant.segment.emission_models import NetConfig, SegmenterNet

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    net = SegmenterNet(NetConfig(examples[0].features.shape[1], config.channels, levels=config.levels))
    opt = torch.optim.AdamW(net.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(examples) / config.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, config.learning_rate, total_steps=config.epochs * steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss(ignore_index=-1)
    crop = int(config.crop_seconds * FRAME_RATE)
    history = []
    bar = tqdm(range(config.epochs), desc="neural emission", unit="epoch")
    for _ in bar:
        net.train()
        order = rng.permutation(len(examples))
        losses = []
        for s in range(steps_per_epoch):
            batch = [examples[i] for i in order[s * config.batch_size : (s + 1) * config.batch_size]]
            x = np.zeros((len(batch), crop, batch[0].features.shape[1]), dtype=np.float32)
            y = np.full((len(batch), crop), -1, dtype=np.int64)
            for k, e in enumerate(batch):
                t = e.features.shape[0]
                a = int(rng.integers(0, max(t - crop, 0) + 1))
                n = min(crop, t - a)
                x[k, :n] = e.features[a : a + n]
                y[k, :n] = e.labels[a : a + n].astype(np.int64) - 1  # unannotated (0) becomes -1: ignored
            logits = net(torch.from_numpy(x))
            loss = loss_fn(logits.reshape(-1, logits.shape[-1]), torch.from_numpy(y).reshape(-1))
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
        history.append(float(np.mean(losses)))
        bar.set_postfix(loss=f"{history[-1]:.4f}")
    return net.eval(), history


def calibrate_quality(segmenter, examples: list[Example], seed: int, n_per_kind: int = 6) -> dict:
    """The quality threshold: above every generated non-heart recording (with a margin) and at least half the
    1st percentile of the real training recordings, but never above their 5th percentile.

    Returns the chosen threshold and the two quality distributions it came from.
    """
    from finetune.nonheart import GENERATORS

    open_gate = segmenter.with_config(min_quality=0.0, min_cycles=0)
    real = np.array([open_gate.segment_features(e.features).quality for e in tqdm(examples, desc="quality: real")])
    rng = np.random.default_rng(seed + 1)
    fake = {}
    for kind, make in tqdm(GENERATORS.items(), desc="quality: non-heart"):
        fake[kind] = [open_gate.segment(make(rng, float(rng.uniform(8, 30)))).quality for _ in range(n_per_kind)]
    worst_fake = max(max(v) for v in fake.values())
    threshold = float(min(max(worst_fake * 1.25 + 0.02, 0.5 * np.percentile(real, 1)), np.percentile(real, 5)))
    return {
        "threshold": threshold,
        "real_rejected": float(np.mean(real < threshold)),
        "real_quantiles": {q: float(np.percentile(real, q)) for q in (1, 5, 25, 50)},
        "non_heart_max": {k: float(max(v)) for k, v in fake.items()},
    }


def plot_history(history: list[float], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(np.arange(1, len(history) + 1), history)
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy (training crops)")
    ax.set_title("segmenter neural emission")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def train(config: SegmenterTrainConfig) -> Path:
    import torch

    from assistant.segment.segmenter import Segmenter, SegmenterConfig

    torch.set_num_threads(config.threads)
    env = EnvelopeConfig()
    refs = training_refs(config)
    examples = load_examples(refs, env, config.workers, desc="features")
    durations = fit_durations([r.segmentation() for r in refs])
    prior = state_prior(examples)
    logistic = fit_logistic(examples, config.seed)
    negatives = non_heart_examples(config.non_heart, env, config.seed + 7)
    synthetic = synthetic_examples(config.synthetic, env, config.seed + 13)
    net, history = train_net(examples + synthetic + negatives, config)
    seg = Segmenter(net, logistic, durations, prior, SegmenterConfig(emission=config.emission), env)
    quality = calibrate_quality(seg, examples, config.seed)
    seg = seg.with_config(min_quality=quality["threshold"])
    train_cfg = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items() if k != "out"}
    seg.metadata = {"training": {"config": train_cfg, "recordings": len(refs), "loss": history, "quality": quality}}
    config.out.mkdir(parents=True, exist_ok=True)
    seg.save(config.out)
    plot_history(history, config.out / "segmenter_training.png")
    return config.out
