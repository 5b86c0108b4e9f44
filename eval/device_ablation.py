"""`murmurscope eval device-ablation`: the cross-validated murmur recipes heard through other stethoscopes.

For each recipe under `cv_root` (the folders `eval classifier-cv` writes), each finished fold's own model
(`model<k>`, trained on the other four CirCor folds) predicts every PhysioNet 2016 recording as a
one-recording patient. The call is the murmur model's own, without the consultation's gates (the
familiarity gate is a separate measure, `eval familiarity`). Per recipe, as the mean over its folds:
the shares of normal recordings called Present / Unknown / Absent, the share of abnormal ones called
Present or Unknown, and the AUROC of P(Present) for abnormal against normal; beside them the recipe's
CirCor out-of-fold W.acc, UAR and macro AUROC from its fold files. Abnormal is not murmur (the 2016 labels
also cover pathology without one), so only the normal recordings have a right answer here: not Present.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from assistant.data.labels import MURMUR_CLASSES
from assistant.errors import MurmurScopeError
from eval.cross_validation import OOFPatient, load_recipe, murmur_table
from eval.cv_report import cell
from eval.metrics import auroc_score

AWAY_METRICS = ("normal_Present", "normal_Unknown", "normal_Absent", "abnormal_flagged", "auroc")
HOME_METRICS = ("wacc", "uar", "auroc")


@dataclass(frozen=True)
class DeviceAblationConfig:
    physionet_root: Path = field(metadata={"help": "A PhysioNet 2016 folder (REFERENCE.csv), e.g. "
                                                   "../shared/physionet2016-dev."})
    cv_root: Path = field(default=Path("build/cv"), metadata={
        "help": "Folder of the cross-validated recipes (eval classifier-cv --out)."})
    folds: tuple[int, ...] | None = field(default=None, metadata={
        "help": "Only these folds' models (comma-separated; each costs about a minute; default: every finished one)."})
    recipes: tuple[str, ...] | None = field(default=None, metadata={
        "help": "Only these recipe folders (comma-separated; default: every one with a fold model)."})
    threads: int = field(default=1, metadata={"help": "torch CPU threads."})


@dataclass(frozen=True)
class AwayCalls:
    """One fold model's calls on the PhysioNet 2016 recordings."""

    truth: tuple[str, ...]  # "normal" | "abnormal"
    calls: tuple[str, ...]  # MURMUR_CLASSES
    p_present: tuple[float, ...]


def away_scores(a: AwayCalls) -> dict[str, float]:
    truth, calls = np.array(a.truth), np.array(a.calls)
    normal, abnormal = truth == "normal", truth == "abnormal"
    out = {f"normal_{c}": float(np.mean(calls[normal] == c)) if normal.any() else float("nan")
           for c in MURMUR_CLASSES}
    out["abnormal_flagged"] = float(np.mean(np.isin(calls[abnormal], ("Present", "Unknown")))) if abnormal.any() \
        else float("nan")
    out["auroc"] = auroc_score(abnormal, np.array(a.p_present))
    return out


@dataclass
class RecipeReadout:
    recipe: str
    away: dict[int, dict[str, float]]  # fold -> away_scores of that fold's model
    home: dict[int, dict[str, float]]  # fold -> CirCor OOF murmur scores
    recordings: int = 0
    skipped: int = 0  # PhysioNet recordings that could not be read


def _mean_std(per_fold: dict[int, dict[str, float]], metric: str) -> tuple[float, float]:
    values = [f[metric] for f in per_fold.values()]
    if not values:
        return float("nan"), float("nan")
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")


def ablation_rows(readouts: list[RecipeReadout]) -> list[dict]:
    """One row per recipe: (mean, std) over folds of each away and home metric, and the folds counted."""
    return [{"recipe": r.recipe, "away_folds": sorted(r.away), "home_folds": sorted(r.home),
             "recordings": r.recordings,
             **{f"away_{m}": _mean_std(r.away, m) for m in AWAY_METRICS},
             **{f"home_{m}": _mean_std(r.home, m) for m in HOME_METRICS}} for r in readouts]


