"""`murmurscope eval familiarity-cv`: what the familiarity gate costs at home, under the 5-fold CV.

For each fold of a murmur recipe's cross-validation (`eval classifier-cv`), the gate is fitted exactly as
`finetune familiarity` fits the shipped one, on the fold model's embeddings of that fold's training
patients, and applied to the held-out patients: a patient whose recordings are mostly beyond the
threshold is called Unknown. The murmur W.acc and UAR of the out-of-fold calls with and without it are
the issue's home check (robustness must not be bought with accuracy at home).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from assistant.errors import MurmurScopeError
from eval.metrics import uar, weighted_accuracy
from finetune.familiarity import DEFAULT_PERCENTILE


@dataclass(frozen=True)
class FamiliarityCVConfig:
    cv: Path = field(metadata={"help": "A recipe's cross-validation folder with its fold models (model<k>)."})
    circor_root: Path = field(metadata={"help": "The labelled CirCor folder the cross-validation ran on."})
    folds: int = field(default=5, metadata={"help": "Folds of that cross-validation (its --cv)."})
    percentile: float = field(default=DEFAULT_PERCENTILE, metadata={
        "help": "Threshold percentile, as `finetune familiarity`."})
    cache_dir: Path = field(default=Path("build/familiarity"), metadata={"help": "Embedding cache."})
    threads: int = field(default=1, metadata={"help": "torch CPU threads."})


def _scores(truth: list[str], calls: list[str]) -> dict[str, float]:
    return {"wacc": weighted_accuracy(truth, calls), "uar": uar(truth, calls)}


def run(config: FamiliarityCVConfig, progress: bool = True) -> dict:
    import torch

    from assistant.data.circor import read_folder
    from eval.cross_validation import CVConfig, by_fold, load_recipe, patients_and_folds
    from finetune.familiarity import circor_embeddings, fit_familiarity

    torch.set_num_threads(config.threads)
    rows, _ = load_recipe(config.cv)
    if not rows:
        raise MurmurScopeError(f"{config.cv}: no finished folds (run `murmurscope eval classifier-cv` first)")
    folds = by_fold(rows)
    _, splits = patients_and_folds(CVConfig(config.circor_root, folds=config.folds))
    patients = {p.patient_id: p for p in read_folder(config.circor_root)}
    calls = {r.patient_id: r.call for r in rows}
    per_fold, gated = {}, {}
    for k, fold_rows in folds.items():
        model_dir = config.cv / f"model{k}"
        if not (model_dir / "murmur.safetensors").is_file():
            raise MurmurScopeError(f"{model_dir}: the fold model is missing; rerun `eval classifier-cv`")
        train_ids, held_ids = set(splits[k].train), {r.patient_id for r in fold_rows}
        if k >= config.folds or held_ids != set(splits[k].val):
            raise MurmurScopeError(f"{config.cv}: fold {k} does not hold the patients of a {config.folds}-fold split "
                                   f"of {config.circor_root}; pass the cross-validation's --folds")
        emb = circor_embeddings(config.circor_root, model_dir, config.cache_dir, train_ids | held_ids, progress)
        name_of = {ref.name: pid for pid in train_ids | held_ids for ref in patients[pid].recordings}
        x = np.stack([v for n, v in emb.items() if name_of[n] in train_ids])
        gate = fit_familiarity(x, model_dir, config.percentile)
        for pid in held_ids:
            gated[pid] = gate.patient_reason([gate.score(v) for n, v in emb.items() if name_of[n] == pid]) is not None
        truth = [r.murmur for r in fold_rows]
        per_fold[k] = {"threshold": gate.config.threshold, "patients": len(fold_rows),
                       "unfamiliar": sum(gated[r.patient_id] for r in fold_rows)}
        before = [calls[r.patient_id] for r in fold_rows]
        after = ["Unknown" if gated[r.patient_id] else b for r, b in zip(fold_rows, before)]
        per_fold[k].update(without_gate=_scores(truth, before), with_gate=_scores(truth, after),
                           calls_changed=sum(a != b for a, b in zip(after, before)))
    return {"recipe": config.cv.name, "folds": per_fold}


def _spread(values: list[float]) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}" if len(values) > 1 else f"{np.mean(values):.3f}"


def markdown(result: dict) -> str:
    lines = ["| gate | W.acc | UAR | calls changed | patients gated |", "|---|---|---|---|---|"]
    folds = result["folds"].values()
    for which in ("without_gate", "with_gate"):
        w = [f[which]["wacc"] for f in folds]
        u = [f[which]["uar"] for f in folds]
        changed = sum(f["calls_changed"] for f in folds) if which == "with_gate" else ""
        gated = sum(f["unfamiliar"] for f in folds) if which == "with_gate" else ""
        lines.append(f"| {which.replace('_', ' ')} | {_spread(w)} | {_spread(u)} | {changed} | {gated} |")
    thresholds = ", ".join(f"{f['threshold']:.2f}" for f in folds)
    return "\n".join(lines) + f"\n\n{result['recipe']}: {len(result['folds'])} folds; thresholds {thresholds}"
