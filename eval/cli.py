"""`murmurscope eval ...`: batch evaluation and benchmarks."""

from pathlib import Path

import typer

app = typer.Typer(help="Evaluate predictors and benchmark components.", no_args_is_help=True)


@app.command("consult-bench")
def consult_bench(
    runs: int = typer.Option(7, help="Timed analyze runs after warm-up."),
    warmup: int = typer.Option(2, help="Untimed warm-up runs."),
    concurrency: int = typer.Option(20, help="Concurrent /v1/analyze requests."),
    duration: float = typer.Option(20.0, help="Seconds per recording (four recordings per patient)."),
    threads: int = typer.Option(2, help="torch threads (the 2-core target)."),
    out_dir: Path = typer.Option(Path("build/consult_bench"), help="Where the JSON and PNG go."),
) -> None:
    """Warm analyze latency per patient and API latency under concurrent /v1/analyze requests."""
    from rich.console import Console
    from rich.table import Table

    from eval.consult_bench import ConsultBenchConfig, run

    result = run(ConsultBenchConfig(runs=runs, warmup=warmup, concurrency=concurrency, duration=duration,
                                    threads=threads, out_dir=out_dir))
    table = Table(title=f"consultation benchmark ({threads} torch threads)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("analyze, 4 x 20 s, warm: median", f"{result.analyze_median_s:.3f} s (target <= 2 s)")
    table.add_row("analyze: p90", f"{result.analyze_p90_s:.3f} s")
    table.add_row(f"API {result.api_requests} concurrent /v1/analyze: p50", f"{result.api_p50_s:.3f} s")
    table.add_row("API: p99", f"{result.api_p99_s:.3f} s")
    table.add_row("API: errors", str(result.api_errors))
    table.add_row("API: wall time", f"{result.api_wall_s:.3f} s")
    Console().print(table)
    Console().print(f"wrote {out_dir / 'consult_bench.json'} and {out_dir / 'consult_bench.png'}")
