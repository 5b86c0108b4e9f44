"""`murmurscope analyze` and `murmurscope chat`: one-shot findings, or a terminal consultation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from assistant.errors import MurmurScopeError

out = Console()
err = Console(stderr=True)


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

    from assistant.data.inputs import load_inputs

    # Inputs first: a bad file is reported before any model loads.
    patients = load_inputs(paths)
    from assistant.consult.analyzer import AnalysisConfig, Analyzer
    from assistant.consult.report import report_markdown

    analyzer = Analyzer.load(AnalysisConfig(murmur_model=murmur_model, index_dir=index_dir, guidance_k=guidance_k))
    results = []
    for p in patients:
        findings = analyzer.analyze(p.recordings, ids=p.ids, patient_id=p.patient_id)
        results.append(findings)
        if plot:
            from assistant.viz.analysis import save_findings_figure

            plot_dir.mkdir(parents=True, exist_ok=True)
            png = save_findings_figure(plot_dir / f"murmurscope_{p.patient_id}.png", p.recordings, findings)
            err.print(f"plot: {escape(str(png))}")
        if not as_json:
            out.print(Markdown(f"# Patient {p.patient_id}\n\n" + report_markdown(findings)))
    if as_json:
        print(json.dumps([f.model_dump() for f in results], indent=2))


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

    from assistant.consult.agent import ChatModelConfig
    from assistant.consult.consultation import Consultation
    from assistant.data.inputs import load_inputs
    from assistant.llm.client import AudioLLMConfig

    patients = load_inputs(paths)
    if len(patients) > 1:
        raise MurmurScopeError(f"chat is about one patient; the inputs hold {len(patients)}")
    cfg = ChatModelConfig.from_env(base_url=base_url, model=model, api_key=api_key)
    consultation = Consultation.load(cfg, AudioLLMConfig.from_env(audio_llm_url, audio_llm_model))
    conversation = consultation.new_conversation()
    for rec in patients[0].recordings:
        rid = consultation.attach(conversation, rec)
        out.print(f"attached {rid}: {escape(rec.source)} (site {rec.site or '?'})")
    while True:
        try:
            text = input("you> ").strip()
        except EOFError:
            break
        if text in ("exit", "quit"):
            break
        if text:
            out.print(Markdown(consultation.ask(conversation, text).text))
