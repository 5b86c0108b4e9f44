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


@app.command()
def analyze(
    paths: Annotated[list[Path], typer.Argument(help="Audio files (one per site) or folders of recordings.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
    plot: Annotated[bool, typer.Option("--plot", help="Write a PNG per patient.")] = False,
    plot_dir: Annotated[Path, typer.Option(help="Folder for the PNGs.")] = Path("."),
    murmur_model: Annotated[Path | None, typer.Option(help="Murmur model weights (default: shipped).")] = None,
    index_dir: Annotated[Path | None, typer.Option(help="Guidance index (default: shipped).")] = None,
    guidance_k: Annotated[int, typer.Option(help="Guidance passages per patient.")] = 3,
) -> None:
    """Segmentation, murmur call, features and the matching guidance for each patient, offline."""
    from rich.markdown import Markdown

    from assistant.inputs import load_inputs

    # Inputs first: a bad file is reported before any model loads.
    patients = load_inputs(paths)
    from assistant.findings import AnalysisConfig, Analyzer
    from assistant.report import report_markdown

    analyzer = Analyzer.load(AnalysisConfig(murmur_model=murmur_model, index_dir=index_dir, guidance_k=guidance_k))
    results = []
    for p in patients:
        findings = analyzer.analyze(p.recordings, ids=p.ids, patient_id=p.patient_id)
        results.append(findings)
        if plot:
            from assistant.plots import save_findings_figure

            plot_dir.mkdir(parents=True, exist_ok=True)
            png = save_findings_figure(plot_dir / f"murmurscope_{p.patient_id}.png", p.recordings, findings)
            err.print(f"plot: {png}")
        if not as_json:
            out.print(Markdown(f"# Patient {p.patient_id}\n\n" + report_markdown(findings)))
    if as_json:
        print(json.dumps([f.model_dump() for f in results], indent=2))


@app.command()
def chat(
    paths: Annotated[list[Path], typer.Argument(help="The recordings to talk about (files or a folder).")],
    base_url: Annotated[str | None, typer.Option(help="Chat endpoint (env MURMURSCOPE_CHAT_BASE_URL).")] = None,
    model: Annotated[str | None, typer.Option(help="Chat model name (env MURMURSCOPE_CHAT_MODEL).")] = None,
    api_key: Annotated[str | None, typer.Option(help="Chat model key (env MURMURSCOPE_CHAT_API_KEY).")] = None,
    audio_llm_url: Annotated[str | None, typer.Option(help="Served audio-LLM (enables ask_audio_llm).")] = None,
    audio_llm_model: Annotated[str, typer.Option(help="Audio-LLM model name.")] = "murmurscope-audio",
) -> None:
    """A terminal consultation about the given recordings (type 'exit' or Ctrl-D to leave)."""
    from rich.markdown import Markdown

    from assistant.agent import ChatModelConfig
    from assistant.audio_llm import AudioLLMConfig
    from assistant.consultation import Consultation
    from assistant.findings import Analyzer
    from assistant.inputs import load_inputs

    patients = load_inputs(paths)
    if len(patients) > 1:
        raise MurmurScopeError(f"chat is about one patient; the inputs hold {len(patients)}")
    cfg = ChatModelConfig.from_env(base_url=base_url, model=model, api_key=api_key)
    audio_llm = AudioLLMConfig(base_url=audio_llm_url, model=audio_llm_model) if audio_llm_url else None
    consultation = Consultation(Analyzer.load(), cfg.chat_model(), audio_llm, chat_url=cfg.base_url)
    conversation = consultation.new_conversation()
    for rec in patients[0].recordings:
        rid = consultation.attach(conversation, rec)
        out.print(f"attached {rid}: {rec.source} (site {rec.site or '?'})")
    while True:
        try:
            text = input("you> ").strip()
        except EOFError:
            break
        if text in ("exit", "quit"):
            break
        if text:
            out.print(Markdown(consultation.ask(conversation, text).text))


@serve_app.command("api")
def serve_api(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8080,
    api_key: Annotated[str | None, typer.Option(envvar="MURMURSCOPE_API_KEY", help="Require this bearer key.")] = None,
    max_upload_mb: Annotated[float, typer.Option(help="Largest request body.")] = 25.0,
    allow_remote_audio: Annotated[bool, typer.Option(help="Fetch http(s) audio URLs.")] = False,
    allowed_local_audio_dir: Annotated[Path | None, typer.Option(help="Allow file:// audio under this folder.")] = None,
    upload_dir: Annotated[Path | None, typer.Option(help="Where uploads are decoded (then deleted).")] = None,
    model_name: Annotated[str, typer.Option(help="The model id clients ask for.")] = "murmurscope",
    chat_base_url: Annotated[str | None, typer.Option(help="Chat endpoint (env MURMURSCOPE_CHAT_BASE_URL).")] = None,
    chat_model: Annotated[str | None, typer.Option(help="Chat model name (env MURMURSCOPE_CHAT_MODEL).")] = None,
    chat_api_key: Annotated[str | None, typer.Option(help="Chat model key (env MURMURSCOPE_CHAT_API_KEY).")] = None,
    audio_llm_url: Annotated[str | None, typer.Option(help="Served audio-LLM (enables ask_audio_llm).")] = None,
    audio_llm_model: Annotated[str, typer.Option(help="Audio-LLM model name.")] = "murmurscope-audio",
) -> None:
    """The OpenAI-compatible consultation API (FastAPI + uvicorn)."""
    import uvicorn

    from assistant.agent import ChatModelConfig
    from assistant.api import APIConfig, create_app
    from assistant.audio_llm import AudioLLMConfig
    from assistant.consultation import Consultation
    from assistant.findings import Analyzer

    config = APIConfig(host=host, port=port, api_key=api_key, max_upload_mb=max_upload_mb,
                       allow_remote_audio=allow_remote_audio, allowed_local_audio_dir=allowed_local_audio_dir,
                       upload_dir=upload_dir, model_name=model_name)
    chat_cfg = ChatModelConfig.from_env(base_url=chat_base_url, model=chat_model, api_key=chat_api_key)
    audio_llm = AudioLLMConfig(base_url=audio_llm_url, model=audio_llm_model) if audio_llm_url else None
    consultation = Consultation(Analyzer.load(), chat_cfg.chat_model(), audio_llm, chat_url=chat_cfg.base_url)
    err.print(f"MurmurScope API on http://{host}:{port}/v1 (chat model: {chat_cfg.base_url or 'none, findings only'})")
    # No access log: it would record client addresses.
    uvicorn.run(create_app(consultation, config), host=host, port=port, access_log=False, log_level="info")


@serve_app.command("llm")
def serve_llm(
    model: Annotated[Path, typer.Option(help="Merged model folder (`murmurscope finetune merge`).")],
    port: Annotated[int, typer.Option(help="TCP port.")] = 8001,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    served_model_name: Annotated[str | None, typer.Option(help="Model name clients ask for (default: folder).")] = None,
    dtype: Annotated[str, typer.Option(help="vLLM --dtype (auto, bfloat16, float32).")] = "auto",
    max_model_len: Annotated[int, typer.Option(help="vLLM --max-model-len.")] = 2048,
    tensor_parallel_size: Annotated[int, typer.Option(help="GPUs to shard the model over.")] = 1,
    enforce_eager: Annotated[bool, typer.Option(help="Skip graph capture and compilation (starts faster).")] = True,
    vllm_python: Annotated[str | None, typer.Option(help="Interpreter with vLLM (default: .venv-vllm).")] = None,
) -> None:
    """vLLM's OpenAI-compatible server on the audio-LLM; returns when stopped (Ctrl-C)."""
    import signal

    from assistant.llm_service import LLMServerConfig, default_vllm_python, start_llm_server

    # vLLM runs in its own session: a SIGTERM to this command must still stop it (the `with` below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    cfg = LLMServerConfig(model=model, host=host, port=port, served_model_name=served_model_name, dtype=dtype,
                          max_model_len=max_model_len, tensor_parallel_size=tensor_parallel_size,
                          enforce_eager=enforce_eager, vllm_python=vllm_python or default_vllm_python())
    with start_llm_server(cfg) as server:
        out.print(f"audio-LLM ready after {server.ready_after:.0f} s: {cfg.base_url} (model {cfg.name!r})")
        server.process.wait()


@app.command()
def predict(
    path: Annotated[Path, typer.Argument(help="CirCor-layout folder (.wav or .flac), a patient's folder or a file.")],
    out_csv: Annotated[Path, typer.Option("--out", help="CSV to write, one row per patient.")],
    model: Annotated[Path | None, typer.Option(help="Folder with murmur.json + murmur.safetensors (default: shipped).")]
    = None,
    decision: Annotated[str | None, typer.Option(help="head (default) or niizumi (any recording Present -> Present).")]
    = None,
    force: Annotated[bool, typer.Option(help="Overwrite --out if it exists.")] = False,
    threads: Annotated[int, typer.Option(help="torch CPU threads (1 is fastest on a busy machine).")] = 1,
) -> None:
    """Murmur (Present/Unknown/Absent), probabilities and the 11 murmur features per patient. Never reads labels."""
    import csv
    from dataclasses import replace

    import torch
    from tqdm.auto import tqdm

    from assistant.audio import load_recording
    from assistant.circor import read_folder
    from assistant.labels import PREDICTION_COLUMNS
    from assistant.murmur import DECISIONS, MurmurModel

    if out_csv.exists() and not force:
        raise MurmurScopeError(f"{out_csv}: exists; pass --force to overwrite it")
    if decision is not None and decision not in DECISIONS:
        raise MurmurScopeError(f"--decision must be one of {', '.join(DECISIONS)}, not {decision!r}")
    if not path.exists():
        raise MurmurScopeError(f"{path}: no such file or folder")
    torch.set_num_threads(threads)
    murmur_model = MurmurModel.load(model)
    if decision is not None:
        murmur_model.config = replace(murmur_model.config, decision=decision)
    if path.is_file():
        rec = load_recording(path)
        predictions = [murmur_model.predict_recordings([rec], patient_id=rec.patient_id or path.stem)]
    else:
        patients = read_folder(path)
        predictions = []
        for patient in tqdm(patients, desc="patients", disable=len(patients) < 2):
            predictions.append(murmur_model.predict_patient(patient))
    rows = []
    for p in predictions:
        for w in p.warnings:
            err.print(f"[yellow]warning:[/yellow] {w}", highlight=False, soft_wrap=True)
        rows.append(p.csv_row())
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    with out_csv.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(PREDICTION_COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    counts = {c: sum(r["murmur"] == c for r in rows) for c in ("Present", "Unknown", "Absent")}
    err.print(f"wrote {len(rows)} patients to {out_csv} ({', '.join(f'{k} {v}' for k, v in counts.items())})")
