"""The cross-validation tables (after seed 002's Table 1) from the OOF predictions under `build/cv/<recipe>/`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from assistant.data.circor import Patient
from assistant.data.split import Split
from eval.cross_validation import (
    SYSTOLIC_FEATURES,
    OOFPatient,
    ece_floor,
    feature_table,
    load_recipe,
    murmur_table,
    recalibrated,
    summarise,
)

# None: the recipe's own calls; "oof-<mode>": `finetune calibrate --mode <mode>` fitted on the other folds.
DECISION_RULES = (None, "argmax", "cost", "balanced", "oof-temperature", "oof-vector")


def _nested(rule: str | None) -> bool:
    return rule == "balanced" or (rule or "").startswith("oof-")


def rule_table(oof: list[OOFPatient], rule: str | None) -> dict[int, dict[str, float]]:
    if (rule or "").startswith("oof-"):
        return murmur_table(recalibrated(oof, rule.removeprefix("oof-")), None)
    return murmur_table(oof, rule)
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
            if _nested(rule) and len({r.fold for r in oof}) < 2:
                continue  # its prior or its fit comes from the other folds' patients
            per_fold = rule_table(oof, rule)
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


def study_markdown(rows: list[dict]) -> str:
    """Seed 002's Table 1, one line per recipe under its own decision rule (the full table has every rule)."""
    return murmur_markdown([r for r in rows if r["rule"] == "own"])


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