def markdown(rows: list[dict]) -> str:
    head = ("| recipe | 2016 folds | normal: Present | normal: Unknown | normal: Absent | abnormal: Present or "
            "Unknown | AUROC P(Present) abn. vs normal | CirCor folds | CirCor W.acc | CirCor UAR | "
            "CirCor macro AUROC |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        shares = [f"{100 * r[f'away_{m}'][0]:.1f}%" + (f" ± {100 * r[f'away_{m}'][1]:.1f}"
                                                         if np.isfinite(r[f"away_{m}"][1]) else "")
                  for m in AWAY_METRICS[:4]]
        home = [cell(*r[f"home_{m}"]) for m in HOME_METRICS]
        lines.append(f"| {r['recipe']} | {','.join(map(str, r['away_folds']))} | " + " | ".join(shares)
                     + f" | {cell(*r['away_auroc'])} | {','.join(map(str, r['home_folds']))} | "
                     + " | ".join(home) + " |")
    return "\n".join(lines)


def fold_models(folder: Path, folds: tuple[int, ...] | None) -> list[int]:
    """The folds of a recipe folder that have both their fold file and their saved model."""
    have = sorted(int(p.name[len("model"):]) for p in folder.glob("model*")
                  if p.name[len("model"):].isdigit() and (p / "murmur.safetensors").exists()
                  and (folder / f"fold{p.name[len('model'):]}.json").exists())
    return [k for k in have if folds is None or k in folds]


def home_scores(rows: list[OOFPatient]) -> dict[int, dict[str, float]]:
    return {k: {m: s[m] for m in HOME_METRICS} for k, s in murmur_table(rows).items()}


def run(config: DeviceAblationConfig, progress: bool = True) -> list[RecipeReadout]:
    import torch

    from assistant.murmur.model import MurmurModel
    from eval.datasets import read_physionet2016

    torch.set_num_threads(config.threads)
    if not config.cv_root.is_dir():
        raise MurmurScopeError(f"{config.cv_root}: not a folder of cross-validated recipes")
    folders = sorted(p for p in config.cv_root.iterdir() if p.is_dir() and fold_models(p, config.folds)
                     and (config.recipes is None or p.name in config.recipes))
    if config.recipes is not None:
        missing = sorted(set(config.recipes) - {p.name for p in folders})
        if missing:
            raise MurmurScopeError(f"{config.cv_root / missing[0]}: no finished fold with its model")
    if not folders:
        raise MurmurScopeError(f"{config.cv_root}: no recipe has a finished fold with its model"
                               + (f" among folds {','.join(map(str, config.folds))}" if config.folds else ""))
    patients, truth = read_physionet2016(config.physionet_root)
    # Read once for every fold model (each resamples to its own rate).
    recordings, skipped = [], 0
    for p in tqdm(patients, desc="read PhysioNet 2016", disable=not progress):
        try:
            recordings.append((p.patient_id, [ref.load() for ref in p.recordings]))
        except MurmurScopeError:
            skipped += 1
    readouts = []
    for folder in folders:
        rows, _ = load_recipe(folder)
        away = {}
        for k in fold_models(folder, config.folds):
            model = MurmurModel.load(folder / f"model{k}")
            calls, p_present, names = [], [], []
            for pid, recs in tqdm(recordings, desc=f"{folder.name} fold {k}", disable=not progress):
                # The murmur call alone: the feature heads (and the segmenter they need) do not change it.
                pred = model.predict_from_embeddings(pid, [model.embed(r) for r in recs], [r.site for r in recs],
                                                     [pid] * len(recs), [], features=False)
                calls.append(pred.murmur)
                p_present.append(pred.probabilities["Present"])
                names.append(pid)
            away[k] = away_scores(AwayCalls(tuple(truth[n] for n in names), tuple(calls), tuple(p_present)))
        readouts.append(RecipeReadout(folder.name, away, home_scores(rows), len(recordings), skipped))
    return readouts

