"""`murmurscope analyze` and `murmurscope chat`: one-shot findings, or a terminal consultation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

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


@from_config(config="assistant.consult.analyzer:AnalysisConfig", audio_llm=AUDIO_LLM)
def analyze(
    paths: Annotated[list[Path], typer.Argument(help="Audio files (one per site) or folders of recordings.")],
    config: AnalysisConfig,
    audio_llm: AudioLLMConfig | None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
    plot: Annotated[bool, typer.Option("--plot", help="Write a PNG per patient.")] = False,
    plot_dir: Annotated[Path, typer.Option(help="Folder for the PNGs.")] = Path("."),
    report: Annotated[Path | None, typer.Option(
        help="Write a PDF consultation report (several patients: one file each, the patient's id added to the "
             "name).")] = None,
    fhir: Annotated[Path | None, typer.Option(
        help="Write a FHIR R4 Bundle as JSON, the PDF inside (several patients: as --report).")] = None,
    patient_id: Annotated[str | None, typer.Option(
        help="The patient's id, written into the reports (one patient only). Without it they say 'anonymous' "
             "and name recordings rec1, rec2, ...")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing --report/--fhir files.")] = False,
) -> None:
    """Segmentation, murmur call, features and the matching guidance for each patient, offline; with
    --audio-llm-url, the served audio-LLM's answers beside them."""
    from rich.markdown import Markdown

    from assistant.data.inputs import load_inputs
    from assistant.report.document import check_patient_id

    # Inputs and output files first: a bad file or a refused target is reported before any model loads.
    patient_id = check_patient_id(patient_id)
    patients = load_inputs(paths)
    if patient_id is not None and len(patients) > 1:
        raise MurmurScopeError(f"--patient-id names one patient; the inputs hold {len(patients)}")
    targets = _report_targets(report, fhir, patients, paths, force)
    from assistant.consult.analyzer import Analyzer
    from assistant.consult.report import report_markdown
    from assistant.consult.second_opinion import with_audio_llm

    analyzer = Analyzer.load(config)
    results = []
    for k, p in enumerate(patients):
        findings = analyzer.analyze(p.recordings, ids=p.ids, patient_id=patient_id or p.patient_id)
        findings = with_audio_llm(findings, p.recordings, audio_llm)
        results.append(findings)
        if targets:
            _write_reports(analyzer, findings, p.recordings, patient_id, targets, k)
        if plot:
            from assistant.viz.analysis import save_findings_figure

            plot_dir.mkdir(parents=True, exist_ok=True)
            png = save_findings_figure(plot_dir / f"murmurscope_{p.patient_id}.png", p.recordings, findings)
            err.print(f"plot: {escape(str(png))}")
        if not as_json:
            out.print(Markdown(f"# Patient {p.patient_id}\n\n" + report_markdown(findings)))
    if as_json:
        print(json.dumps([f.model_dump() for f in results], indent=2))


def _report_targets(report: Path | None, fhir: Path | None, patients, inputs: list[Path],
                    force: bool) -> dict[str, list[Path]]:
    from assistant.report.outputs import check_targets, output_paths

    keys = [p.patient_id for p in patients]
    targets = {kind: output_paths(path, keys) for kind, path in (("pdf", report), ("fhir", fhir)) if path}
    sources = [Path(r.source) for p in patients for r in p.recordings if not r.source.startswith("<")]
    check_targets([t for paths in targets.values() for t in paths], [*inputs, *sources], force)
    return targets


def _write_reports(analyzer, findings, recordings, patient_id: str | None, targets: dict[str, list[Path]],
                   k: int) -> None:
    from assistant.report.outputs import make_reports, write_file

    made = make_reports(analyzer, findings, recordings, patient_id)
    for kind, paths in targets.items():
        write_file(paths[k], made.pdf if kind == "pdf" else made.fhir.encode())
        err.print(f"{'report' if kind == 'pdf' else 'fhir'}: {paths[k]}")


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
