"""The heart-cycle segmenter: S1, systole, S2 and diastole per 20 ms frame, heart rate and quality.

Features (`assistant.segment.envelopes`) -> emission posteriors (`assistant.segment.emission_models`) -> heart rate from
their autocorrelation -> heart-rate-conditioned durations and duration-aware Viterbi
(`assistant.segment.hsmm`). A recording whose decoded cycles the emission model does not back up, or whose
rhythm is not periodic, is reported as unreliable with every state 0 rather than with invented cycles.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
from safetensors.numpy import load_file, save_file

from assistant.data.audio import SLOWEST_BPM, Recording
from assistant.data.segmentation import Segmentation, State, complete_cycles
from assistant.errors import MurmurScopeError
from assistant.segment.emission_models import LogisticEmission, NetConfig, SegmenterNet
from assistant.segment.envelopes import FRAME_RATE, EnvelopeConfig, frame_features
from assistant.segment.gate import HeartEvidence, heart_evidence, steady_reason
from assistant.segment.hsmm import DurationModel, autocorrelation_heart_rate, viterbi

WEIGHTS_DIR = Path(__file__).parent / "weights"
WEIGHTS_NAME = "segmenter"
EMISSIONS = ("neural", "logistic")
NO_CYCLES = "no reliable heart cycles"


class WeightsError(MurmurScopeError):
    """Segmenter weights that are missing or do not match the code."""


# Which emission model scores the HSMM's states: the TCN, or Springer's logistic regression (the baseline).
Emission = Literal["neural", "logistic"]


@dataclass(frozen=True)
class SegmenterConfig:
    emission: Emission = field(default="neural", metadata={"help": "neural or logistic."})
    min_bpm: float = field(default=SLOWEST_BPM, metadata={"help": "Slowest heart rate searched (bpm)."})
    max_bpm: float = field(default=220.0, metadata={"help": "Fastest heart rate searched (bpm)."})
    min_quality: float = field(default=0.5, metadata={
        "help": "Quality below which a recording's cycles are not reliable."})
    min_cycles: int = field(default=3, metadata={
        "help": "Fewest complete cycles for a reliable result (fewer in a clip too short for more: thin evidence)."})
    max_not_heart: float = field(default=0.5, metadata={
        "help": "Not-heart probability above which a second of audio gets state 0."})


@dataclass(frozen=True)
class QualityStats:
    """What the quality score is made of, all in 0..1."""

    agreement: float  # mean posterior of the decoded state: does the emission model back the path up?
    periodicity: float  # autocorrelation peak at the heart period
    regularity: float  # 1 - coefficient of variation of the cycle lengths, clipped
    heart_audio: float  # mean probability that a frame is heart audio at all

    @property
    def quality(self) -> float:
        periodic = np.clip(self.periodicity, 0, 1) * np.clip(self.regularity, 0, 1)
        return float(np.clip(self.agreement, 0, 1) * np.sqrt(periodic) * np.clip(self.heart_audio, 0, 1))


@dataclass(frozen=True)
class SegmentResult:
    segmentation: Segmentation
    frame_rate: float
    states: np.ndarray
    heart_rate: float | None
    heart_rate_confidence: float
    quality: float
    reliable: bool
    message: str
    stats: QualityStats | None = field(default=None, compare=False)
    evidence: HeartEvidence | None = field(default=None, compare=False)
    thin: bool = False  # reliable, but on fewer complete cycles than `SegmenterConfig.min_cycles`

    def cycles(self) -> list[tuple[float, float]]:
        """(start_s, end_s) of each complete cycle (`complete_cycles`): an S1 onset to the next."""
        return [(float(c.start) / self.frame_rate, float(c.end) / self.frame_rate)
                for c in complete_cycles(self.states)]


class Segmenter:
    """Trained emission models, duration model and decoding settings; `segment` is thread-safe."""

    def __init__(
        self,
        net: SegmenterNet,
        logistic: LogisticEmission,
        durations: DurationModel,
        prior: np.ndarray,
        config: SegmenterConfig = SegmenterConfig(),
        envelopes: EnvelopeConfig = EnvelopeConfig(),
        metadata: dict | None = None,
    ):
        if config.emission not in EMISSIONS:
            raise MurmurScopeError(f"emission must be one of {', '.join(EMISSIONS)}, not {config.emission!r}")
        self.net = net.eval()
        self.logistic = logistic
        self.durations = durations
        self.prior = np.asarray(prior, dtype=np.float64)
        self.config = config
        self.envelopes = envelopes
        self.metadata = metadata or {}

    def with_config(self, **changes) -> Segmenter:
        return Segmenter(self.net, self.logistic, self.durations, self.prior, replace(self.config, **changes),
                         self.envelopes, self.metadata)

    # -- persistence ---------------------------------------------------------------------------------
    def save(self, directory: str | Path, name: str = WEIGHTS_NAME) -> tuple[Path, Path]:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {f"net.{k}": v.detach().cpu().numpy() for k, v in self.net.state_dict().items()}
        tensors["logistic.coef"] = self.logistic.coef.astype(np.float32)
        tensors["logistic.intercept"] = self.logistic.intercept.astype(np.float32)
        weights = directory / f"{name}.safetensors"
        # safetensors writes the raw buffer: a Fortran-ordered array (sklearn's coef_) would come back transposed.
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(weights))
        meta = {
            "format": 1,
            "net": asdict(self.net.config),
            "envelopes": asdict(self.envelopes),
            "durations": asdict(self.durations),
            "prior": [float(p) for p in self.prior],
            "config": asdict(self.config),
            **self.metadata,
        }
        manifest = directory / f"{name}.json"
        manifest.write_text(json.dumps(meta, indent=2) + "\n")
        return weights, manifest

    @classmethod
    def load(cls, directory: str | Path = WEIGHTS_DIR, name: str = WEIGHTS_NAME) -> Segmenter:
        import torch

        directory = Path(directory)
        weights, manifest = directory / f"{name}.safetensors", directory / f"{name}.json"
        if not weights.exists() or not manifest.exists():
            raise WeightsError(f"{directory}: no {name}.safetensors and {name}.json (train with "
                               "`murmurscope finetune segmenter`)")
        meta = json.loads(manifest.read_text())
        if meta.get("format") != 1:
            raise WeightsError(f"{manifest}: unknown format {meta.get('format')!r}")
        tensors = load_file(str(weights))
        net = SegmenterNet(NetConfig(**meta["net"]))
        net.load_state_dict({k[4:]: torch.from_numpy(v) for k, v in tensors.items() if k.startswith("net.")})
        logistic = LogisticEmission(tensors["logistic.coef"].astype(np.float64),
                                    tensors["logistic.intercept"].astype(np.float64))
        env = meta["envelopes"]
        envelopes = EnvelopeConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in env.items()})
        known = {"format", "net", "envelopes", "durations", "prior", "config"}
        return cls(net, logistic, DurationModel(**meta["durations"]), np.array(meta["prior"]),
                   _config_from(meta["config"]), envelopes, {k: v for k, v in meta.items() if k not in known})

    # -- inference -----------------------------------------------------------------------------------
    def posteriors(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """State posteriors (T, 4) and the probability that a frame is not heart audio at all (T,)."""
        if self.config.emission == "neural":
            return self.net.posteriors(features)
        post = self.logistic.posteriors(features)
        return post, np.zeros(post.shape[0])

    def segment(self, rec: Recording) -> SegmentResult:
        features = frame_features(rec.samples, rec.rate, self.envelopes)
        result = self.segment_features(features)
        # A steady tone or noise has no cycles, whatever the network makes of its envelope ripple
        # (a 50 Hz hum scores as heart audio and decodes as dozens of "cycles").
        evidence = heart_evidence(rec.samples, rec.rate)
        steady = steady_reason(evidence)
        if steady:
            result = _unreliable(len(result.states), result.stats, f"{NO_CYCLES} ({steady})")
        return replace(result, evidence=evidence)

    def segment_features(self, features: np.ndarray) -> SegmentResult:
        t = features.shape[0]
        post, not_heart = self.posteriors(features)
        # Springer's rate comes from the homomorphic envelope; the network's S1 posterior is a cleaner
        # pulse train (S2 does not show up at half the period), so the neural variant uses that.
        pulse = post[:, 0] if self.config.emission == "neural" else features[:, 0]
        hr = autocorrelation_heart_rate(pulse, FRAME_RATE, self.config.min_bpm, self.config.max_bpm)
        if not np.isfinite(hr.heart_rate):
            return _unreliable(t, QualityStats(0.0, hr.confidence, 0.0, 1.0 - float(not_heart.mean())))
        log_duration, log_survival = self.durations.log_tables(hr.heart_rate, FRAME_RATE)
        log_emission = np.log(post + 1e-6) - np.log(self.prior)
        decoded = viterbi(log_emission, log_duration, log_survival).states
        states = (decoded + 1).astype(np.int8)
        local = np.convolve(not_heart, np.full(FRAME_RATE, 1.0 / FRAME_RATE), mode="same")
        states[local > self.config.max_not_heart] = State.UNANNOTATED
        cycles = complete_cycles(states)
        lengths = np.array([c.end - c.start for c in cycles], dtype=np.float64)
        period = FRAME_RATE * 60.0 / hr.heart_rate
        if lengths.size >= 2:
            regularity = float(np.clip(1 - lengths.std() / lengths.mean(), 0, 1))
        elif lengths.size == 1:  # one cycle has no spread: how well it matches the autocorrelation's period
            regularity = float(np.clip(1 - abs(lengths[0] - period) / period, 0, 1))
        else:
            regularity = 0.0
        stats = QualityStats(float(post[np.arange(t), decoded].mean()), hr.confidence, regularity,
                             1.0 - float(not_heart.mean()))
        # A clip of d periods holds at least floor(d) - 1 complete cycles whatever its phase (each runs from an S1
        # onset to the next); a short one is held to that, at least one, and its result is marked thin.
        needed = max(1, min(self.config.min_cycles, int(t / period) - 1))
        if stats.quality < self.config.min_quality or len(cycles) < needed:
            return _unreliable(t, stats)
        return SegmentResult(
            segmentation=Segmentation.from_states(states, FRAME_RATE),
            frame_rate=float(FRAME_RATE),
            states=states,
            heart_rate=float(60.0 * FRAME_RATE / np.median(lengths)) if lengths.size else None,
            heart_rate_confidence=float(np.sqrt(np.clip(hr.confidence, 0, 1) * regularity)),
            quality=stats.quality,
            reliable=True,
            message=f"{len(cycles)} heart cycle{'s' if len(cycles) != 1 else ''}",
            stats=stats,
            thin=len(cycles) < self.config.min_cycles,
        )


def _config_from(values: dict) -> SegmenterConfig:
    names = {f.name for f in fields(SegmenterConfig)}
    return SegmenterConfig(**{k: v for k, v in values.items() if k in names})


def _unreliable(t: int, stats: QualityStats | None, message: str = NO_CYCLES) -> SegmentResult:
    states = np.zeros(t, dtype=np.int8)
    return SegmentResult(
        segmentation=Segmentation.from_states(states, FRAME_RATE),
        frame_rate=float(FRAME_RATE),
        states=states,
        heart_rate=None,
        heart_rate_confidence=0.0,
        quality=stats.quality if stats else 0.0,
        reliable=False,
        message=message,
        stats=stats,
    )


@lru_cache(maxsize=1)
def default_segmenter() -> Segmenter:
    """The shipped weights, loaded once per process."""
    return Segmenter.load()


def segment_recording(rec: Recording, segmenter: Segmenter | None = None) -> SegmentResult:
    return (segmenter or default_segmenter()).segment(rec)
