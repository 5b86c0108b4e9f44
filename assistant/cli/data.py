"""`murmurscope info` and `murmurscope synth`: look at a dataset, or write a synthetic one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from assistant.errors import MurmurScopeError

out = Console()


def info(
    path: Annotated[Path, typer.Argument(help="An audio file, a patient folder or a CirCor root.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Patients, sites, durations, sample rates and quality flags."""
    from assistant.data.inspection import inspect_dataset

    report = inspect_dataset(path, progress=not as_json)
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


def synth(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write (created; existing files are kept).")],
    patients: Annotated[int, typer.Option(help="Number of patients.")] = 4,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    suffix: Annotated[str, typer.Option(help="Audio format: .wav or .flac.")] = ".wav",
    duration: Annotated[float, typer.Option(help="Seconds per recording.")] = 20.0,
    labels: Annotated[bool, typer.Option(help="Write labels and .tsv (off: Challenge inference layout).")] = True,
) -> None:
    """Write a synthetic CirCor-layout folder (for trying the tools; never for evaluation)."""
    from assistant.data.synth import write_circor_folder

    if suffix not in (".wav", ".flac"):
        raise MurmurScopeError(f"--suffix must be .wav or .flac, not {suffix!r}")
    if out_dir.exists() and any(out_dir.glob("*.txt")):
        raise MurmurScopeError(f"{out_dir}: already holds patient headers; choose an empty folder")
    written = write_circor_folder(out_dir, n_patients=patients, seed=seed, suffix=suffix, duration=duration,
                                  with_labels=labels)
    out.print(f"wrote {len(written)} synthetic patients to {escape(str(out_dir))}")
