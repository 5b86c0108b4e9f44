"""`murmurscope finetune ...`: every training command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(help="Train the segmenter, the murmur models and the audio-LLM.", no_args_is_help=True)
out = Console()


@app.command("qa")
def qa(
    circor_root: Annotated[Path, typer.Option(help="CirCor root (training layout: labels and .tsv).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write (must not hold a Q&A set).")],
    max_clip_seconds: Annotated[float, typer.Option(help="Longest clip (whole cycles), at most 30 s.")] = 30.0,
    clips_per_recording: Annotated[int, typer.Option(help="Clips cut from each recording (longest first).")] = 1,
    max_patients: Annotated[int | None, typer.Option(help="Use only this many patients (smoke runs).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for question phrasings and negative questions.")] = 0,
) -> None:
    """Murmur-feature Q&A for the audio-LLM: cycle-aligned 16 kHz clips and JSONL, split by patient."""
    from finetune.qa import QAConfig, build_qa

    s = build_qa(QAConfig(circor_root, out_dir, max_clip_seconds, clips_per_recording, max_patients, seed))
    out.print(f"wrote {s.rows['train']} train and {s.rows['val']} val rows ({s.clips} clips, patients "
              f"{s.patients['train']}/{s.patients['val']}, cycles from {s.cycle_sources}, "
              f"{s.skipped_recordings} recordings without cycles) to {s.out}")
