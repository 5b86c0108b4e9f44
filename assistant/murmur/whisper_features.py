"""Murmur features read from a fine-tuned Whisper encoder, beside the CNN's feature heads.

The 5-fold CV of seed 002's study (docs/classifier.md) found that Whisper tiny.en, fine-tuned on the murmur
recording labels and read out by linear probes at its middle layer, describes the systolic timing, shape,
pitch and quality better than the CNN's heads, and the location and grading worse. So the shipped murmur
model keeps its CNN for the call, the location and the grading, and takes those four features from here.

Per recording: the centre `seconds` (band-limited to the 4 kHz CirCor recordings the probes were fitted
on), the encoder's 1 s block means at `depth`, their mean and standard deviation. A recording probe gives
each recording's P(Present); a patient's vector is the P(Present)-weighted mean of their recordings'
vectors, so the murmur-bearing sites speak loudest; one linear probe per feature reads it. The probes are
standardised multinomial logistic regressions (finetune/whisper_features.py fits them), stored as arrays.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from assistant.data.audio import Recording
from assistant.data.labels import FEATURES, MURMUR_CLASSES
from assistant.errors import MurmurScopeError
from assistant.murmur.whisper import WhisperAudioEncoder, block_means, centre_crop, load_whisper, pooled

READER_DIR = "whisper-features"  # beside murmur.safetensors
PROBES_NAME = "probes.safetensors"
READER_CONFIG = "reader.json"
RECORDING = "recording"  # the recording probe's name among the probes
READER_SOURCE = "whisper-reader"  # a feature's `source` when read here
ARRAYS = ("mean", "scale", "coef", "intercept", "classes")


class FeatureReaderError(MurmurScopeError):
    pass


@dataclass(frozen=True)
class LinearProbe:
    """z = (x - mean) / scale; softmax(z @ coef.T + intercept) over `classes`, indices into a vocabulary of
    `size` (a class the probe never saw gets 0). A binary probe has one row of `coef`, as scikit-learn's."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    classes: np.ndarray
    size: int

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """(N, D) -> (N, size)."""
        logits = ((x - self.mean) / self.scale) @ self.coef.T + self.intercept
        if self.coef.shape[0] == 1:
            logits = np.concatenate([np.zeros_like(logits), logits], axis=1)
        e = np.exp(logits - logits.max(1, keepdims=True))
        out = np.zeros((len(x), self.size))
        out[:, self.classes] = e / e.sum(1, keepdims=True)
        return out

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        # scikit-learn's coefficients are Fortran-ordered; safetensors writes the raw buffer as if C-ordered.
        return {f"{prefix}.{k}": np.ascontiguousarray(getattr(self, k)) for k in ARRAYS}

    @classmethod
    def from_arrays(cls, t: dict[str, np.ndarray], prefix: str, size: int) -> LinearProbe:
        return cls(*(t[f"{prefix}.{k}"].astype(np.float64) for k in ARRAYS[:-1]),
                   t[f"{prefix}.classes"].astype(np.int64), size)


@dataclass(frozen=True)
class ReaderConfig:
    features: tuple[str, ...]
    seconds: float = 6.0
    depth: int = 2
    pooling: str = "meanstd"
    band_rate: int = 4000  # every recording passes this rate first, as CirCor's did in training
    n_train: dict[str, int] = field(default_factory=dict)  # Present patients behind each feature probe
    training: dict = field(default_factory=dict)  # how it was made, for the record

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ReaderConfig:
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**{**d, "features": tuple(d["features"])})


class WhisperFeatureReader:
    def __init__(self, encoder: WhisperAudioEncoder, recording: LinearProbe, features: dict[str, LinearProbe],
                 config: ReaderConfig):
        unknown = set(features) - set(FEATURES)
        if unknown:
            raise FeatureReaderError(f"feature probes for unknown features: {sorted(unknown)}")
        self.encoder = encoder
        self.recording = recording
        self.features = features
        self.config = config

    def vector(self, recording: Recording) -> np.ndarray:
        """One recording -> the probes' input."""
        rec = recording.resampled(self.config.band_rate).resampled(self.encoder.rate)
        samples = centre_crop(rec.samples.astype(np.float32), int(self.config.seconds * self.encoder.rate))
        depth = self.config.depth
        blocks = block_means(self.encoder, np.ascontiguousarray(samples), depth if depth >= 0 else None)
        return pooled(blocks, depth, self.config.pooling)

    def read(self, vectors: list[np.ndarray]) -> dict[str, dict[str, float]]:
        """One patient's recording vectors -> feature -> label -> probability."""
        x = np.stack(vectors).astype(np.float64)
        weight = self.recording.probabilities(x)[:, MURMUR_CLASSES.index("Present")] + 1e-3
        patient = (x * weight[:, None]).sum(0, keepdims=True) / weight.sum()
        return {name: dict(zip(FEATURES[name], map(float, probe.probabilities(patient)[0])))
                for name, probe in self.features.items()}

    def save(self, folder: Path) -> None:
        """The encoder (`WhisperEncoder.save_pretrained`, float16), the probes and the config."""
        from safetensors.numpy import save_file

        folder.mkdir(parents=True, exist_ok=True)
        # float16 halves the file (`load` computes in float32); a copy, so the caller's encoder stays as it is.
        copy.deepcopy(self.encoder.encoder).half().save_pretrained(folder)
        arrays = self.recording.arrays(RECORDING)
        for name, probe in self.features.items():
            arrays.update(probe.arrays(name))
        save_file({k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in arrays.items()},
                  str(folder / PROBES_NAME))
        (folder / READER_CONFIG).write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path) -> WhisperFeatureReader | None:
        """The reader in `folder`; None when there is none (a murmur model trained elsewhere then reads every
        feature with its own heads)."""
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        folder = Path(folder)
        if not (folder / READER_CONFIG).is_file():
            return None
        try:
            config = ReaderConfig.from_dict(json.loads((folder / READER_CONFIG).read_text()))
            t = load_file(str(folder / PROBES_NAME))
            recording = LinearProbe.from_arrays(t, RECORDING, len(MURMUR_CLASSES))
            features = {n: LinearProbe.from_arrays(t, n, len(FEATURES[n])) for n in config.features}
        except (OSError, ValueError, KeyError, TypeError, SafetensorError) as e:
            raise FeatureReaderError(f"{folder}: not a Whisper feature reader ({e})") from None
        return cls(load_whisper(folder), recording, features, config)
