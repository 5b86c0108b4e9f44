"""How unlike the murmur model's training recordings a recording is, and the gate that follows from it.

The score is the Mahalanobis distance of a recording's murmur embedding (`MurmurModel.embed`, every
ensemble member's mean frame embedding side by side) from the CirCor training recordings' Gaussian, its
covariance shrunk (Ledoit-Wolf) so that 640 dimensions can be estimated from ~1,700 recordings. The
threshold is a percentile of CirCor training recordings' distances, each scored by a Gaussian fitted
without it (cross-fitted, `finetune/familiarity.py`), so it is the distance a CirCor recording the model
has not seen exceeds that rarely. Beyond it the recording "does not resemble" the training data; a
patient most of whose recordings are beyond it gets the murmur call Unknown with that reason.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from assistant.errors import MurmurScopeError

FAMILIARITY_WEIGHTS = "familiarity.safetensors"
FAMILIARITY_CONFIG = "familiarity.json"
UNFAMILIAR = ("this recording does not resemble the recordings the model was trained on: device or population")


class FamiliarityError(MurmurScopeError):
    pass


@dataclass(frozen=True)
class FamiliarityConfig:
    threshold: float
    percentile: float
    murmur_weights_sha256: str = ""
    fitted_on: dict = field(default_factory=dict)  # data, recordings, shrinkage: for the record

    def to_dict(self) -> dict:
        return asdict(self)


class Familiarity:
    """Mahalanobis distance to the training embeddings; larger is less familiar."""

    def __init__(self, config: FamiliarityConfig, mean: np.ndarray, precision: np.ndarray):
        if precision.shape != (len(mean), len(mean)):
            raise FamiliarityError(f"precision {precision.shape} does not match a mean of {len(mean)} values")
        self.config = config
        self.mean = mean.astype(np.float64)
        self.precision = precision.astype(np.float64)

    def score(self, embedding: torch.Tensor | np.ndarray) -> float:
        """One recording's (E, D) `MurmurModel.embed` -> its distance."""
        x = np.asarray(embedding.detach().cpu() if isinstance(embedding, torch.Tensor) else embedding,
                       dtype=np.float64).ravel()
        if x.shape != self.mean.shape:
            raise FamiliarityError(f"an embedding of {x.size} values; the familiarity model reads {self.mean.size}")
        d = x - self.mean
        return float(np.sqrt(max(d @ self.precision @ d, 0.0)))

    def unfamiliar(self, score: float) -> bool:
        return score > self.config.threshold

    def patient_reason(self, scores: list[float]) -> str | None:
        """UNFAMILIAR when more than half of a patient's recordings are beyond the threshold, else None:
        one odd recording among familiar ones does not override the call the others support."""
        beyond = sum(self.unfamiliar(s) for s in scores)
        return UNFAMILIAR if scores and beyond * 2 > len(scores) else None

    def save(self, folder: Path) -> None:
        from safetensors.numpy import save_file

        folder.mkdir(parents=True, exist_ok=True)
        save_file({"mean": self.mean.astype(np.float32), "precision": self.precision.astype(np.float32)},
                  str(folder / FAMILIARITY_WEIGHTS))
        (folder / FAMILIARITY_CONFIG).write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path) -> Familiarity | None:
        """The familiarity model beside a murmur model's weights; None when the folder has none (a murmur
        model trained elsewhere is then reported without a familiarity score)."""
        from safetensors.numpy import load_file

        folder = Path(folder)
        cfg_path, w_path = folder / FAMILIARITY_CONFIG, folder / FAMILIARITY_WEIGHTS
        if not cfg_path.is_file() or not w_path.is_file():
            return None
        try:
            config = FamiliarityConfig(**json.loads(cfg_path.read_text()))
            t = load_file(str(w_path))
            model = cls(config, t["mean"], t["precision"])
        except (ValueError, KeyError, TypeError) as e:
            raise FamiliarityError(f"{folder}: not a familiarity model ({e})") from None
        weights = folder / "murmur.safetensors"
        if config.murmur_weights_sha256 and weights.is_file():
            import hashlib

            if hashlib.sha256(weights.read_bytes()).hexdigest() != config.murmur_weights_sha256:
                raise FamiliarityError(f"{folder}: {FAMILIARITY_CONFIG} was fitted on other murmur weights; refit "
                                       "it with `murmurscope finetune familiarity`")
        return model
