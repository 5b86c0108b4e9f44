"""The one patient-level train/validation split every training and evaluation command uses.

Stratified by murmur label (and, for Present patients, by most audible location, so the feature
heads see every location on both sides), seeded, and independent of file order, so numbers from
different sessions and machines are comparable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from assistant.data.circor import Patient


@dataclass(frozen=True)
class SplitConfig:
    val_fraction: float = field(default=0.15, metadata={"help": "The project split's validation fraction."})
    seed: int = field(default=2022, metadata={"help": "The project split's seed."})


@dataclass(frozen=True)
class Split:
    train: tuple[str, ...]
    val: tuple[str, ...]

    def side(self, patient_id: str) -> str:
        return "val" if patient_id in self.val else "train"


def _stratum(p: Patient) -> str:
    if p.labels is None:
        return "unlabelled"
    if p.labels.murmur == "Present":
        return f"Present/{p.labels.most_audible_location}"
    return p.labels.murmur


def split_patients(patients: list[Patient], config: SplitConfig = SplitConfig()) -> Split:
    if not 0.0 < config.val_fraction < 1.0:
        raise ValueError("val_fraction must lie strictly between 0 and 1")
    strata: dict[str, list[str]] = {}
    for p in patients:
        strata.setdefault(_stratum(p), []).append(p.patient_id)
    rng = np.random.default_rng(config.seed)
    train, val = [], []
    for key in sorted(strata):
        ids = sorted(strata[key])
        order = rng.permutation(len(ids))
        n_val = int(round(len(ids) * config.val_fraction))
        val += [ids[i] for i in order[:n_val]]
        train += [ids[i] for i in order[n_val:]]
    return Split(tuple(sorted(train)), tuple(sorted(val)))


def fold_patients(patients: list[Patient], folds: int = 5, seed: int = 2022) -> list[Split]:
    """`folds` patient-level cross-validation splits, stratified as `split_patients` is: each patient is in
    exactly one fold's `val`. Within each stratum the patients are shuffled and dealt to the folds in turn,
    starting where the previous stratum stopped, so fold sizes differ by at most one."""
    if folds < 2:
        raise ValueError("cross-validation needs at least 2 folds")
    strata: dict[str, list[str]] = {}
    for p in patients:
        strata.setdefault(_stratum(p), []).append(p.patient_id)
    rng = np.random.default_rng(seed)
    held: list[list[str]] = [[] for _ in range(folds)]
    turn = 0
    for key in sorted(strata):
        ids = sorted(strata[key])
        for i in rng.permutation(len(ids)):
            held[turn % folds].append(ids[i])
            turn += 1
    everyone = sorted(p.patient_id for p in patients)
    return [Split(tuple(sorted(set(everyone) - set(h))), tuple(sorted(h))) for h in held]
