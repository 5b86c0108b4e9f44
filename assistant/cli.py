"""The `murmurscope` command line: one typer app whose sub-apps follow the packages."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

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
def segment(
    path: Annotated[Path, typer.Argument(help="An audio file, or a folder of recordings.")],
    out: Annotated[Optional[Path], typer.Option(help="File: the .tsv to write. Folder: a folder for NAME.tsv.")] = None,
    plot: Annotated[bool, typer.Option("--plot", help="Also write a PNG, states shaded.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing outputs.")] = False,
    emission: Annotated[Optional[str], typer.Option(help="neural or logistic (default: shipped).")] = None,
) -> None:
    """Heart cycles (S1, systole, S2, diastole), heart rate and quality of a recording or a folder."""
    from assistant.segment_cli import segment_file, segment_folder

    if emission not in (None, "neural", "logistic"):
        raise MurmurScopeError(f"--emission must be neural or logistic, not {emission!r}")
    if path.is_dir():
        segment_folder(path, out, plot=plot, force=force, emission=emission, console=Console(soft_wrap=True))
    else:
        segment_file(path, out, plot=plot, force=force, emission=emission, console=Console(soft_wrap=True))
