"""Segmenter benchmark on the project split's validation patients.

S1 and S2 detection F1 at +-60 ms (each reference sound matches at most one predicted sound of the
same kind, centre to centre), median absolute heart-rate error against the rate of the annotated S1
onsets, and speed (median seconds per 20 s of audio on one core). Predicted sounds count only where
the reference is annotated (state 0 is excluded from scoring): within the annotated frames widened
by the tolerance.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from assistant.data.circor import RecordingRef, read_folder
from assistant.data.segmentation import Segmentation, State
from assistant.data.split import SplitConfig, split_patients
from assistant.errors import DatasetError
from assistant.segment.segmenter import Emission


@dataclass
class SegmenterBenchConfig:
    circor_root: Path = field(metadata={"help": "CirCor root; the project split's validation patients are scored."})
    out: Path = field(default=Path("build/segmenter_bench"), metadata={
        "help": "Folder for segmenter_bench.json and segmenter_bench.png."})
    weights: Path | None = field(default=None, metadata={"help": "Folder with segmenter weights (default: shipped)."})
    emission: Emission | None = field(default=None, metadata={
        "help": "Override the emission model: neural or logistic."})
    tolerance_s: float = field(default=0.06, metadata={"help": "Match tolerance for S1/S2 centres (s)."})
    speed_files: int = field(default=60, metadata={"help": "Recordings timed for the speed figure."})
    one_core: bool = field(default=True, metadata={"help": "Pin the process to one CPU core."})
    max_recordings: int | None = field(default=None, metadata={"help": "Score at most this many recordings."})
    split: SplitConfig = field(default_factory=SplitConfig)


@dataclass
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def add(self, other: Counts) -> None:
        self.tp, self.fp, self.fn = self.tp + other.tp, self.fp + other.fp, self.fn + other.fn

    @property
    def f1(self) -> float:
        return 2 * self.tp / max(2 * self.tp + self.fp + self.fn, 1)


def centres(seg: Segmentation, state: State) -> np.ndarray:
    return np.array([(iv.start + iv.end) / 2 for iv in seg.of(state)])


def match(ref: np.ndarray, pred: np.ndarray, tolerance: float) -> Counts:
    """One-to-one matching, closest pairs first, of event times within `tolerance` seconds."""
    if ref.size == 0 or pred.size == 0:
        return Counts(0, int(pred.size), int(ref.size))
    dist = np.abs(ref[:, None] - pred[None, :])
    pairs = np.argwhere(dist <= tolerance)
    pairs = pairs[np.argsort(dist[pairs[:, 0], pairs[:, 1]], kind="stable")]
    used_r, used_p = set(), set()
    for i, j in pairs:
        if i not in used_r and j not in used_p:
            used_r.add(i)
            used_p.add(j)
    tp = len(used_r)
    return Counts(tp, int(pred.size) - tp, int(ref.size) - tp)


def score_recording(ref: Segmentation, pred: Segmentation, tolerance: float) -> dict[State, Counts]:
    annotated = [(iv.start - tolerance, iv.end + tolerance) for iv in ref.intervals if iv.state != State.UNANNOTATED]
    out = {}
    for state in (State.S1, State.S2):
        p = centres(pred, state)
        inside = np.zeros(p.size, dtype=bool)
        for a, b in annotated:
            inside |= (p >= a) & (p <= b)
        out[state] = match(centres(ref, state), p[inside], tolerance)
    return out


def annotated_heart_rate(ref: Segmentation) -> float | None:
    onsets = np.array([iv.start for iv in ref.of(State.S1)])
    if onsets.size < 3:
        return None
    return float(60.0 / np.median(np.diff(onsets)))


def validation_refs(config: SegmenterBenchConfig) -> list[RecordingRef]:
    patients = read_folder(config.circor_root)
    val = set(split_patients(patients, config.split).val)
    refs = [r for p in patients if p.patient_id in val for r in p.recordings if r.tsv_path is not None]
    if not refs:
        raise DatasetError(f"{config.circor_root}: no validation recordings with a .tsv annotation")
    return refs[: config.max_recordings] if config.max_recordings else refs


def run(config: SegmenterBenchConfig) -> dict:
    import torch

    from assistant.segment.segmenter import Segmenter, default_segmenter

    if config.one_core and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    torch.set_num_threads(1)
    seg = Segmenter.load(config.weights) if config.weights else default_segmenter()
    if config.emission:
        seg = seg.with_config(emission=config.emission)
    refs = validation_refs(config)
    totals = {State.S1: Counts(), State.S2: Counts()}
    rows, seconds_per_20 = [], []
    for k, ref in enumerate(tqdm(refs, desc="validation recordings", unit="rec")):
        rec = ref.load()
        start = time.perf_counter()
        result = seg.segment(rec)
        elapsed = time.perf_counter() - start
        if k < config.speed_files:
            seconds_per_20.append(elapsed * 20.0 / rec.duration)
        truth = ref.segmentation()
        counts = score_recording(truth, result.segmentation, config.tolerance_s)
        for s, c in counts.items():
            totals[s].add(c)
        rows.append({
            "name": ref.name,
            "s1_f1": counts[State.S1].f1,
            "s2_f1": counts[State.S2].f1,
            "hr_true": annotated_heart_rate(truth),
            "hr_pred": result.heart_rate,
            "quality": result.quality,
            "reliable": result.reliable,
        })
    errors = np.array([abs(r["hr_pred"] - r["hr_true"]) for r in rows if r["hr_pred"] and r["hr_true"]])
    speed = float(np.median(seconds_per_20))
    summary = {
        "recordings": len(rows),
        "patients": len({r.patient_id for r in refs}),
        "emission": seg.config.emission,
        "s1_f1": totals[State.S1].f1,
        "s2_f1": totals[State.S2].f1,
        "s1_counts": asdict(totals[State.S1]),
        "s2_counts": asdict(totals[State.S2]),
        "unreliable": int(sum(not r["reliable"] for r in rows)),
        "hr_median_abs_error_bpm": float(np.median(errors)) if errors.size else None,
        "hr_within_5_bpm": float(np.mean(errors <= 5)) if errors.size else None,
        "seconds_per_20s": speed,
        "times_real_time": 20.0 / speed,
        "speed_files": len(seconds_per_20),
        "tolerance_s": config.tolerance_s,
    }
    config.out.mkdir(parents=True, exist_ok=True)
    (config.out / "segmenter_bench.json").write_text(json.dumps({"summary": summary, "recordings": rows}, indent=2))
    summary["plot"] = str(plot(rows, summary, config.out / "segmenter_bench.png"))
    return summary


def plot(rows: list[dict], summary: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    bins = np.linspace(0, 1, 21)
    a.hist([r["s1_f1"] for r in rows], bins=bins, alpha=0.6, label=f"S1 (F1 {summary['s1_f1']:.3f})")
    a.hist([r["s2_f1"] for r in rows], bins=bins, alpha=0.6, label=f"S2 (F1 {summary['s2_f1']:.3f})")
    a.set_yscale("log")
    a.set_xlabel("per-recording F1 (±60 ms)")
    a.set_ylabel("recordings")
    a.legend()
    pts = np.array([(r["hr_true"], r["hr_pred"]) for r in rows if r["hr_true"] and r["hr_pred"]])
    if pts.size:
        b.scatter(pts[:, 0], pts[:, 1], s=8, alpha=0.6)
        lim = [min(pts.min(), 40), max(pts.max(), 200)]
        b.plot(lim, lim, color="grey", lw=0.8)
    b.set_xlabel("annotated heart rate (bpm)")
    b.set_ylabel("segmenter heart rate (bpm)")
    hr = summary["hr_median_abs_error_bpm"]
    b.set_title(f"median |error| {hr:.2f} bpm" if hr is not None else "no heart-rate estimates")
    fig.suptitle(f"segmenter ({summary['emission']}) on {summary['recordings']} validation recordings", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
