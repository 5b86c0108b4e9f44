"""`murmurscope eval ...`: batch evaluation and benchmarks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Evaluate predictors and benchmark components.", no_args_is_help=True)


@app.command()
def retrieval(
    questions: Annotated[Path | None, typer.Option(help="Question file (JSONL) [default: eval/data/...].")] = None,
    index: Annotated[Path | None, typer.Option(help="Index folder [default: the shipped index].")] = None,
    k: Annotated[int, typer.Option("-k", "--k", help="Passages retrieved per question.")] = 5,
    repeats: Annotated[int, typer.Option(help="Timed passes over the questions.")] = 3,
    threads: Annotated[int | None, typer.Option(help="torch threads while timing [default: torch's].")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write a latency histogram PNG here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Recall@k, MRR@k and query latency (p50, p99; embedding included) of the guidance retriever."""
    from rich.console import Console
    from rich.table import Table

    from eval.retrieval_bench import RetrievalBenchConfig, plot_latency, run

    config = RetrievalBenchConfig(index_dir=index, k=k, repeats=max(1, repeats), threads=threads,
                                  **({"questions": questions} if questions else {}))
    result = run(config, progress=not as_json)
    if plot:
        plot_latency(result, plot)
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    table = Table(title="guidance retrieval", show_header=False)
    table.add_row("questions", str(result.n_questions))
    table.add_row(f"recall@{k}", f"{result.recall_at_k:.3f}")
    table.add_row(f"MRR@{k}", f"{result.mrr_at_k:.3f}")
    table.add_row("latency p50 (ms)", f"{result.latency_p50_ms:.1f}")
    table.add_row("latency p99 (ms)", f"{result.latency_p99_ms:.1f}")
    table.add_row("timed queries", str(result.n_timed))
    Console().print(table)
    for miss in result.misses:
        Console().print(f"[yellow]miss[/yellow] {miss['question']} -> {', '.join(miss['got'])}", highlight=False)
