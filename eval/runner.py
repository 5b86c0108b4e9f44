"""`murmurscope eval run`: predict every selected patient once, cached, then score and report.

Each finished patient is appended to `OUT/cache.jsonl` at once, so an interrupted run loses at most
the patients in flight; running the same command again predicts only the rest. `OUT/run.json` records
what the cache depends on (data, split, predictor); a different configuration never reuses or
overwrites an existing run folder.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from assistant.errors import AudioError, MurmurScopeError
from eval.datasets import EvalSet, load_eval_set
from eval.predictors import CsvPredictor, PatientOutput, Predictor, PredictorError, build_predictor

CACHE = "cache.jsonl"
MANIFEST = "run.json"


class RunExistsError(MurmurScopeError):
    """The output folder holds something other than a resumable run of the same configuration."""


@dataclass(frozen=True)
class RunConfig:
    """What `murmurscope eval run` does; its options are built from these fields."""

    data_root: Path = field(metadata={"help": "A labelled CirCor-layout folder, or a PhysioNet 2016 folder "
                                              "(REFERENCE.csv).", "aliases": ("--circor-root",)})
    predictor: str = field(metadata={"help": "classifier[:DIR], classifier-gated[:DIR], abnormal[:DIR], audio-llm, "
                                             "majority or csv:PATH."})
    out: Path = field(metadata={"help": "Run folder (created; an existing one is only resumed, never overwritten)."})
    split: str | None = field(default=None, metadata={"help": "val (CirCor default: the project split), train or all."})
    endpoint: str | None = field(default=None, metadata={
        "help": "audio-llm: OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1."})
    model: str | None = field(default=None, metadata={
        "help": "audio-llm: served model name (default: the first served)."})
    workers: int = field(default=2, metadata={"help": "Patients predicted in parallel."})
    bootstrap: int = field(default=1000, metadata={"help": "Bootstrap resamples for the 95% intervals."})
    seed: int = field(default=2022, metadata={"help": "Bootstrap seed."})
    unknown_as: str = field(default="abnormal", metadata={
        "help": "PhysioNet 2016: how an Unknown murmur output is scored (abnormal or normal)."})
    progress: bool = field(default=True, metadata={"help": "Show a progress bar."})


@dataclass
class RunResult:
    out: Path
    evalset: EvalSet
    outputs: list[PatientOutput]
    metrics: dict
    resumed: int = 0  # patients taken from the cache
    predicted: int = 0  # patients predicted in this invocation
    errors: dict[str, str] = field(default_factory=dict)


def manifest_for(config: RunConfig, evalset: EvalSet, predictor: Predictor) -> dict:
    return {
        "data_root": str(evalset.root.resolve()),
        "layout": evalset.layout,
        "split": evalset.split,
        "patients": list(evalset.selected),
        "predictor": config.predictor,
        "fingerprint": predictor.fingerprint(),
        "endpoint": config.endpoint,
        "model": config.model,
    }


def prepare_out(out: Path, manifest: dict) -> None:
    """Create OUT, or accept it only when it holds a run with exactly this manifest."""
    if out.exists() and not out.is_dir():
        raise RunExistsError(f"{out}: exists and is not a folder")
    if out.exists() and any(out.iterdir()):
        existing = out / MANIFEST
        if not existing.exists():
            raise RunExistsError(f"{out}: not empty and not an evaluation run; choose another --out")
        try:
            previous = json.loads(existing.read_text())
        except json.JSONDecodeError as e:
            raise RunExistsError(f"{out}: unreadable {MANIFEST} ({e}); choose another --out") from e
        if previous != manifest:
            changed = sorted(k for k in set(previous) | set(manifest) if previous.get(k) != manifest.get(k))
            raise RunExistsError(f"{out}: holds a run with a different configuration ({', '.join(changed)}); "
                                 "choose another --out")
        return
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def read_cache(path: Path, wanted: set[str]) -> dict[str, PatientOutput]:
    cached: dict[str, PatientOutput] = {}
    if not path.exists():
        return cached
    for line in path.read_text().splitlines():
        try:
            out = PatientOutput.from_json(json.loads(line))
        except (json.JSONDecodeError, KeyError):
            continue  # a line cut short by the interruption: that patient is predicted again
        if out.patient_id in wanted:
            cached[out.patient_id] = out
    return cached


def predict_all(evalset: EvalSet, predictor: Predictor, cache_path: Path, workers: int, progress: bool,
                cached: dict[str, PatientOutput]) -> tuple[dict[str, PatientOutput], dict[str, str]]:
    """Predict the uncached patients in parallel, appending each result to the cache as it lands."""
    patients = evalset.by_id()
    todo = [pid for pid in evalset.selected if pid not in cached]
    results = dict(cached)
    errors: dict[str, str] = {}
    lock = threading.Lock()

    def one(pid: str) -> PatientOutput:
        try:
            return predictor.predict(patients[pid].unlabelled())
        except AudioError as e:
            # An unreadable recording is that patient's failure, scored as an output with no valid class.
            errors[pid] = str(e)
            return PatientOutput(pid, None)

    bar = tqdm(total=len(evalset.selected), initial=len(cached), desc=f"eval {predictor.name}", unit="patient",
               disable=not progress)
    with cache_path.open("a") as fh, ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending = {pool.submit(one, pid) for pid in todo[: max(1, workers) * 2]}
        queue = iter(todo[max(1, workers) * 2:])
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                # Finished patients are saved before any failure among them is raised.
                for fut in sorted(done, key=lambda f: f.exception() is not None):
                    out = fut.result()
                    with lock:
                        fh.write(json.dumps(out.to_json()) + "\n")
                        fh.flush()
                    results[out.patient_id] = out
                    bar.update()
                    nxt = next(queue, None)
                    if nxt is not None:
                        pending.add(pool.submit(one, nxt))
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise
        finally:
            bar.close()
    return results, errors


def run(config: RunConfig, predictor: Predictor | None = None) -> RunResult:
    from eval.report import write_report
    from eval.scoring import UNKNOWN_AS, score

    if config.unknown_as not in UNKNOWN_AS:
        raise MurmurScopeError(f"--unknown-as must be abnormal or normal, not {config.unknown_as!r}")
    evalset = load_eval_set(config.data_root, config.split)
    if predictor is None:
        by_id = evalset.by_id()
        predictor = build_predictor(config.predictor, [by_id[i] for i in evalset.fit], evalset.binary_truth or None,
                                    config.endpoint, config.model)
    if isinstance(predictor, CsvPredictor) and predictor.covers(evalset.selected) == 0:
        raise PredictorError(f"{predictor.path}: lists none of the {len(evalset.selected)} patients to score")
    manifest = manifest_for(config, evalset, predictor)
    prepare_out(config.out, manifest)
    cache_path = config.out / CACHE
    cached = read_cache(cache_path, set(evalset.selected))
    results, errors = predict_all(evalset, predictor, cache_path, config.workers, config.progress, cached)
    outputs = [results[pid] for pid in evalset.selected]
    metrics = score(evalset, outputs, config.unknown_as, config.bootstrap, config.seed)
    metrics["run"] = {k: v for k, v in manifest.items() if k != "patients"} | {
        "n_patients": len(outputs), "protocol": evalset.protocol, "bootstrap_resamples": config.bootstrap,
        "bootstrap_seed": config.seed, "errors": errors,
        "skipped": {o.patient_id: o.skipped for o in outputs if o.skipped}}
    result = RunResult(config.out, evalset, outputs, metrics, len(cached), len(outputs) - len(cached), errors)
    write_report(result)
    return result
