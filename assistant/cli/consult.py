"""`murmurscope analyze` and `murmurscope chat`: one-shot findings, or a terminal consultation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from assistant.cli.options import Section, from_config
from assistant.errors import MurmurScopeError

if TYPE_CHECKING:
    from assistant.consult.agent import ChatModelConfig
    from assistant.consult.analyzer import AnalysisConfig
    from assistant.llm.client import AudioLLMConfig

# The chat model's options keep their names (--base-url, --model, --api-key); `serve api` prefixes them.
CHAT_MODEL = Section("assistant.consult.agent:ChatModelConfig")
# No --audio-llm-url (nor MURMURSCOPE_AUDIO_LLM_URL): no audio-LLM.
AUDIO_LLM = Section("assistant.llm.client:AudioLLMConfig", prefix="audio-llm", optional=True)

out = Console()
err = Console(stderr=True)


@from_config(config="assistant.consult.analyzer:AnalysisConfig")
def analyze(
    paths: Annotated[list[Path], typer.Argument(help="Audio files (one per site) or folders of recordings.")],
    config: AnalysisConfig,
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
    plot: Annotated[bool, typer.Option("--plot", help="Write a PNG per patient.")] = False,
    plot_dir: Annotated[Path, typer.Option(help="Folder for the PNGs.")] = Path("."),
) -> None:
    """Segmentation, murmur call, features and the matching guidance for each patient, offline."""
    from rich.markdown import Markdown

    from assistant.data.inputs import load_inputs

    # Inputs first: a bad file is reported before any model loads.
    patients = load_inputs(paths)
    from assistant.consult.analyzer import Analyzer
    from assistant.consult.report import report_markdown

    analyzer = Analyzer.load(config)
    results = []
    for p in patients:
        findings = analyzer.analyze(p.recordings, ids=p.ids, patient_id=p.patient_id)
        results.append(findings)
        if plot:
            from assistant.viz.analysis import save_findings_figure

            plot_dir.mkdir(parents=True, exist_ok=True)
            png = save_findings_figure(plot_dir / f"murmurscope_{p.patient_id}.png", p.recordings, findings)
            err.print(f"plot: {png}")
        if not as_json:
            out.print(Markdown(f"# Patient {p.patient_id}\n\n" + report_markdown(findings)))
    if as_json:
        print(json.dumps([f.model_dump() for f in results], indent=2))


@from_config(chat_model=CHAT_MODEL, audio_llm=AUDIO_LLM)
def chat(
    paths: Annotated[list[Path], typer.Argument(help="The recordings to talk about (files or a folder).")],
    chat_model: ChatModelConfig,
    audio_llm: AudioLLMConfig | None,
) -> None:
    """A terminal consultation about the given recordings (type 'exit' or Ctrl-D to leave)."""
    from rich.markdown import Markdown

    from assistant.consult.consultation import Consultation
    from assistant.data.inputs import load_inputs

    patients = load_inputs(paths)
    if len(patients) > 1:
        raise MurmurScopeError(f"chat is about one patient; the inputs hold {len(patients)}")
    consultation = Consultation.load(chat_model, audio_llm)
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
