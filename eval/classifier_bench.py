"""`murmurscope eval classifier`: the murmur model on the project's validation split.

Prints the Challenge weighted accuracy and UAR with bootstrap intervals, per-feature scores
against the majority-class baseline, and the inference time for one patient with four 20 s
recordings; writes the numbers as JSON and the confusion matrix as a PNG.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from assistant.data.circor import Patient, read_folder
from assistant.data.labels import FEATURES, MURMUR_CLASSES
from assistant.data.split import SplitConfig, split_patients
from eval.classifier_metrics import accuracy, bootstrap_ci, confusion, recalls, uar, weighted_accuracy


@dataclass(frozen=True)
class ClassifierBenchConfig:
    circor_root: Path
    model: Path | None = None
    out_dir: Path = Path("build/eval/classifier")
    decision: str | None = None
    bootstrap: int = 1000
    seed: int = 0
    timing_runs: int = 7
    threads: int = 2
    progress: bool = True


def _majority(values: list[str]) -> str | None:
    return max(sorted(set(values)), key=values.count) if values else None


def _feature_scores(train: list[Patient], val: list[Patient], preds: dict, config: ClassifierBenchConfig) -> dict:
    """Per feature on validation patients whose label exists (truly Present): the head's argmax as if a
    murmur had been called, so the numbers measure the feature head rather than the murmur call."""
    out = {}
    for name, vocab in FEATURES.items():
        truth, pred = [], []
        for p in val:
            label = p.labels.feature(name)
            fp = preds[p.patient_id].features.get(name)
            if label is None or fp is None or not fp.probabilities:
                continue
            truth.append(label)
            pred.append(max(fp.probabilities, key=fp.probabilities.get))
        majority = _majority([v for p in train if (v := p.labels.feature(name)) is not None])
        base = [majority] * len(truth)
        n_train = next(iter(preds.values())).features[name].n_train if preds else 0

        def feature_uar(t, q, vocab=vocab):
            return uar(t, q, vocab)

        out[name] = {
            "n_val": len(truth), "n_train": n_train, "majority": majority,
            "accuracy": accuracy(truth, pred), "accuracy_ci": bootstrap_ci(accuracy, truth, pred, config.bootstrap),
            "uar": feature_uar(truth, pred), "uar_ci": bootstrap_ci(feature_uar, truth, pred, config.bootstrap),
            "majority_accuracy": accuracy(truth, base), "majority_uar": feature_uar(truth, base),
        }
    return out


def _time_patient(model, patient: Patient, runs: int) -> float:
    """Median seconds for `predict_recordings` on four 20 s recordings (decoded, at CirCor's 4 kHz)."""
    from assistant.data.audio import Recording

    recs = []
    for ref in patient.recordings[:4]:
        r = ref.load()
        n = 20 * r.rate
        recs.append(Recording(np.resize(r.samples, n), r.rate, r.site, patient.patient_id, r.source))
    model.predict_recordings(recs)  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        model.predict_recordings(recs)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def plot_confusion(matrix: np.ndarray, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 4))
    norm = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            ax.text(j, i, f"{matrix[i, j]}\n{norm[i, j]:.0%}", ha="center", va="center",
                    color="white" if norm[i, j] > 0.6 else "black", fontsize=9)
    ax.set_xticks(range(3), MURMUR_CLASSES)
    ax.set_yticks(range(3), MURMUR_CLASSES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(config: ClassifierBenchConfig) -> dict:
    import torch
    from tqdm.auto import tqdm

    from assistant.murmur.model import MurmurModel

    torch.set_num_threads(config.threads)
    patients = [p for p in read_folder(config.circor_root) if p.labels is not None]
    split = split_patients(patients, SplitConfig())
    val = [p for p in patients if p.patient_id in split.val]
    train = [p for p in patients if p.patient_id not in split.val]
    model = MurmurModel.load(config.model)
    if config.decision is not None:
        model.config = replace(model.config, decision=config.decision)
    preds = {p.patient_id: model.predict_patient(p) for p in tqdm(val, desc="val patients",
                                                                   disable=not config.progress)}
    truth = [p.labels.murmur for p in val]
    called = [preds[p.patient_id].murmur for p in val]
    matrix = confusion(truth, called, MURMUR_CLASSES)
    four = next(p for p in val if len(p.recordings) >= 4)
    report = {
        "model": str(config.model or "shipped"), "decision": model.config.decision, "n_val": len(val),
        "weighted_accuracy": weighted_accuracy(truth, called),
        "weighted_accuracy_ci": bootstrap_ci(weighted_accuracy, truth, called, config.bootstrap, config.seed),
        "uar": uar(truth, called), "uar_ci": bootstrap_ci(uar, truth, called, config.bootstrap, config.seed),
        "accuracy": accuracy(truth, called), "recall": recalls(truth, called, MURMUR_CLASSES),
        "confusion": matrix.tolist(),
        "features": _feature_scores(train, val, preds, config),
        "seconds_per_patient": _time_patient(model, four, config.timing_runs),
        "threads": config.threads,
    }
    config.out_dir.mkdir(parents=True, exist_ok=True)
    (config.out_dir / "classifier_bench.json").write_text(json.dumps(report, indent=2) + "\n")
    plot_confusion(matrix, f"murmur, validation split (n={len(val)}): W.acc {report['weighted_accuracy']:.3f}, "
                   f"UAR {report['uar']:.3f}", config.out_dir / "confusion.png")
    return report
