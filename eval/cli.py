"""`murmurscope eval ...`: batch evaluation and benchmarks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

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


@app.command("run")
def run_command(
    circor_root: Annotated[Path, typer.Option("--circor-root", "--data-root",
                                              help="A labelled CirCor-layout folder, or a PhysioNet 2016 folder "
                                                   "(REFERENCE.csv).")],
    predictor: Annotated[str, typer.Option(help="classifier, audio-llm, majority or csv:PATH.")],
    out: Annotated[Path, typer.Option(help="Run folder (created; an existing one is only resumed, never "
                                           "overwritten).")],
    split: Annotated[str | None, typer.Option(help="val (CirCor default: the project split), train or all.")] = None,
    endpoint: Annotated[str | None, typer.Option(help="audio-llm: OpenAI-compatible base URL, e.g. "
                                                      "http://127.0.0.1:8000/v1.")] = None,
    model: Annotated[str | None, typer.Option(help="audio-llm: served model name (default: the first served).")] = None,
    workers: Annotated[int, typer.Option(help="Patients predicted in parallel.")] = 2,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the 95% intervals.")] = 1000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 2022,
    unknown_as: Annotated[str, typer.Option(help="PhysioNet 2016: how an Unknown murmur output is scored "
                                                 "(abnormal or normal).")] = "abnormal",
    batch_out: Annotated[Path | None, typer.Option(help="audio-llm: write a `vllm run-batch` input JSONL and "
                                                        "stop.")] = None,
    batch_in: Annotated[Path | None, typer.Option(help="audio-llm: score a `vllm run-batch` output JSONL instead "
                                                       "of calling the endpoint.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Predict every patient (cached, resumable, parallel), score and write the report to --out."""
    from rich.console import Console

    from eval.runner import RunConfig, run

    console = Console()
    config = RunConfig(circor_root, predictor, out, split, endpoint, model, workers, bootstrap, seed, unknown_as,
                       progress)
    if batch_out is not None or batch_in is not None:
        from eval.batch import run_batch

        message = run_batch(config, batch_out, batch_in)
        console.print(message)
        return
    result = run(config)
    console.print(f"{result.predicted} patients predicted, {result.resumed} from the cache; report in {out}/report.md")
    _print_headline(console, result.metrics)


def _print_headline(console, metrics: dict) -> None:
    from eval.report import _ci

    if "murmur" in metrics:
        m = metrics["murmur"]
        console.print(f"murmur: W.acc {_ci(m['weighted_accuracy'])}  UAR {_ci(m['uar'])}  "
                      f"macro-F1 {_ci(m['macro_f1'])}" + (f"  AUROC {_ci(m['auroc_macro'])}" if m["auroc"] else ""),
                      highlight=False)
    if "binary" in metrics:
        b = metrics["binary"]
        console.print(f"2016: UAR {_ci(b['uar'])}  sensitivity {_ci(b['sensitivity'])}  "
                      f"specificity {_ci(b['specificity'])}", highlight=False)


