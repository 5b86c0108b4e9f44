"""`murmurscope eval compare RUN_A RUN_B`: two runs' headline metrics side by side, with the differences."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from assistant.data.labels import FEATURES
from assistant.errors import MurmurScopeError
from eval.baselines import run_value

MURMUR_KEYS = ("murmur.weighted_accuracy", "murmur.accuracy", "murmur.uar", "murmur.macro_f1", "murmur.auroc_macro",
               "murmur.recall.Present", "murmur.recall.Unknown", "murmur.recall.Absent")
BINARY_KEYS = ("binary.uar", "binary.sensitivity", "binary.specificity", "binary.auroc")


@dataclass
class Comparison:
    a: str
    b: str
    same_patients: bool
    same_protocol: bool
    rows: list[tuple[str, float | None, float | None, float | None]]  # metric, a, b, b - a
    paired: dict[str, tuple[float, float]] = field(default_factory=dict)  # metric -> 95% CI of b - a

    def to_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "same_patients": self.same_patients, "same_protocol": self.same_protocol,
                "rows": [{"metric": m, "a": a, "b": b, "delta": d, "delta_ci95": list(self.paired[m])
                          if m in self.paired else None} for m, a, b, d in self.rows]}


def _load(run: Path) -> tuple[dict, dict]:
    metrics, manifest = run / "metrics.json", run / "run.json"
    if not metrics.exists() or not manifest.exists():
        raise MurmurScopeError(f"{run}: not a finished evaluation run (no metrics.json / run.json)")
    try:
        return json.loads(metrics.read_text()), json.loads(manifest.read_text())
    except json.JSONDecodeError as e:
        raise MurmurScopeError(f"{run}: unreadable run files ({e})") from e


def compare_runs(run_a: Path, run_b: Path) -> Comparison:
    ma, ra = _load(Path(run_a))
    mb, rb = _load(Path(run_b))
    keys = list(MURMUR_KEYS if "murmur" in ma or "murmur" in mb else BINARY_KEYS)
    if "features" in ma and "features" in mb:
        keys += [f"features.{name}.accuracy" for name in FEATURES] + [f"features.{name}.uar" for name in FEATURES]
    rows = []
    for key in keys:
        a, b = run_value(ma, key), run_value(mb, key)
        rows.append((key, a, b, None if a is None or b is None else b - a))
    same = ra.get("patients") == rb.get("patients")
    same_protocol = ma["run"]["protocol"] == mb["run"]["protocol"]
    paired = paired_deltas(Path(run_a), Path(run_b), ra, ma) if same and same_protocol else {}
    return Comparison(str(run_a), str(run_b), same, same_protocol, rows, paired)


def paired_deltas(run_a: Path, run_b: Path, manifest: dict, metrics: dict, resamples: int = 1000) -> dict:
    """Bootstrap interval of B - A over the same resampled patients, when the labelled data can be read."""
    import numpy as np

    from assistant.data.labels import MURMUR_CLASSES
    from eval.datasets import load_eval_set
    from eval.metrics import (
        BOOTSTRAP_SEED,
        MURMUR_WEIGHTS,
        bootstrap_ci,
        class_codes,
        confusion_stats,
        enforce_murmur_output,
    )
    from eval.runner import CACHE, read_cache
    from eval.scoring import to_binary

    try:
        evalset = load_eval_set(manifest["data_root"], manifest["split"])
    except MurmurScopeError:
        return {}  # the data is not on this machine: unpaired differences only
    ids = manifest["patients"]
    outs = [read_cache(run / CACHE, set(ids)) for run in (run_a, run_b)]
    if any(set(o) != set(ids) for o in outs):
        return {}
    seed = metrics["run"].get("bootstrap_seed", BOOTSTRAP_SEED)
    if evalset.layout == "circor":
        by_id = evalset.by_id()
        classes, weights = MURMUR_CLASSES, np.array([MURMUR_WEIGHTS[c] for c in MURMUR_CLASSES])
        t = class_codes([by_id[i].labels.murmur for i in ids], classes)
        pa, pb = (class_codes([enforce_murmur_output(o[i].murmur) for i in ids], classes) for o in outs)
        keys = {"weighted_accuracy": "murmur.weighted_accuracy", "uar": "murmur.uar", "accuracy": "murmur.accuracy",
                "macro_f1": "murmur.macro_f1"}
    else:
        unknown_as = metrics["binary"]["unknown_as"]
        classes, weights = ("abnormal", "normal"), None
        t = class_codes([evalset.binary_truth[i] for i in ids], classes)
        pa, pb = (class_codes([to_binary(o[i].murmur, unknown_as) for i in ids], classes) for o in outs)
        keys = {"uar": "binary.uar"}

    def deltas(i):
        a = confusion_stats(t[i], pa[i], len(classes), weights)
        b = confusion_stats(t[i], pb[i], len(classes), weights)
        return {keys[k]: b[k] - a[k] for k in keys}

    return bootstrap_ci(deltas, len(ids), resamples, seed)