def feature_summary_markdown(found: dict[str, tuple[list[OOFPatient], dict]], patients: list[Patient],
                             splits: list[Split]) -> str:
    """One line per recipe: each systolic feature's mean UAR over folds and in how many folds it beat the
    majority baseline (the full table has the spread and the baselines)."""
    by_id = {p.patient_id: p for p in patients}
    lines = ["| recipe | " + " | ".join(SYSTOLIC_FEATURES) + " |", "|---|" + "---|" * len(SYSTOLIC_FEATURES)]
    for name, (oof, _) in found.items():
        table = feature_table(oof, by_id, splits, SYSTOLIC_FEATURES)
        cells = []
        for feature in SYSTOLIC_FEATURES:
            folds = table.get(feature, {})
            above = sum(o > b for o, b in folds.values())
            cells.append(f"{np.mean([o for o, _ in folds.values()]):.3f} ({above}/{len(folds)})" if folds else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def calibration_lines(found: dict[str, tuple[list[OOFPatient], dict]]) -> str:
    """Per recipe: its pooled OOF ECE beside the ECE a perfectly calibrated model with the same
    probabilities would score, per fold and pooled, so the table's ECE column can be read against it."""
    from assistant.data.labels import MURMUR_CLASSES
    from eval.metrics import calibration_bins

    lines = []
    for name, (oof, _) in found.items():
        pooled = calibration_bins([r.murmur for r in oof], np.array([r.probabilities for r in oof]),
                                  MURMUR_CLASSES)["ece"]
        floor = ece_floor(oof)
        q = {k: f"{v[1]:.3f} [{v[0]:.3f}, {v[2]:.3f}]" for k, v in floor.items()}
        lines.append(f"- {name}: pooled OOF ECE {pooled:.3f}; a perfectly calibrated model with these probabilities "
                     f"(labels drawn from them, 200 draws, median [5%, 95%]) scores {q['per_fold']} per fold "
                     f"(mean over folds) and {q['pooled']} pooled")
    return "\n".join(lines)


def cost_lines(found: dict[str, tuple[list[OOFPatient], dict]]) -> str:
    """What each recipe's folds cost, from the fold files."""
    lines = []
    for name, (_, infos) in found.items():
        minutes = [i.get("train_minutes", i.get("minutes", float("nan"))) + i.get("predict_minutes", 0.0)
                   for i in infos.values()]
        lines.append(f"- {name}: {len(infos)} folds, {np.nansum(minutes):.1f} min in all")
    return "\n".join(lines)


def plot_cv(found: dict[str, tuple[list[OOFPatient], dict]], path: Path) -> Path:
    """Left: pooled OOF reliability of each recipe's own and recalibrated probabilities. Right: each fold's
    W.acc and UAR under every decision rule, so the spread the ± hides is visible."""
    from assistant.data.labels import MURMUR_CLASSES
    from eval.metrics import calibration_bins
    from eval.report import _plt

    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.plot([0, 1], [0, 1], "--", color="gray", lw=1, label="perfect calibration")
    labels = []
    for i, (name, (oof, _)) in enumerate(found.items()):
        nested = len({r.fold for r in oof}) > 1
        versions = [("own", oof)] + ([(f"oof-{m}", recalibrated(oof, m)) for m in ("temperature", "vector")]
                                     if nested else [])
        for style, (rule, rows) in zip(("-o", ":s", "--^"), versions):
            cal = calibration_bins([r.murmur for r in rows], np.array([r.probabilities for r in rows]), MURMUR_CLASSES)
            b = cal["bins"]
            left.plot([x["confidence"] for x in b], [x["accuracy"] for x in b], style, color=f"C{i}", ms=4,
                      label=f"{name} {rule} (ECE {cal['ece']:.3f})")
        for rule in DECISION_RULES:
            if _nested(rule) and not nested:
                continue
            per_fold = rule_table(oof, rule)
            x = len(labels)
            labels.append(f"{name}\n{rule or 'own'}")
            right.scatter([x - 0.1] * len(per_fold), [f["wacc"] for f in per_fold.values()], color="C0", s=12)
            right.scatter([x + 0.1] * len(per_fold), [f["uar"] for f in per_fold.values()], color="C1", s=12)
    left.set_xlim(0, 1), left.set_ylim(0, 1)
    left.set_xlabel("top-class confidence (out of fold)"), left.set_ylabel("accuracy")
    left.legend(fontsize=6, loc="upper left")
    right.scatter([], [], color="C0", s=12, label="W.acc per fold")
    right.scatter([], [], color="C1", s=12, label="UAR per fold")
    right.set_xticks(range(len(labels)), labels, fontsize=5, rotation=60, ha="right")
    right.set_ylim(0.4, 1.0)
    right.axhline(0.83, color="C0", lw=0.8, ls="--")
    right.axhline(0.78, color="C1", lw=0.8, ls="--")
    right.legend(fontsize=7, loc="lower right")
    right.set_title("dashed: the issue's targets (W.acc 0.83, UAR 0.78)", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def plot_study(found: dict[str, tuple[list[OOFPatient], dict]], path: Path) -> Path:
    """Seed 002's Table 1 as a figure: each recipe's per-fold macro AUROC, W.acc and UAR under its own decision
    (dots) and their mean (bar), so that the differences can be read against the folds' spread."""
    from eval.report import _plt

    plt = _plt()
    names = list(found)
    fig, axes = plt.subplots(1, 3, figsize=(12, 0.9 + 0.32 * len(names)), sharey=True)
    for ax, (metric, title) in zip(axes, (("auroc", "macro AUROC"), ("wacc", "weighted accuracy"), ("uar", "UAR"))):
        for y, name in enumerate(names):
            per_fold = [f[metric] for f in murmur_table(found[name][0]).values()]
            ax.barh(y, float(np.mean(per_fold)), color="C0" if name.startswith("cnn") else "C1", alpha=0.35)
            ax.scatter(per_fold, [y] * len(per_fold), color="k", s=8, zorder=3)
        ax.set_title(title, fontsize=9)
        ax.set_xlim(0.3, 1.0)
        ax.grid(axis="x", lw=0.3)
    axes[0].set_yticks(range(len(names)), names, fontsize=6)
    axes[0].invert_yaxis()
    fig.suptitle("5-fold patient-level CV on 611 CirCor patients: per-fold out-of-fold scores (dots) and mean (bar)",
                 fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path
