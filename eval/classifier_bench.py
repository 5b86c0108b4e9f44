"""`murmurscope eval classifier`: the murmur model on the project's validation split, scored and timed.

The scoring is `murmurscope eval run --predictor classifier` itself (eval/runner.py: the same predictions,
cache, metrics and report), so both commands print the same numbers, intervals included. On top it times one
patient with four 20 s recordings. OUT is the run folder (metrics.json, report.md, predictions.csv,
confusion_murmur.png, ...) plus classifier_bench.json: the headline numbers, per-feature head scores and the
timing. Running it again on the same OUT takes the predictions from the cache and scores them again.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from assistant.data.circor import Patient
from assistant.data.labels import FEATURES
from assistant.errors import MurmurScopeError
from assistant.murmur.model import Decision
from assistant.murmur.whisper_features import READER_SOURCE
from eval.metrics import BOOTSTRAP_SEED
from eval.predictors import ClassifierPredictor
from eval.runner import RunConfig, RunResult
from eval.runner import run as run_eval

BENCH_JSON = "classifier_bench.json"


@dataclass(frozen=True)
class ClassifierBenchConfig:
    circor_root: Path = field(metadata={"help": "Labelled CirCor folder; its validation split is scored."})
    model: Path | None = field(default=None, metadata={"help": "Model folder (default: the shipped weights)."})
    out_dir: Path = field(default=Path("build/eval/classifier"),
                          metadata={"help": "Run folder for the report, the confusion PNG and classifier_bench.json "
                                            "(an existing run of the same model is resumed)."})
    decision: Decision | None = field(default=None, metadata={
        "help": "head or any_recording (default: the model's own)."})
    bootstrap: int = field(default=1000, metadata={"help": "Bootstrap resamples for the 95% intervals."})
    seed: int = field(default=BOOTSTRAP_SEED, metadata={"help": "Bootstrap seed."})
    timing_runs: int = field(default=7, metadata={"help": "Timed predictions of one patient (the median is kept)."})
    threads: int = field(default=2, metadata={"help": "torch CPU threads (the target is for 2)."})
    workers: int = field(default=2, metadata={"help": "Patients predicted in parallel."})
    progress: bool = field(default=True, metadata={"help": "Show a progress bar."})


def _timed_patient(patients: list[Patient]) -> Patient:
    """The first patient with four recordings (the target's case), else the one with the most."""
    if not patients:
        raise MurmurScopeError("no validation patients to time")
    return next((p for p in patients if len(p.recordings) >= 4), max(patients, key=lambda p: len(p.recordings)))


def _time_patient(model, patient: Patient, runs: int) -> float:
    """Median seconds for `predict_recordings` on up to four 20 s recordings (decoded, at CirCor's 4 kHz)."""
    from assistant.data.audio import Recording

    recs = []
    for ref in patient.recordings[:4]:
        r = ref.load()
        n = 20 * r.rate
        recs.append(Recording(np.resize(r.samples, n), r.rate, r.site, patient.patient_id, r.source))
    model.predict_recordings(recs)  # warm-up
    times = []
    for _ in range(max(1, runs)):
        t0 = time.perf_counter()
        model.predict_recordings(recs)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def summarize(result: RunResult, predictor: ClassifierPredictor, seconds: float, timed: Patient,
              config: ClassifierBenchConfig) -> dict:
    """The benchmark's numbers, all read from the run's metrics (nothing is scored here)."""
    m = result.metrics["murmur"]
    n_train = predictor.model.config.n_train
    reader = predictor.model.feature_reader
    read = reader.config.features if reader is not None else ()
    features = {}
    # Absent only when some patient's recordings could not be read at all (run.errors names them).
    heads = result.metrics.get("features_head", {})
    for name in FEATURES if heads else ():
        f = heads[name]
        features[name] = {
            "n_train": int((reader.config.n_train if name in read else n_train).get(name, 0)),
            "source": READER_SOURCE if name in read else "heads",
            "n_val": f["n"], "majority": f["majority_baseline"]["label"],
            "accuracy": f["accuracy"]["value"], "accuracy_ci": f["accuracy"]["ci95"],
            "uar": f["uar"]["value"], "uar_ci": f["uar"]["ci95"],
            "majority_accuracy": f["majority_baseline"]["accuracy"], "majority_uar": f["majority_baseline"]["uar"],
        }
    return {
        "model": str(config.model or "shipped"), "decision": predictor.model.config.decision, "n_val": m["n"],
        "weighted_accuracy": m["weighted_accuracy"]["value"], "weighted_accuracy_ci": m["weighted_accuracy"]["ci95"],
        "uar": m["uar"]["value"], "uar_ci": m["uar"]["ci95"],
        "accuracy": m["accuracy"]["value"], "accuracy_ci": m["accuracy"]["ci95"],
        "recall": m["recall"], "confusion": m["confusion"],
        "features": features,
        "reader_patients": reader.config.training.get("patients") if reader is not None else None,
        "seconds_per_patient": seconds, "timed_patient": timed.patient_id,
        "timed_recordings": min(4, len(timed.recordings)), "timing_runs": max(1, config.timing_runs),
        "threads": config.threads,
        "bootstrap_resamples": config.bootstrap, "bootstrap_seed": config.seed,
        "predicted": result.predicted, "from_cache": result.resumed, "run": str(result.out),
    }


def run(config: ClassifierBenchConfig) -> dict:
    import torch

    torch.set_num_threads(config.threads)
    predictor = ClassifierPredictor(config.model, config.decision)
    spec = "classifier" if config.model is None else f"classifier:{config.model}"
    result = run_eval(RunConfig(config.circor_root, spec, config.out_dir, split="val", workers=config.workers,
                                bootstrap=config.bootstrap, seed=config.seed, progress=config.progress), predictor)
    patients = result.evalset.by_id()
    timed = _timed_patient([patients[pid] for pid in result.evalset.selected])
    seconds = _time_patient(predictor.model, timed, config.timing_runs)
    report = summarize(result, predictor, seconds, timed, config)
    (config.out_dir / BENCH_JSON).write_text(json.dumps(report, indent=2) + "\n")
    return report
