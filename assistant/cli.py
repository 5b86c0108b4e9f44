"""The `murmurscope` command line: one typer app whose sub-apps follow the packages."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from assistant.errors import MurmurScopeError

app = typer.Typer(
    name="murmurscope",
    help="Heart-murmur consultation from phonocardiograms.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
serve_app = typer.Typer(help="Run the servers: the API and the audio-LLM.", no_args_is_help=True)


def _register_sub_apps() -> None:
    # The training and evaluation packages are only imported for their (light) typer apps here;
    # their heavy imports live inside the commands.
    from eval.cli import app as eval_app
    from finetune.cli import app as finetune_app
    from knowledge.cli import app as index_app

    app.add_typer(finetune_app, name="finetune")
    app.add_typer(index_app, name="index")
    app.add_typer(eval_app, name="eval")
    app.add_typer(serve_app, name="serve")


_register_sub_apps()
out = Console()
err = Console(stderr=True)


def main() -> None:
    """Console-script entry: user errors become one line on stderr and a non-zero exit."""
    try:
        app()
    except MurmurScopeError as e:
        err.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - the promise is no traceback; MURMURSCOPE_DEBUG=1 shows it
        if os.environ.get("MURMURSCOPE_DEBUG"):
            raise
        err.print(f"[red]internal error:[/red] {type(e).__name__}: {e} (set MURMURSCOPE_DEBUG=1 for the traceback)",
                  highlight=False, soft_wrap=True)
        sys.exit(1)


@app.command()
def info(
    path: Annotated[Path, typer.Argument(help="An audio file, a patient folder or a CirCor root.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Patients, sites, durations, sample rates and quality flags."""
    from assistant.info import inspect

    report = inspect(path, progress=not as_json)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
        return
    s = report.summary
    if s["patients"] > 1:
        table = Table(title=f"{report.root}", show_header=False)
        table.add_row("patients", str(s["patients"]))
        table.add_row("recordings", str(s["recordings"]))
        table.add_row("sites", ", ".join(f"{k} {v}" for k, v in s["sites"].items()))
        table.add_row("murmur", ", ".join(f"{k} {v}" for k, v in s["murmur"].items()))
        table.add_row("sample rates (Hz)", ", ".join(f"{k}: {v}" for k, v in s["sample_rates"].items()))
        d = s["duration_s"]
        table.add_row("duration (s)", f"min {d['min']}, median {d['median']}, max {d['max']}")
        table.add_row("total audio", f"{s['total_hours']} h")
        table.add_row("quality flags", ", ".join(f"{k} {v}" for k, v in s["flags"].items()) or "none")
        out.print(table)
        return
    for p in report.patients:
        table = Table(title=f"patient {p.patient_id}" + (f" · murmur {p.murmur}" if p.murmur else ""))
        for col in ("recording", "site", "duration (s)", "rate (Hz)", "channels", "format", "flags"):
            table.add_column(col)
        for r in p.recordings:
            table.add_row(r.name, r.site or "?", f"{r.duration:.2f}", str(r.rate), str(r.channels),
                          f"{r.format}/{r.subtype}", ", ".join(r.flags) or "ok")
        out.print(table)


@app.command()
def synth(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write (created; existing files are kept).")],
    patients: Annotated[int, typer.Option(help="Number of patients.")] = 4,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    suffix: Annotated[str, typer.Option(help="Audio format: .wav or .flac.")] = ".wav",
    duration: Annotated[float, typer.Option(help="Seconds per recording.")] = 20.0,
    labels: Annotated[bool, typer.Option(help="Write labels and .tsv (off: Challenge inference layout).")] = True,
) -> None:
    """Write a synthetic CirCor-layout folder (for trying the tools; never for evaluation)."""
    from assistant.synth import write_circor_folder

    if suffix not in (".wav", ".flac"):
        raise MurmurScopeError(f"--suffix must be .wav or .flac, not {suffix!r}")
    if out_dir.exists() and any(out_dir.glob("*.txt")):
        raise MurmurScopeError(f"{out_dir}: already holds patient headers; choose an empty folder")
    written = write_circor_folder(out_dir, n_patients=patients, seed=seed, suffix=suffix, duration=duration,
                                  with_labels=labels)
    out.print(f"wrote {len(written)} synthetic patients to {out_dir}")


@app.command()
def predict(
    path: Annotated[Path, typer.Argument(help="CirCor-layout folder (.wav or .flac), a patient's folder or a file.")],
    out_csv: Annotated[Path, typer.Option("--out", help="CSV to write, one row per patient.")],
    model: Annotated[Path | None, typer.Option(help="Folder with murmur.json + murmur.safetensors (default: shipped).")]
    = None,
    decision: Annotated[str | None, typer.Option(help="head (default) or niizumi (any recording Present -> Present).")]
    = None,
    force: Annotated[bool, typer.Option(help="Overwrite --out if it exists.")] = False,
    threads: Annotated[int, typer.Option(help="torch CPU threads (1 is fastest on a busy machine).")] = 1,
) -> None:
    """Murmur (Present/Unknown/Absent), probabilities and the 11 murmur features per patient. Never reads labels."""
    import csv
    from dataclasses import replace

    import torch
    from tqdm.auto import tqdm

    from assistant.audio import load_recording
    from assistant.circor import read_folder
    from assistant.labels import PREDICTION_COLUMNS
    from assistant.murmur import DECISIONS, MurmurModel

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
            err.print(f"[yellow]warning:[/yellow] {w}", highlight=False, soft_wrap=True)
        rows.append(p.csv_row())
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    with out_csv.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(PREDICTION_COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    counts = {c: sum(r["murmur"] == c for r in rows) for c in ("Present", "Unknown", "Absent")}
    err.print(f"wrote {len(rows)} patients to {out_csv} ({', '.join(f'{k} {v}' for k, v in counts.items())})")
