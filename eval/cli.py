"""`murmurscope eval ...`: batch evaluation and benchmarks."""

from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(help="Evaluate predictors and benchmark components.", no_args_is_help=True)


@app.command("segmenter")
def segmenter(
    circor_root: Annotated[Path, typer.Option(help="CirCor root; the project split's validation patients are scored.")],
    out: Annotated[Path, typer.Option(help="Folder for segmenter_bench.json and segmenter_bench.png.")] = Path(
        "build/segmenter_bench"),
    weights: Annotated[Optional[Path], typer.Option(help="Folder with segmenter weights (default: shipped).")] = None,
    emission: Annotated[Optional[str], typer.Option(help="Override the emission model: neural or logistic.")] = None,
    tolerance_s: Annotated[float, typer.Option(help="Match tolerance for S1/S2 centres (s).")] = 0.06,
    speed_files: Annotated[int, typer.Option(help="Recordings timed for the speed figure.")] = 60,
    one_core: Annotated[bool, typer.Option(help="Pin the process to one CPU core.")] = True,
    max_recordings: Annotated[Optional[int], typer.Option(help="Score at most this many recordings.")] = None,
    val_fraction: Annotated[float, typer.Option(help="The project split's validation fraction.")] = 0.15,
    split_seed: Annotated[int, typer.Option(help="The project split's seed.")] = 2022,
) -> None:
    """S1/S2 F1 (±60 ms), heart-rate error and speed of the segmenter on the validation patients."""
    from assistant.errors import MurmurScopeError
    from assistant.split import SplitConfig
    from eval.segmenter_bench import SegmenterBenchConfig, run

    if emission not in (None, "neural", "logistic"):
        raise MurmurScopeError(f"--emission must be neural or logistic, not {emission!r}")
    s = run(SegmenterBenchConfig(circor_root, out, weights, emission, tolerance_s, speed_files, one_core,
                                 max_recordings, SplitConfig(val_fraction=val_fraction, seed=split_seed)))
    hr = s["hr_median_abs_error_bpm"]
    typer.echo(f"segmenter ({s['emission']}) on {s['recordings']} validation recordings of {s['patients']} patients")
    typer.echo(f"S1 F1 {s['s1_f1']:.4f}  S2 F1 {s['s2_f1']:.4f}  (±{tolerance_s * 1000:.0f} ms, one-to-one)")
    typer.echo(f"heart rate: median abs error {hr:.2f} bpm" if hr is not None else "heart rate: no estimates")
    typer.echo(f"unreliable (all states 0): {s['unreliable']} recordings")
    typer.echo(f"speed: {s['seconds_per_20s']:.4f} s per 20 s (median of {s['speed_files']} files, one core), "
               f"{s['times_real_time']:.0f}x real time")
    typer.echo(f"wrote {s['plot']}")
