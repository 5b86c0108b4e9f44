"""The cross-validation tables (after seed 002's Table 1) from the OOF predictions under `build/cv/<recipe>/`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from assistant.data.circor import Patient
from assistant.data.split import Split
from eval.cross_validation import (
    SYSTOLIC_FEATURES,
    OOFPatient,
    feature_table,
    load_recipe,
    murmur_table,
    recalibrated,
    summarise,
)

# None: the recipe's own calls; "recalibrated": `finetune calibrate` fitted on the other folds (nested).
DECISION_RULES = (None, "argmax", "cost", "balanced", "recalibrated")
METRICS = ("auroc", "wacc", "uar", "ece", "recall_Present", "recall_Unknown", "recall_Absent")


def recipes(out: Path) -> dict[str, tuple[list[OOFPatient], dict[int, dict]]]:
    found = {}
    for folder in sorted(p for p in out.iterdir() if p.is_dir()) if out.is_dir() else []:
        rows, infos = load_recipe(folder)
        if rows:
            found[folder.name] = (rows, infos)
    return found


def cell(mean: float, std: float) -> str:
    return f"{mean:.3f} ± {std:.3f}" if np.isfinite(std) else f"{mean:.3f}"


def murmur_rows(found: dict[str, tuple[list[OOFPatient], dict]], n_folds: int) -> list[dict]:
    """One row per (recipe, decision rule): mean ± std over folds of each metric."""
    rows = []
    for name, (oof, _) in found.items():
        for rule in DECISION_RULES:
            if rule in ("balanced", "recalibrated") and len({r.fold for r in oof}) < 2:
                continue  # its prior or its fit comes from the other folds' patients
            per_fold = murmur_table(recalibrated(oof), None) if rule == "recalibrated" else murmur_table(oof, rule)
            s = summarise(per_fold)
            rows.append({"recipe": name, "rule": rule or "own", "folds": f"{len(per_fold)}/{n_folds}",
                         **{m: s[m] for m in METRICS}})
    return rows


def murmur_markdown(rows: list[dict]) -> str:
    head = "| recipe | decision | folds | macro AUROC | W.acc | UAR | ECE | recall P | recall U | recall A |"
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        lines.append(f"| {r['recipe']} | {r['rule']} | {r['folds']} | "
                     + " | ".join(cell(*r[m]) for m in METRICS) + " |")
    return "\n".join(lines)


def feature_markdown(found: dict[str, tuple[list[OOFPatient], dict]], patients: list[Patient],
                     splits: list[Split]) -> str:
    """Per recipe and feature: UAR mean ± std over folds, the majority baseline's, and in how many folds the
    recipe beat the baseline."""
    by_id = {p.patient_id: p for p in patients}
    lines = ["| recipe | feature | UAR | majority UAR | folds above majority |", "|---|---|---|---|---|"]
    for name, (oof, _) in found.items():
        table = feature_table(oof, by_id, splits, SYSTOLIC_FEATURES)
        for feature, folds in table.items():
            if not folds:
                continue
            ours = [v[0] for v in folds.values()]
            base = [v[1] for v in folds.values()]
            std = float(np.std(ours, ddof=1)) if len(ours) > 1 else float("nan")
            above = sum(o > b for o, b in zip(ours, base))
            lines.append(f"| {name} | {feature} | {cell(float(np.mean(ours)), std)} | {np.mean(base):.3f} | "
                         f"{above}/{len(folds)} |")
    return "\n".join(lines)


def cost_lines(found: dict[str, tuple[list[OOFPatient], dict]]) -> str:
    """What each recipe's folds cost, from the fold files."""
    lines = []
    for name, (_, infos) in found.items():
        minutes = [i.get("train_minutes", i.get("minutes", float("nan"))) + i.get("predict_minutes", 0.0)
                   for i in infos.values()]
        lines.append(f"- {name}: {len(infos)} folds, {np.nansum(minutes):.1f} min in all")
    return "\n".join(lines)
