"""`murmurscope predict`: the murmur call and the 11 features per patient, as the Challenge CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from assistant.errors import MurmurScopeError

err = Console(stderr=True)


def predict(
    path: Annotated[Path, typer.Argument(help="CirCor-layout folder (.wav or .flac), a patient's folder or a file.")],
    out_csv: Annotated[Path, typer.Option("--out", help="CSV to write, one row per patient.")],
    model: Annotated[Path | None, typer.Option(help="Folder with murmur.json + murmur.safetensors (default: shipped).")]
    = None,
    decision: Annotated[str | None, typer.Option(help="head (default) or any_recording (Present if any recording is).")]
    = None,
    force: Annotated[bool, typer.Option(help="Overwrite --out if it exists.")] = False,
    threads: Annotated[int, typer.Option(help="torch CPU threads (1 is fastest on a busy machine).")] = 1,
) -> None:
    """Murmur (Present/Unknown/Absent), probabilities and the 11 murmur features per patient. Never reads labels."""
    import csv
    from dataclasses import replace

    import torch
    from tqdm.auto import tqdm

    from assistant.data.audio import load_recording
    from assistant.data.circor import read_folder
    from assistant.data.labels import PREDICTION_COLUMNS
    from assistant.murmur.model import DECISIONS, MurmurModel

    if out_csv.exists() and not force:
        raise MurmurScopeError(f"{out_csv}: exists; pass --force to overwrite it")
    if decision is not None and decision not in DECISIONS:
        raise MurmurScopeError(f"--decision must be one of {', '.join(DECISIONS)}, not {decision!r}")
    if not path.exists():
        raise MurmurScopeError(f"{path}: no such file or folder")
    torch.set_num_threads(threads)
    murmur_model = MurmurModel.load(model)
    if decision is not None:
        murmur_model.config = replace(murmur_model.config, decision=decision)
    if path.is_file():
        rec = load_recording(path)
        predictions = [murmur_model.predict_recordings([rec], patient_id=rec.patient_id or path.stem)]
    else:
        patients = read_folder(path)
        predictions = []
        for patient in tqdm(patients, desc="patients", disable=len(patients) < 2):
            predictions.append(murmur_model.predict_patient(patient))
    rows = []
    for p in predictions:
        for w in p.warnings:
            err.print(f"[yellow]warning:[/yellow] {escape(str(w))}", highlight=False, soft_wrap=True)
        rows.append(p.csv_row())
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    with out_csv.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(PREDICTION_COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    counts = {c: sum(r["murmur"] == c for r in rows) for c in ("Present", "Unknown", "Absent")}
    tally = ", ".join(f"{k} {v}" for k, v in counts.items())
    err.print(f"wrote {len(rows)} patients to {escape(str(out_csv))} ({tally})")