@app.command("compare")
def compare_command(
    run_a: Annotated[Path, typer.Argument(help="First run folder.")],
    run_b: Annotated[Path, typer.Argument(help="Second run folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Two runs' metrics side by side with the difference B - A."""
    import json

    from rich.console import Console
    from rich.table import Table

    from eval.compare import compare_runs
    from eval.report import _fmt

    c = compare_runs(run_a, run_b)
    if as_json:
        print(json.dumps(c.to_dict(), indent=2))
        return
    console = Console()
    if not c.same_patients:
        console.print("[yellow]note:[/yellow] the runs scored different patients; differences are not paired")
    table = Table(title=f"A = {c.a}   B = {c.b}")
    table.add_column("metric", no_wrap=True)
    for col in ("A", "B", "B - A", "paired 95% CI of B - A"):
        table.add_column(col)
    for metric, a, b, d in c.rows:
        ci = c.paired.get(metric)
        table.add_row(metric, _fmt(a), _fmt(b), "—" if d is None else f"{d:+.3f}",
                      f"[{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "—")
    console.print(table)


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
    from assistant.data.split import SplitConfig
    from assistant.errors import MurmurScopeError
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


@app.command("classifier")
def classifier(
    circor_root: Annotated[Path, typer.Option(help="Labelled CirCor folder; its validation split is scored.")],
    model: Annotated[Path | None, typer.Option(help="Model folder (default: the shipped weights).")] = None,
    out_dir: Annotated[Path, typer.Option(help="Where the JSON and the confusion PNG go.")]
    = Path("build/eval/classifier"),
    decision: Annotated[str | None, typer.Option(help="head or niizumi (default: the model's own).")] = None,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the 95% intervals.")] = 1000,
    threads: Annotated[int, typer.Option(help="torch CPU threads (the target is for 2).")] = 2,
) -> None:
    """Murmur weighted accuracy / UAR, per-feature scores and inference time on the validation split."""
    from rich.console import Console
    from rich.table import Table

    from eval.classifier_bench import ClassifierBenchConfig, run

    r = run(ClassifierBenchConfig(circor_root=circor_root, model=model, out_dir=out_dir, decision=decision,
                                  bootstrap=bootstrap, threads=threads))
    console = Console(width=150)

    def ci(pair):
        return f"[{pair[0]:.3f}, {pair[1]:.3f}]"

    t = Table(title=f"murmur on the validation split (n={r['n_val']}, decision {r['decision']})")
    for col in ("metric", "value", "95% CI", "target"):
        t.add_column(col)
    t.add_row("weighted accuracy", f"{r['weighted_accuracy']:.3f}", ci(r["weighted_accuracy_ci"]), ">= 0.80")
    t.add_row("UAR", f"{r['uar']:.3f}", ci(r["uar_ci"]), ">= 0.75")
    t.add_row("accuracy", f"{r['accuracy']:.3f}", "", "")
    for c, v in r["recall"].items():
        t.add_row(f"recall {c}", f"{v:.3f}", "", "")
    t.add_row("seconds / patient (4 x 20 s)", f"{r['seconds_per_patient']:.3f}", "", f"<= 1 ({r['threads']} threads)")
    console.print(t)
    f = Table(title="murmur features (truly Present validation patients)")
    for col in ("feature", "n train", "n val", "accuracy", "UAR", "UAR 95% CI", "majority UAR", "majority acc"):
        f.add_column(col)
    for name, s in r["features"].items():
        f.add_row(name, str(s["n_train"]), str(s["n_val"]), f"{s['accuracy']:.3f}", f"{s['uar']:.3f}",
                  ci(s["uar_ci"]), f"{s['majority_uar']:.3f}", f"{s['majority_accuracy']:.3f}")
    console.print(f)
    console.print(f"confusion matrix: {out_dir / 'confusion.png'}; numbers: {out_dir / 'classifier_bench.json'}")


@app.command("llm-bench")
def llm_bench(
    work: Annotated[Path, typer.Option(help="New folder for the tiny model, data, server log and llm_bench.json.")],
    sft_steps: Annotated[int, typer.Option(help="SFT steps to time.")] = 10,
    batch_size: Annotated[int, typer.Option(help="SFT rows per step.")] = 2,
    requests: Annotated[int, typer.Option(help="Audio questions sent to vLLM.")] = 16,
    concurrency: Annotated[int, typer.Option(help="Requests in flight at once.")] = 4,
    machine: Annotated[str, typer.Option(help="Where it ran, written beside the numbers.")] = "",
) -> None:
    """SFT steps/s and peak memory, vLLM time-to-ready and requests/s on the tiny model; 7B GPU settings."""
    from dataclasses import asdict

    from eval.llm_bench import GPU_RECOMMENDATION, run_llm_bench

    r = run_llm_bench(work, sft_steps, batch_size, requests, concurrency, machine)
    print(json.dumps({"measured": asdict(r), "gpu_recommendation": GPU_RECOMMENDATION}, indent=2))


def _register_cv() -> None:
    from eval.cv_cli import classifier_cv

    app.command("classifier-cv")(classifier_cv)


_register_cv()
