"""`murmurscope eval compare RUN_A RUN_B`: two runs' headline metrics side by side, with the differences."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from assistant.errors import MurmurScopeError
from assistant.labels import FEATURES
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

    def to_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "same_patients": self.same_patients, "same_protocol": self.same_protocol,
                "rows": [{"metric": m, "a": a, "b": b, "delta": d} for m, a, b, d in self.rows]}


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
    return Comparison(str(run_a), str(run_b), ra.get("patients") == rb.get("patients"),
                      ma["run"]["protocol"] == mb["run"]["protocol"], rows)
