"""What turns the murmur head's logits into the probabilities shown and the call made.

The heads train class-weighted, so their probabilities are shifted between classes, not only too sharp:
a temperature (fitted on the training run's own validation split) cannot fix that. `Recalibration` is
vector scaling (Guo et al., ICML 2017): per-class scale and bias on the log-probabilities, fitted by
`finetune.calibration` on out-of-fold probabilities of a cross-validation, and `decision_weights` make
the call the argmax of weight x probability (with the Challenge weights 5/3/1 and calibrated
probabilities, the Bayes decision for weighted accuracy).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from assistant.data.labels import MURMUR_CLASSES


@dataclass(frozen=True)
class Recalibration:
    scale: tuple[float, ...] = field(default=(1.0,) * len(MURMUR_CLASSES))
    bias: tuple[float, ...] = field(default=(0.0,) * len(MURMUR_CLASSES))
    decision_weights: tuple[float, ...] = field(default=(1.0,) * len(MURMUR_CLASSES))

    def __post_init__(self) -> None:
        n = len(MURMUR_CLASSES)
        if not len(self.scale) == len(self.bias) == len(self.decision_weights) == n:
            raise ValueError(f"a recalibration has {n} scales, biases and decision weights")
        if min(self.decision_weights) <= 0:
            raise ValueError("decision weights must be positive")

    def log_probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Calibrated log-probabilities from (..., classes) logits."""
        z = logits.log_softmax(-1) * torch.tensor(self.scale) + torch.tensor(self.bias)
        return z.log_softmax(-1)

    def decide(self, probabilities: torch.Tensor) -> torch.Tensor:
        """Class indices: argmax of decision weight x probability."""
        return (probabilities * torch.tensor(self.decision_weights)).argmax(-1)

    @classmethod
    def from_dict(cls, d: dict) -> Recalibration:
        if not isinstance(d, dict):
            raise TypeError(f"a recalibration is a mapping, not {type(d).__name__}")
        return cls(**{k: tuple(float(x) for x in v) for k, v in d.items()})
