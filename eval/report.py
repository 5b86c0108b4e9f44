"""What a run leaves in --out: predictions.csv, metrics.json, CSV tables, PNG plots and report.md."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

from assistant.data.labels import FEATURES, MURMUR_CLASSES, PREDICTION_COLUMNS
from eval.baselines import beside

if TYPE_CHECKING:
    from eval.runner import RunResult

# The metrics plotted against published numbers (the CSV and report list every row).
HEADLINE = ("murmur.weighted_accuracy", "murmur.uar", "murmur.auroc_macro", "binary.uar", "binary.sensitivity",
            "binary.specificity", "binary.auroc")


def _fmt(v: float | None, digits: int = 3) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _ci(d: dict) -> str:
    lo, hi = d["ci95"]
    return f"{_fmt(d['value'])} [{_fmt(lo)}, {_fmt(hi)}]"


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(ax, matrix: list[list[int]], labels: list[str], title: str) -> None:
    import numpy as np

    m = np.asarray(matrix, dtype=float)
    rows = m.sum(axis=1, keepdims=True)
    norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.6 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xlabel("predicted", fontsize=7)
    ax.set_ylabel("expert", fontsize=7)
    ax.set_title(title, fontsize=8)


def plot_murmur(metrics: dict, out: Path) -> list[str]:
    plt = _plt()
    written = []
    m = metrics["murmur"]
    if m["confusion"]["matrix"]:
        fig, ax = plt.subplots(figsize=(3.6, 3.4))
        plot_confusion(ax, m["confusion"]["matrix"], list(MURMUR_CLASSES),
                       f"murmur (n={m['n']}, W.acc {_fmt(m['weighted_accuracy']['value'])})")
        fig.tight_layout()
        fig.savefig(out / "confusion_murmur.png", dpi=130)
        plt.close(fig)
        written.append("confusion_murmur.png")
    if m.get("calibration"):
        bins = m["calibration"]["bins"]
        fig, ax = plt.subplots(figsize=(3.8, 3.6))
        ax.plot([0, 1], [0, 1], "--", color="gray", lw=1, label="perfect calibration")
        ax.bar([(b["lo"] + b["hi"]) / 2 for b in bins], [b["accuracy"] for b in bins], width=0.09, alpha=0.7,
               label="accuracy")
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o", color="C3", ms=4,
                label="mean confidence")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("top-class confidence")
        ax.set_ylabel("accuracy")
        ax.set_title(f"murmur reliability (ECE {_fmt(m['calibration']['ece'])})", fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
        fig.tight_layout()
        fig.savefig(out / "reliability_murmur.png", dpi=130)
        plt.close(fig)
        written.append("reliability_murmur.png")
    return written


def plot_features(metrics: dict, out: Path) -> list[str]:
    plt = _plt()
    feats = [(k, v) for k, v in metrics["features"].items() if v["n"] > 0]
    if not feats:
        return []
    fig, axes = plt.subplots(1, len(feats), figsize=(2.6 * len(feats), 2.8), squeeze=False)
    for ax, (name, f) in zip(axes[0], feats):
        plot_confusion(ax, f["confusion"]["rows_true_cols_pred"], f["confusion"]["labels"], f"{name} (n={f['n']})")
    fig.tight_layout()
    fig.savefig(out / "confusion_features.png", dpi=110)
    plt.close(fig)
    # Bars: our accuracy (with its bootstrap interval) beside the majority baseline of each feature.
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(feats)), 3.6))
    xs = range(len(feats))
    acc = [f["accuracy"]["value"] for _, f in feats]
    err = [[a - f["accuracy"]["ci95"][0] for a, (_, f) in zip(acc, feats)],
           [f["accuracy"]["ci95"][1] - a for a, (_, f) in zip(acc, feats)]]
    ax.bar([x - 0.2 for x in xs], acc, width=0.4, yerr=err, capsize=2, label="this run (95% CI)")
    ax.bar([x + 0.2 for x in xs], [f["majority_baseline"]["accuracy"] for _, f in feats], width=0.4,
           color="gray", alpha=0.6, label="majority baseline")
    ax.set_xticks(list(xs), [f"{k}\n(n={f['n']})" for k, f in feats], rotation=45, ha="right", fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy (Present patients)")
    ax.set_title("murmur features against the majority baseline\n"
                 "(the seeds give no published per-feature numbers)", fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "features_vs_baselines.png", dpi=130)
    plt.close(fig)
    return ["confusion_features.png", "features_vs_baselines.png"]


def plot_baselines(rows: list[dict], out: Path, name: str) -> list[str]:
    """Our value and each comparable published value, one group per metric."""
    plt = _plt()
    shown = [r for r in rows if r["comparable"] and r["metric"] in HEADLINE]
    if not shown:
        return []
    metrics = [k for k in HEADLINE if any(r["metric"] == k for r in shown)]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.8), squeeze=False)
    for ax, key in zip(axes[0], metrics):
        group = [r for r in shown if r["metric"] == key]
        labels = ["this run"] + [r["model"] + ("" if r["verified"] else " *") for r in group]
        values = [group[0]["ours"] or 0.0] + [r["value"] for r in group]
        ax.barh(range(len(values)), values, color=["C0"] + ["gray"] * len(group))
        ax.set_yticks(range(len(values)), labels, fontsize=6)
        ax.set_xlim(0, 1)
        ax.invert_yaxis()
        ax.set_title(key, fontsize=8)
    fig.suptitle("indicative only: published numbers use other test patients (* = value not verified)", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / name, dpi=130)
    plt.close(fig)
    return [name]


def write_predictions(result: RunResult) -> None:
    with (result.out / "predictions.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(PREDICTION_COLUMNS))
        w.writeheader()
        for o in result.outputs:
            w.writerow(o.csv_row())


def write_tables(metrics: dict, rows: list[dict], out: Path) -> list[str]:
    written = []
    if "murmur" in metrics:
        m = metrics["murmur"]
        table = [[k, m[k]["value"], *m[k]["ci95"]] for k in ("weighted_accuracy", "accuracy", "uar", "macro_f1")]
        table += [[f"recall_{c}", v, "", ""] for c, v in m["recall"].items()]
        if m["auroc"]:
            table += [[f"auroc_{c}", v, "", ""] for c, v in m["auroc"].items()]
            table.append(["auroc_macro", m["auroc_macro"]["value"], *m["auroc_macro"]["ci95"]])
        _write_csv(out / "murmur_metrics.csv", ["metric", "value", "ci95_lo", "ci95_hi"], table)
        _write_csv(out / "murmur_confusion.csv", ["expert \\ predicted", *MURMUR_CLASSES],
                   [[c, *r] for c, r in zip(MURMUR_CLASSES, m["confusion"]["matrix"])])
        frows = []
        for view, key in (("end_to_end", "features"), ("head", "features_head")):
            for name, f in metrics.get(key, {}).items():
                frows.append([view, name, f["n"], f["n_unanswered"], f["accuracy"]["value"], *f["accuracy"]["ci95"],
                              f["uar"]["value"], *f["uar"]["ci95"], f["macro_f1"]["value"], *f["macro_f1"]["ci95"],
                              f["majority_baseline"]["label"], f["majority_baseline"]["accuracy"],
                              f["majority_baseline"]["uar"]])
        _write_csv(out / "feature_metrics.csv",
                   ["view", "feature", "n", "n_unanswered", "accuracy", "acc_lo", "acc_hi", "uar", "uar_lo",
                    "uar_hi", "macro_f1", "f1_lo", "f1_hi", "majority_label", "majority_accuracy", "majority_uar"],
                   frows)
        written += ["murmur_metrics.csv", "murmur_confusion.csv", "feature_metrics.csv"]
    if "binary" in metrics:
        b = metrics["binary"]
        _write_csv(out / "binary_metrics.csv", ["metric", "value", "ci95_lo", "ci95_hi"],
                   [[k, b[k]["value"], *b[k]["ci95"]] for k in ("uar", "sensitivity", "specificity")]
                   + [["auroc", b["auroc"], "", ""]])
        written.append("binary_metrics.csv")
    _write_csv(out / "baselines.csv",
               ["id", "model", "metric", "published", "ours", "comparable", "verified", "split_protocol", "why"],
               [[r["id"], r["model"], r["metric"], r["value"], r["ours"], r["comparable"], r["verified"],
                 r["split_protocol"], r["why"]] for r in rows])
    written.append("baselines.csv")
    return written


def _feature_table(features: dict) -> list[str]:
    lines = ["| feature | n | accuracy [95% CI] | UAR [95% CI] | macro F1 | majority (acc / UAR) | unanswered |",
             "|---|---|---|---|---|---|---|"]
    for name in FEATURES:
        f = features[name]
        if f["n"] == 0:
            lines.append(f"| {name} | 0 | — | — | — | — | — |")
            continue
        mb = f["majority_baseline"]
        lines.append(f"| {name} | {f['n']} | {_ci(f['accuracy'])} | {_ci(f['uar'])} | "
                     f"{_fmt(f['macro_f1']['value'])} | {mb['label']}: {_fmt(mb['accuracy'])} / "
                     f"{_fmt(mb['uar'])} | {f['n_unanswered']} |")
    return lines


def render_markdown(metrics: dict, rows: list[dict], files: list[str]) -> str:
    run = metrics["run"]
    lines = [f"# Evaluation: `{run['predictor']}` on {run['layout']} ({run['split']} split)", "",
             f"- data: `{run['data_root']}`", f"- patients scored: {run['n_patients']}",
             f"- protocol: `{run['protocol']}`; bootstrap: {run['bootstrap_resamples']} patient resamples, "
             f"seed {run['bootstrap_seed']} (95% percentile intervals in brackets)"]
    if run.get("errors"):
        lines.append(f"- patients whose recordings could not be read (scored as no valid output): "
                     f"{len(run['errors'])}")
    skipped = run.get("skipped") or {}
    if skipped:
        n = sum(len(v) for v in skipped.values())
        lines.append(f"- recordings skipped (the patient predicted from the others; listed in `skipped.csv`): "
                     f"{n} in {len(skipped)} patients")
    if "murmur" in metrics:
        m = metrics["murmur"]
        lines += ["", "## Murmur (Present / Unknown / Absent)", "",
                  "Weighted accuracy is the official Challenge 2022 score (weights Present 5, Unknown 3, Absent 1; "
                  f"an output with no valid class counts as Present — {m['n_invalid_outputs']} such outputs here).",
                  "", "| metric | value [95% CI] |", "|---|---|",
                  f"| weighted accuracy | {_ci(m['weighted_accuracy'])} |", f"| accuracy | {_ci(m['accuracy'])} |",
                  f"| UAR | {_ci(m['uar'])} |", f"| macro F1 | {_ci(m['macro_f1'])} |"]
        lines += [f"| recall {c} | {_fmt(v)} |" for c, v in m["recall"].items()]
        if m["auroc"]:
            lines += [f"| AUROC {c} (one-vs-rest) | {_fmt(v)} |" for c, v in m["auroc"].items()]
            lines.append(f"| AUROC macro | {_ci(m['auroc_macro'])} |")
        if m.get("calibration"):
            lines.append(f"| expected calibration error | {_fmt(m['calibration']['ece'])} |")
        fit = metrics["majority_fit"]
        lines += ["", "## Murmur features", "",
                  f"Scored on {metrics['feature_population']}. The majority baseline predicts the most frequent "
                  f"label among the Present patients of the {fit['split']} split ({fit['n']} patients). "
                  "A missing or unparseable answer counts as wrong: this is the end-to-end view, as "
                  "predictions.csv holds it (a predictor that names features only after calling Present loses "
                  "the patients whose murmur it missed).", ""] + _feature_table(metrics["features"])
        if "features_head" in metrics:
            lines += ["", "### Feature heads alone", "",
                      "The same patients scored on each feature head's top label whatever the murmur call, which "
                      "judges the heads apart from the murmur decision.", ""] + _feature_table(
                metrics["features_head"])
    if "binary" in metrics:
        b = metrics["binary"]
        lines += ["", "## PhysioNet 2016 (abnormal / normal)", "", f"Mapping: {b['mapping']} "
                  f"({b['unknown_outputs']} Unknown outputs).", "", "| metric | value [95% CI] |", "|---|---|",
                  f"| UAR | {_ci(b['uar'])} |", f"| sensitivity | {_ci(b['sensitivity'])} |",
                  f"| specificity | {_ci(b['specificity'])} |", f"| AUROC | {_fmt(b['auroc'])} |"]
    shown = [r for r in rows if r["comparable"]]
    lines += ["", "## Published baselines", "",
              f"Rows of `eval/baselines.yaml` marked comparable with `{run['protocol']}`. None uses our test "
              "patients, so every comparison is indicative only; `verified: no` marks a value we could not "
              "check in a seed or the authors' material.", "",
              "| source | model | metric | published | this run | verified | split protocol | why |",
              "|---|---|---|---|---|---|---|---|"]
    for r in shown:
        lines.append(f"| {r['id']} | {r['model']} | {r['metric']} | {_fmt(r['value'])} | {_fmt(r['ours'])} | "
                     f"{'yes' if r['verified'] else 'no'} | {r['split_protocol']} | {r['why']} |")
    others = [r for r in rows if not r["comparable"]]
    if others:
        lines += ["", f"Not comparable with this run ({len(others)} rows): "
                  + "; ".join(f"{r['id']} ({r['why']})" for r in others)]
    lines += ["", "## Files", ""] + [f"- `{f}`" for f in files]
    return "\n".join(lines) + "\n"


def write_report(result: RunResult) -> None:
    out, metrics = result.out, result.metrics
    rows = beside(metrics, metrics["run"]["protocol"])
    metrics["baselines"] = [{k: r[k] for k in ("id", "metric", "value", "ours", "comparable", "verified", "why")}
                            for r in rows]
    write_predictions(result)
    files = ["predictions.csv", "metrics.json", "cache.jsonl", "run.json"] + write_tables(metrics, rows, out)
    skipped = metrics["run"].get("skipped") or {}
    if skipped:
        _write_csv(out / "skipped.csv", ["patient_id", "recording", "reason"],
                   [[pid, name, why] for pid, recs in skipped.items() for name, why in recs.items()])
        files.append("skipped.csv")
    if "murmur" in metrics:
        files += plot_murmur(metrics, out) + plot_features(metrics, out)
        files += plot_baselines(rows, out, "murmur_vs_baselines.png")
    else:
        files += plot_baselines(rows, out, "binary_vs_baselines.png")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float) + "\n")
    (out / "report.md").write_text(render_markdown(metrics, rows, files))
