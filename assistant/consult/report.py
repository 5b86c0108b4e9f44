"""Findings as Markdown: for the terminal, the app, and chat when no chat model is reachable.

Everything here is a rendering of computed values and retrieved passages; nothing is generated. What the
audio-LLM's opinion shows (its rows, its caveat, the line when there is none) is defined here once and
rendered by the Markdown, the PDF and the FHIR Bundle alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from assistant.consult.findings import AudioLLMFinding, Findings, GuidancePassage
from assistant.data.labels import MURMUR_CLASSES

AUDIO_LLM_CAVEAT = ("One answer per recording, voted per patient: a second opinion shown beside the classifier's "
                    "findings, never instead of them; it changes none of them.")
MURMUR_QUESTION = "murmur"


def _pct(p: float) -> str:
    return f"{100 * p:.0f}%"


def findings_markdown(f: Findings) -> str:
    probs = ", ".join(f"{c} {_pct(f.probabilities.get(c, 0.0))}" for c in MURMUR_CLASSES)
    if f.no_heart or f.unfamiliar:  # the model's probabilities are not a call on audio it cannot judge
        lines = [f"**Murmur: {f.murmur}**: {f.no_heart or f.unfamiliar} (the model alone: {f.ungated_murmur}, "
                 f"{probs})."]
    else:
        lines = [f"**Murmur: {f.murmur}** ({probs}); signal quality {f.signal_quality:.2f} (0 poor, 1 clean)."]
    lines.append("")
    lines.append("| recording | site | heart rate | quality | cycles | P(murmur present) | unfamiliarity |")
    lines.append("|---|---|---|---|---|---|---|")
    threshold = f.familiarity.threshold if f.familiarity else None
    for r in f.recordings:
        s = r.segmentation
        hr = f"{s.heart_rate:.0f} bpm" if s.heart_rate else "n/a"
        present = _pct(r.murmur_probabilities["Present"]) if "Present" in r.murmur_probabilities else "n/a"
        distance = "n/a" if r.familiarity is None else f"{r.familiarity:.1f}" + (
            " (beyond)" if threshold is not None and r.familiarity > threshold else "")
        lines.append(f"| {r.id} | {r.site or '?'} | {hr} | {s.quality:.2f}{'' if s.reliable else ' (unreliable)'} "
                     f"| {s.n_cycles} | {present} | {distance} |")
    if f.familiarity:
        lines += ["", f"Unfamiliarity: {f.familiarity.unfamiliar_recordings} of {f.familiarity.recordings} "
                      f"recordings beyond {f.familiarity.threshold:.1f} ({f.familiarity.method})."]
    if f.abnormal:
        lines += ["", f"**Normal/abnormal: {f.abnormal.label}** (P(abnormal) {_pct(f.abnormal.probability)}). "
                      f"{f.abnormal.caveat}"]
    described = [(name, ft) for name, ft in f.features.items() if ft.label]
    if f.murmur == "Present" and described:
        lines.append("")
        lines.append("Murmur features (most likely value, probability):")
        for name, ft in described:
            p = ft.probabilities.get(ft.label, 0.0)
            flag = " — low confidence" if ft.low_confidence else ""
            lines.append(f"- {name.replace('_', ' ')}: {ft.label} ({_pct(p)}){flag}")
    if f.audio_llm is not None:
        lines += ["", audio_llm_markdown(f)]
    if f.warnings:
        lines.append("")
        lines += [f"- warning: {w}" for w in f.warnings]
    return "\n".join(lines)


@dataclass(frozen=True)
class OpinionRow:
    """One question the audio-LLM answered: the classifier's answer beside its voted one."""

    key: str  # MURMUR_QUESTION or a feature name of assistant.data.labels.FEATURES
    classifier: str
    audio_llm: str | None  # the voted label; None without a valid answer

    @property
    def question(self) -> str:
        return self.key.replace("_", " ")

    @property
    def audio_llm_text(self) -> str:
        return self.audio_llm or ("no valid answer" if self.key == MURMUR_QUESTION else "-")


def audio_llm_rows(f: Findings) -> list[OpinionRow]:
    """The murmur call, then every feature the audio-LLM was asked; each model's feature only where it
    describes one (its own call is Present), as the classifier's findings do."""
    a = f.audio_llm
    rows = [OpinionRow(MURMUR_QUESTION, f.murmur, a.murmur)]
    for name, label in a.features.items():
        ft = f.features.get(name)
        ours = ft.label if ft is not None and ft.label and f.murmur == "Present" else "-"
        rows.append(OpinionRow(name, ours, label if a.murmur == "Present" else None))
    return rows


def audio_llm_heading(a: AudioLLMFinding) -> str:
    return f"Audio-LLM second opinion ({a.model})"


def audio_llm_unavailable(a: AudioLLMFinding) -> str:
    """The one line said when the audio-LLM was asked and gave no opinion."""
    return f"Audio-LLM ({a.model}): no second opinion ({a.error})."


def audio_llm_markdown(f: Findings) -> str:
    """The audio-LLM's answers in a table beside the classifier's."""
    a = f.audio_llm
    if a.error:
        return audio_llm_unavailable(a)
    lines = [f"{audio_llm_heading(a)}:", "", "| question | classifier | audio-LLM |", "|---|---|---|"]
    lines += [f"| {r.question} | {r.classifier} | {r.audio_llm_text} |" for r in audio_llm_rows(f)]
    lines += ["", f"_{AUDIO_LLM_CAVEAT}_"]
    return "\n".join(lines)


def guidance_markdown(passages: list[GuidancePassage]) -> str:
    if not passages:
        return ""
    # One paragraph per passage and per source: Markdown joins consecutive lines into one paragraph.
    blocks = ["**Guidance**"]
    for k, p in enumerate(passages, 1):
        text = p.text if len(p.text) <= 600 else p.text[:600].rsplit(" ", 1)[0] + " …"
        blocks.append(f"[{k}] {text}")
    blocks.append("**Sources**")
    blocks += [f"[{k}] {p.citation()}" + (f" <{p.url}>" if p.url else "") for k, p in enumerate(passages, 1)]
    return "\n\n".join(blocks)


def report_markdown(f: Findings, notice: str | None = None) -> str:
    parts = [f"> {notice}"] if notice else []
    parts.append(findings_markdown(f))
    g = guidance_markdown(f.guidance)
    if g:
        parts.append(g)
    parts.append(f"_{f.disclaimer}_")
    return "\n\n".join(parts)
