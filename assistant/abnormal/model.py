"""The normal/abnormal model: a standardised logistic head over `features.recording_vector`, one
probability per recording, averaged over a patient's recordings.

Weights ship in assistant/abnormal/weights (abnormal.json + abnormal.safetensors), trained by
`murmurscope finetune abnormal` on PhysioNet/CinC 2016 subsets b, c, d and f (adults and mixed
populations, other stethoscopes). It reads the shipped murmur model's embeddings, so it is only valid
beside the murmur weights it was trained with; their sha256 is in abnormal.json and is checked.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from assistant.abnormal.features import FeatureConfig
from assistant.errors import MurmurScopeError
from assistant.murmur.cycle_features import CycleConfig

WEIGHTS_DIR = Path(__file__).parent / "weights"
WEIGHTS_NAME = "abnormal.safetensors"
CONFIG_NAME = "abnormal.json"
CAVEAT = ("Normal/abnormal follows the PhysioNet/CinC 2016 labels it was trained on (adult and mixed "
          "populations, other stethoscopes than CirCor's): 'abnormal' covers murmurs of valve disease and "
          "congenital defects and other pathology such as coronary artery disease, some of it without any "
          "murmur. It is a separate call from the murmur call and is not validated on children.")


class AbnormalModelError(MurmurScopeError):
    pass


@dataclass(frozen=True)
class AbnormalConfig:
    """What `load` needs besides the tensors, and how the weights were made."""

    features: FeatureConfig = field(default_factory=FeatureConfig)
    threshold: float = 0.5  # the head is fitted with balanced class weights, so 0.5 balances the two recalls
    murmur_weights_sha256: str = ""
    training: dict = field(default_factory=dict)  # data, counts, chosen C: for the record

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> AbnormalConfig:
        features = FeatureConfig(CycleConfig(**d["features"]["cycle"]))
        return cls(features, float(d["threshold"]), str(d.get("murmur_weights_sha256", "")),
                   dict(d.get("training", {})))


@dataclass(frozen=True)
class AbnormalPrediction:
    label: str  # "abnormal" or "normal"
    probability: float  # P(abnormal), the mean over the recordings
    recordings: dict[str, float]  # recording id -> P(abnormal)
    threshold: float


def murmur_fingerprint(murmur_folder: Path) -> str:
    return hashlib.sha256((Path(murmur_folder) / "murmur.safetensors").read_bytes()).hexdigest()


class AbnormalModel:
    def __init__(self, config: AbnormalConfig, mean: np.ndarray, scale: np.ndarray, coef: np.ndarray,
                 intercept: float):
        if not (mean.shape == scale.shape == coef.shape) or mean.ndim != 1:
            raise AbnormalModelError(f"abnormal head shapes differ: {mean.shape}, {scale.shape}, {coef.shape}")
        self.config = config
        self.mean, self.scale, self.coef, self.intercept = mean, scale, coef, float(intercept)

    @property
    def dim(self) -> int:
        return len(self.coef)

    def probability(self, vectors: np.ndarray) -> np.ndarray:
        """(N, dim) recording vectors -> (N,) P(abnormal)."""
        vectors = np.atleast_2d(vectors)
        if vectors.shape[1] != self.dim:
            raise AbnormalModelError(f"feature vectors of {vectors.shape[1]} values; this head reads {self.dim}")
        logit = ((vectors - self.mean) / self.scale) @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-np.clip(logit, -50, 50)))

    def predict(self, vectors: dict[str, np.ndarray]) -> AbnormalPrediction:
        """Recording id -> vector, for one patient; the patient's probability is the recordings' mean."""
        if not vectors:
            raise AbnormalModelError("no recordings to call normal or abnormal")
        probs = self.probability(np.stack(list(vectors.values())))
        p = float(probs.mean())
        return AbnormalPrediction("abnormal" if p >= self.config.threshold else "normal", p,
                                  {k: float(v) for k, v in zip(vectors, probs)}, self.config.threshold)

    def save(self, folder: Path) -> None:
        from safetensors.numpy import save_file

        folder.mkdir(parents=True, exist_ok=True)
        save_file({"mean": self.mean.astype(np.float32), "scale": self.scale.astype(np.float32),
                   "coef": self.coef.astype(np.float32), "intercept": np.array([self.intercept], np.float32)},
                  str(folder / WEIGHTS_NAME))
        (folder / CONFIG_NAME).write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path | None = None, murmur_folder: Path | None = None) -> AbnormalModel:
        """`folder`: abnormal.json + abnormal.safetensors (default: shipped); `murmur_folder`: the murmur
        weights it will read (default: shipped), checked against the ones it was trained with."""
        from safetensors.numpy import load_file

        from assistant.murmur.model import WEIGHTS_DIR as MURMUR_WEIGHTS

        folder = Path(folder) if folder is not None else WEIGHTS_DIR
        cfg_path, w_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
        if not cfg_path.is_file() or not w_path.is_file():
            raise AbnormalModelError(f"{folder}: no normal/abnormal model here (expected {CONFIG_NAME} and "
                                     f"{WEIGHTS_NAME}; `murmurscope finetune abnormal` writes them)")
        try:
            config = AbnormalConfig.from_dict(json.loads(cfg_path.read_text()))
            t = load_file(str(w_path))
            model = cls(config, t["mean"], t["scale"], t["coef"], float(t["intercept"][0]))
        except (ValueError, KeyError, TypeError) as e:
            raise AbnormalModelError(f"{folder}: not a normal/abnormal model ({e})") from None
        murmur_folder = Path(murmur_folder) if murmur_folder is not None else MURMUR_WEIGHTS
        if config.murmur_weights_sha256 and config.murmur_weights_sha256 != murmur_fingerprint(murmur_folder):
            raise AbnormalModelError(f"{folder}: trained on other murmur weights than {murmur_folder}; retrain it "
                                     "with `murmurscope finetune abnormal`")
        return model
