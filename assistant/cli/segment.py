"""What `murmurscope segment` does for one file or a folder: segment, write .tsv and PNG, report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from assistant.data.audio import load_recording
from assistant.data.circor import read_folder
from assistant.data.segmentation import write_tsv
from assistant.errors import AudioError, MurmurScopeError


class OutputExistsError(MurmurScopeError):
    """An output file that is already there (and --force was not given)."""


def _segmenter(emission: str | None):
    import torch

    from assistant.segment.segmenter import default_segmenter

    # The network is tiny: extra intra-op threads only add synchronisation (3x slower measured on 2 busy cores).
    torch.set_num_threads(1)
    seg = default_segmenter()
    return seg.with_config(emission=emission) if emission else seg


def _check_writable(paths: list[Path], inputs: set[Path], force: bool) -> None:
    for p in paths:
        if p.resolve() in inputs:
            raise OutputExistsError(f"{p}: is an input recording; choose another --out")
        if p.exists() and not force:
            raise OutputExistsError(f"{p}: already exists (use --force to overwrite)")


def describe(result) -> str:
    if not result.reliable:
        return f"{result.message} (quality {result.quality:.2f})"
    return (f"heart rate {result.heart_rate:.0f} bpm (confidence {result.heart_rate_confidence:.2f}), "
            f"quality {result.quality:.2f}, {result.message}")


def segment_file(path: Path, out: Path | None, *, plot: bool, force: bool, emission: str | None,
                 console: Console) -> None:
    from assistant.viz.segmentation import plot_segmentation

    png = (out.with_suffix(".png") if out else Path(f"{path.stem}.segmentation.png")) if plot else None
    if out is not None and out.suffix.lower() != ".tsv":
        raise MurmurScopeError(f"{out}: for a single recording --out must name a .tsv file")
    _check_writable([p for p in (out, png) if p], {path.resolve()}, force)
    rec = load_recording(path)
    result = _segmenter(emission).segment(rec)
    console.print(f"{escape(path.name)}: {describe(result)}", highlight=False)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_tsv(out, result.segmentation)
        console.print(f"wrote {escape(str(out))}", highlight=False)
    if png:
        plot_segmentation(rec, result, png)
        console.print(f"wrote {escape(str(png))}", highlight=False)


def segment_folder(folder: Path, out: Path | None, *, plot: bool, force: bool, emission: str | None,
                   console: Console) -> None:
    from tqdm import tqdm

    from assistant.viz.segmentation import plot_segmentation

    if plot and out is None:
        raise MurmurScopeError("--plot on a folder needs --out DIR for the NAME.png files")
    refs = [r for p in read_folder(folder) for r in p.recordings]
    if out is not None and out.exists() and not out.is_dir():
        raise MurmurScopeError(f"{out}: for a folder --out must be a folder")
    targets = {}
    if out is not None:
        for r in refs:
            targets[r.name] = (out / f"{r.name}.tsv", out / f"{r.name}.png" if plot else None)
        _check_writable([p for pair in targets.values() for p in pair if p], {r.audio_path.resolve() for r in refs},
                        force)
        out.mkdir(parents=True, exist_ok=True)
    seg = _segmenter(emission)
    failed, unreliable = [], 0
    lines = []
    for ref in tqdm(refs, desc="segmenting", unit="rec"):
        try:
            rec = ref.load()
        except AudioError as e:
            failed.append(str(e))
            continue
        result = seg.segment(rec)
        unreliable += not result.reliable
        lines.append(f"{ref.name}: {describe(result)}")
        if out is not None:
            tsv, png = targets[ref.name]
            write_tsv(tsv, result.segmentation)
            if png:
                plot_segmentation(rec, result, png)
    for line in lines:
        console.print(line, highlight=False)
    for msg in failed:
        console.print(f"[yellow]skipped:[/yellow] {escape(msg)}", highlight=False)
    where = f", wrote .tsv files to {out}" if out is not None else ""
    console.print(f"{len(lines)} recordings segmented ({unreliable} without reliable cycles), "
                  f"{len(failed)} skipped{where}", highlight=False)


def segment(
    path: Annotated[Path, typer.Argument(help="An audio file, or a folder of recordings.")],
    out: Annotated[Optional[Path], typer.Option(help="File: the .tsv to write. Folder: a folder for NAME.tsv.")] = None,
    plot: Annotated[bool, typer.Option("--plot", help="Also write a PNG, states shaded.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing outputs.")] = False,
    emission: Annotated[Optional[str], typer.Option(help="neural or logistic (default: shipped).")] = None,
) -> None:
    """Heart cycles (S1, systole, S2, diastole), heart rate and quality of a recording or a folder."""
    if emission not in (None, "neural", "logistic"):
        raise MurmurScopeError(f"--emission must be neural or logistic, not {emission!r}")
    if path.is_dir():
        segment_folder(path, out, plot=plot, force=force, emission=emission, console=Console(soft_wrap=True))
    else:
        segment_file(path, out, plot=plot, force=force, emission=emission, console=Console(soft_wrap=True))
