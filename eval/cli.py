"""`murmurscope eval ...`: batch evaluation and benchmarks."""

from pathlib import Path

import typer

app = typer.Typer(help="Evaluate predictors and benchmark components.", no_args_is_help=True)


@app.command("llm-bench")
def llm_bench(
    work: Path = typer.Option(..., help="New folder for the tiny model, data, server log and llm_bench.json."),
    sft_steps: int = typer.Option(10, help="SFT steps to time."),
    batch_size: int = typer.Option(2, help="SFT rows per step."),
    requests: int = typer.Option(16, help="Audio questions sent to vLLM."),
    concurrency: int = typer.Option(4, help="Requests in flight at once."),
    machine: str = typer.Option("", help="Where it ran, written beside the numbers."),
) -> None:
    """SFT steps/s and peak memory, vLLM time-to-ready and requests/s on the tiny model; 7B GPU settings."""
    import json
    from dataclasses import asdict

    from eval.llm_bench import GPU_RECOMMENDATION, run_llm_bench

    r = run_llm_bench(work, sft_steps, batch_size, requests, concurrency, machine)
    print(json.dumps({"measured": asdict(r), "gpu_recommendation": GPU_RECOMMENDATION}, indent=2))
