"""The project's own recipe under cross-validation: `finetune.classifier.train_classifier` (the from-scratch
CNN ensemble with multi-site and feature heads) trained on four folds, `MurmurModel` predicting the fifth.

The recipe's own validation split (early stopping, temperatures) is drawn inside the four training folds
by the project split's rule, so the held-out fold is never looked at.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from tqdm.auto import tqdm

from assistant.data.circor import Patient
from assistant.data.labels import FEATURES, MURMUR_CLASSES
from assistant.data.split import Split
from eval.cross_validation import CVConfig, OOFPatient, fold_indices, patients_and_folds, save_fold


def oof_rows(model, patients: list[Patient], fold: int, progress: bool = True) -> list[OOFPatient]:
    """A trained MurmurModel's predictions for held-out patients."""
    rows = []
    for p in tqdm(patients, desc=f"predict fold {fold}", disable=not progress):
        pred = model.predict_patient(p)
        features = {name: [f.probabilities[v] for v in FEATURES[name]]
                    for name, f in pred.features.items() if f.probabilities}
        rows.append(OOFPatient(
            p.patient_id, fold, p.labels.murmur, [pred.probabilities[c] for c in MURMUR_CLASSES], pred.murmur,
            [[r.probabilities[c] for c in MURMUR_CLASSES] for r in pred.recordings], [r.site for r in pred.recordings],
            features))
    return rows


def cnn_recipe_name(members: int, device_augment: tuple[str, ...] = ()) -> str:
    """`cnn-current` (the shipped five members), `cnn-current-1member`, `cnn-current-1member-aug-response+level`."""
    name = "cnn-current" if members == 5 else f"cnn-current-{members}member"
    return f"{name}-aug-{'+'.join(device_augment)}" if device_augment else name


def run_cnn(config: CVConfig, name: str = "cnn-current", **overrides) -> Path:
    """Every requested fold of the current recipe (ClassifierTrainConfig defaults, `overrides` on top)."""
    import torch

    from assistant.murmur.model import MurmurModel
    from finetune.classifier import ClassifierTrainConfig, train_classifier

    torch.set_num_threads(config.threads)
    patients, splits = patients_and_folds(config)
    by_id = {p.patient_id: p for p in patients}
    folder = config.out / name
    for k in fold_indices(config):
        path = folder / f"fold{k}.json"
        if path.exists():
            continue
        split: Split = splits[k]
        started = time.perf_counter()
        train_config = replace(ClassifierTrainConfig(circor_root=config.circor_root, out=folder / f"model{k}",
                                                     patients=split.train), **overrides)
        model_dir = train_config.out
        if not (model_dir / "murmur.safetensors").exists():
            train_classifier(train_config)
        trained = time.perf_counter()
        rows = oof_rows(MurmurModel.load(model_dir), [by_id[pid] for pid in split.val], k)
        save_fold(path, rows, {"recipe": name, "overrides": {k: str(v) for k, v in overrides.items()},
                               "train_minutes": (trained - started) / 60,
                               "predict_minutes": (time.perf_counter() - trained) / 60,
                               "train_patients": len(split.train), "held_out": len(split.val)})
    return folder
