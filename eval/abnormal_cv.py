"""`murmurscope eval abnormal-cv`: the normal/abnormal model under leave-one-subset-out and 5-fold CV.

Leave-one-subset-out trains on three of PhysioNet 2016's databases and tests on the fourth: each subset
is another research group's stethoscope and population, the honest test of a new device. 5-fold CV is
stratified by subset and label, so every fold holds each database in proportion. In every fold the
head's C is chosen by an inner CV on the training recordings only (finetune/abnormal.py `fit_head`);
nothing else is tuned: the features, the grid and the 0.5 threshold are fixed in the code. The
out-of-fold probabilities are pooled and scored once (with bootstrap intervals), and per held-out subset.
MAcc, the Challenge score, is the mean of sensitivity and specificity: for two classes it is the UAR.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from eval.metrics import binary_metrics
from finetune.abnormal import LabelledVectors, fit_head, physionet_vectors


@dataclass(frozen=True)
class AbnormalCVConfig:
    data_root: Path = field(metadata={"help": "A PhysioNet 2016 folder (REFERENCE.csv), e.g. "
                                              "../shared/physionet2016-dev."})
    cache_dir: Path = field(default=Path("build/abnormal"), metadata={"help": "Feature cache (shared with "
                                                                               "finetune abnormal)."})
    folds: int = field(default=5, metadata={"help": "Folds of the stratified CV."})
    inner_folds: int = field(default=5, metadata={"help": "Inner folds that choose C in each training fold."})
    seed: int = field(default=2016, metadata={"help": "Seed of the fold assignment."})
    bootstrap: int = field(default=1000, metadata={"help": "Bootstrap resamples for the 95% intervals."})
    threads: int = field(default=1, metadata={"help": "torch CPU threads for the feature pass."})


@dataclass
class SchemeResult:
    name: str
    probabilities: np.ndarray  # out-of-fold P(abnormal), one per recording
    chosen_c: list[float]
    pooled: dict  # binary_metrics(...).to_dict() plus macc
    by_subset: dict[str, dict] = field(default_factory=dict)


def _scored(truth: np.ndarray, probs: np.ndarray, threshold: float, resamples: int, seed: int) -> dict:
    labels = np.where(truth == 1, "abnormal", "normal")
    calls = np.where(probs >= threshold, "abnormal", "normal")
    m = binary_metrics(labels.tolist(), calls.tolist(), probs, resamples=resamples, seed=seed).to_dict()
    return m | {"macc": m["uar"]}  # the Challenge's name for the same number


def stratified_folds(data: LabelledVectors, folds: int, seed: int) -> list[np.ndarray]:
    """Test indices of each fold: each (subset, label) stratum shuffled and dealt round the folds."""
    rng = np.random.default_rng(seed)
    assignment = np.empty(len(data.names), dtype=int)
    start = 0
    for key in sorted(set(zip(data.subsets, data.abnormal.tolist()))):
        idx = np.array([i for i, k in enumerate(zip(data.subsets, data.abnormal.tolist())) if k == key])
        idx = idx[rng.permutation(len(idx))]
        assignment[idx] = (start + np.arange(len(idx))) % folds
        start = (start + len(idx)) % folds
    return [np.flatnonzero(assignment == f) for f in range(folds)]


def run_scheme(name: str, data: LabelledVectors, tests: list[np.ndarray], config: AbnormalCVConfig) -> SchemeResult:
    probs = np.full(len(data.names), np.nan)
    chosen = []
    for test in tests:
        train = np.setdiff1d(np.arange(len(data.names)), test)
        model, c = fit_head(data.vectors[train], data.abnormal[train], config.inner_folds, seed=config.seed)
        probs[test] = model.probability(data.vectors[test])
        chosen.append(c)
    threshold = model.config.threshold
    result = SchemeResult(name, probs, chosen, _scored(data.abnormal, probs, threshold, config.bootstrap, config.seed))
    subsets = np.array(data.subsets)
    for s in sorted(set(data.subsets)):
        i = subsets == s
        result.by_subset[s] = _scored(data.abnormal[i], probs[i], threshold, config.bootstrap, config.seed)
    return result


def run(config: AbnormalCVConfig, progress: bool = True) -> tuple[LabelledVectors, list[SchemeResult]]:
    import torch

    torch.set_num_threads(config.threads)
    data = physionet_vectors(config.data_root, config.cache_dir, progress=progress)
    subsets = np.array(data.subsets)
    loso = [np.flatnonzero(subsets == s) for s in sorted(set(data.subsets))]
    return data, [run_scheme("leave-one-subset-out", data, loso, config),
                  run_scheme(f"{config.folds}-fold stratified", data, stratified_folds(data, config.folds,
                                                                                      config.seed), config)]


def _v(d: dict) -> str:
    value = d["value"] if isinstance(d, dict) else d
    if value is None or value != value:
        return "—"
    ci = d.get("ci95") if isinstance(d, dict) else None
    return f"{value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci and ci[0] == ci[0] else "")


def markdown(data: LabelledVectors, results: list[SchemeResult]) -> str:
    lines = [f"{len(data.names)} recordings ({int(data.abnormal.sum())} abnormal), subsets "
             f"{', '.join(sorted(set(data.subsets)))}; threshold 0.5 on P(abnormal); C chosen by inner CV per fold",
             "", "| scheme | held out | n | MAcc (= UAR) [95% CI] | sensitivity | specificity | AUROC |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        for where, m in [("all (pooled)", r.pooled), *r.by_subset.items()]:
            lines.append(f"| {r.name} | {where} | {m['n']} | {_v(m['macc'])} | {_v(m['sensitivity'])} | "
                         f"{_v(m['specificity'])} | {_v(m['auroc'])} |")
    lines += ["", "C chosen per fold: " + "; ".join(f"{r.name}: " + ", ".join(f"{c:.3g}" for c in r.chosen_c)
                                                    for r in results)]
    return "\n".join(lines)


def baseline_markdown() -> str:
    from eval.baselines import load_baselines

    rows = [b for b in load_baselines() if b.metric.startswith("binary.") and "2016" in b.dataset]
    lines = ["| published | metric | value | protocol | caveat |", "|---|---|---|---|---|"]
    lines += [f"| {b.model} ({b.id}) | {b.metric} | {b.value:.3f} | {b.split_protocol} | {b.caveat} |" for b in rows]
    return "\n".join(lines)
