"""The reply without a chat model, focused on what was asked: first the direct answer from the findings
(with its probability and confidence), then the evidence it rests on, then two or three guidance passages
cut to the sentences nearest the question, with numbered sources, then the decision-support line.

Everything is a rendering of computed values and retrieved sentences; nothing is generated. The full
passages ride along for surfaces with room for them (the app's expander).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import median

import numpy as np

from assistant.consult.findings import DISCLAIMER, Findings, GuidancePassage
from assistant.consult.topics import Topic
from knowledge.documents import split_sentences
from knowledge.embedding import Embedder

# Reply length before the sources: about what a clinician reads at a glance (the complaint was 6,800).
MAX_CHARS = 1200

# The murmur features a topic asks about, systolic first (the model describes diastolic murmurs only
# when it has seen enough of them, which CirCor's two diastolic patients do not allow).
FEATURES_OF: dict[Topic, tuple[str, ...]] = {
    Topic.grade: ("systolic_grading", "diastolic_grading"),
    Topic.timing: ("systolic_timing", "diastolic_timing"),
    Topic.shape: ("systolic_shape", "diastolic_shape"),
    Topic.pitch: ("systolic_pitch", "diastolic_pitch"),
    Topic.quality: ("systolic_quality", "diastolic_quality"),
    Topic.location: ("most_audible_location",),
}
TITLES = {Topic.presence: "Murmur", Topic.grade: "Grade", Topic.timing: "Timing", Topic.shape: "Shape",
          Topic.pitch: "Pitch", Topic.quality: "Quality", Topic.location: "Loudest at",
          Topic.heart_rate: "Heart rate", Topic.recording_quality: "Recording quality",
          Topic.referral: "Referral", Topic.general: "Findings"}
SITE_NAMES = {"AV": "aortic area, right upper sternal border", "PV": "pulmonary area, left upper sternal border",
              "TV": "tricuspid area, left lower sternal border", "MV": "mitral area, apex"}


@dataclass(frozen=True)
class FocusConfig:
    passages: int = 3
    sentences_per_passage: int = 2
    max_passage_chars: int = 260
    max_chars: int = MAX_CHARS


@dataclass
class FocusedReply:
    topics: list[Topic]
    answers: list[str]
    evidence: str | None
    excerpts: list[tuple[GuidancePassage, str]]
    passages: list[GuidancePassage] = field(default_factory=list)

    def markdown(self, notice: str | None = None) -> str:
        parts = list(self.answers)
        if self.evidence:
            parts.append(self.evidence)
        if self.excerpts:
            parts.append("**Guidance**\n\n" + "\n\n".join(f"[{n}] {text}" for n, (_, text) in
                                                          enumerate(self.excerpts, 1)))
            parts.append("**Sources**\n\n" + "\n\n".join(f"[{n}] {short_citation(p)}" for n, (p, _) in
                                                         enumerate(self.excerpts, 1)))
        parts.append(f"_{DISCLAIMER.split(':')[0]}._")
        if notice:
            parts.append(f"> {notice}")
        return "\n\n".join(parts)


def short_citation(p: GuidancePassage) -> str:
    """Title, section and the first source (a passage may list several; the app shows them all)."""
    sources = [s.strip() for s in p.source.split(" | ") if s.strip()]
    more = f" (+{len(sources) - 1} more)" if len(sources) > 1 else ""
    return f"{p.title} — {p.section}. {sources[0] if sources else ''}{more}" + (f" <{p.url}>" if p.url else "")


def _pct(p: float) -> str:
    return f"{100 * p:.0f}%"


def confidence(p: float, low: bool = False) -> str:
    """In words, from the probability of the value given (and the model's own low-confidence flag)."""
    if low or p < 0.6:
        return "low confidence"
    return "high confidence" if p >= 0.8 else "moderate confidence"


def _call(f: Findings) -> str:
    p = f.probabilities.get(f.murmur, 0.0)
    return f"murmur {f.murmur} (P({f.murmur}) {_pct(p)})"


def _upper(text: str) -> str:
    return text[:1].upper() + text[1:]


def answer(topic: Topic, f: Findings) -> str:
    """The direct answer to one topic, from the findings only."""
    title = TITLES[topic]
    if topic is Topic.presence:
        probs = ", ".join(f"{c} {_pct(v)}" for c, v in f.probabilities.items())
        return f"**{title}: {f.murmur}** ({probs}; {confidence(f.probabilities.get(f.murmur, 0.0))})."
    if topic in FEATURES_OF:
        if f.murmur != "Present":
            return f"**{title}: not determinable**: {_call(f)}; features are described only for a Present murmur."
        described = []
        for name in FEATURES_OF[topic]:
            ft = f.features.get(name)
            if ft is None or ft.label is None:
                continue
            p = ft.probabilities.get(ft.label, 0.0)
            phase = name.split("_")[0] + ", " if name.startswith(("systolic", "diastolic")) else ""
            where = f", {SITE_NAMES[ft.label]}" if topic is Topic.location and ft.label in SITE_NAMES else ""
            described.append((ft.label, f"({phase}{_pct(p)}, {confidence(p, ft.low_confidence)}{where})"))
        if not described:
            return f"**{title}: not determined**: the model gives no confident value for this murmur ({_call(f)})."
        (label, detail), rest = described[0], described[1:]
        return (f"**{title}: {label}** {detail}" + "".join(f"; {v} {d}" for v, d in rest) + f"; {_call(f)}.")
    if topic is Topic.heart_rate:
        rates = [r.segmentation.heart_rate for r in f.recordings if r.segmentation.heart_rate]
        if not rates:
            return f"**{title}: not determinable**: no heart rhythm was found in any recording."
        conf = median(r.segmentation.heart_rate_confidence for r in f.recordings if r.segmentation.heart_rate)
        spread = f", range {min(rates):.0f}–{max(rates):.0f}" if len(rates) > 1 else ""
        return (f"**{title}: {median(rates):.0f} bpm** (median of {len(rates)} recording(s){spread}; "
                f"rhythm confidence {conf:.2f}).")
    if topic is Topic.recording_quality:
        bad = [r for r in f.recordings if not r.segmentation.reliable]
        verdict = "all reliable" if not bad else "unreliable: " + ", ".join(
            f"{r.id} ({r.segmentation.message})" for r in bad)
        return (f"**{title}: {f.signal_quality:.2f}** (0 poor, 1 clean; mean of {len(f.recordings)} recording(s), "
                f"{verdict}).")
    if topic is Topic.referral:
        return f"**{title}: the clinician's decision.** {red_flags(f)}"
    described = [f"{name.replace('_', ' ')} {ft.label}" for name, ft in f.features.items() if ft.label]
    summary = "; ".join(described) if f.murmur == "Present" else ""
    return f"**{title}: {_call(f)}**" + (f": {summary}." if summary else ".")


def red_flags(f: Findings) -> str:
    """Which of the red flags the guidance lists for a child's murmur these findings show (those the model
    can see: diastolic or holosystolic timing, grade III or more, harsh quality, loudest at the left upper
    sternal border)."""
    if f.murmur == "Unknown":
        return (f"The recordings are inconclusive (P(Unknown) {_pct(f.probabilities.get('Unknown', 0.0))}): "
                "the guidance advises repeating the recording or "
                "referring when a murmur cannot be judged.")
    if f.murmur == "Absent":
        return (f"No murmur was found (P(Absent) {_pct(f.probabilities.get('Absent', 0.0))}), so the recordings "
                "show none of the murmur red flags.")
    shown = []
    checks = (("systolic_grading", {"III/VI"}, "grade {v}"), ("systolic_quality", {"Harsh"}, "harsh quality"),
              ("systolic_timing", {"Holosystolic"}, "holosystolic timing"),
              ("most_audible_location", {"PV"}, "loudest at the left upper sternal border (PV)"))
    for name, values, words in checks:
        ft = f.features.get(name)
        if ft is not None and ft.label in values:
            shown.append(f"{words.format(v=ft.label)} ({_pct(ft.probabilities.get(ft.label, 0.0))})")
    if any(ft.label for name, ft in f.features.items() if name.startswith("diastolic")):
        shown.append("a diastolic component")
    if not shown:
        return (f"{_upper(_call(f))} with none of the red flags the model can see (grade III or more, harsh, "
                "holosystolic, diastolic, loudest at the left upper sternal border).")
    return f"{_upper(_call(f))} with red flags the guidance lists for referral: {', '.join(shown)}."


def evidence(f: Findings) -> str:
    recs = ", ".join(f"{r.id} ({r.site or '?'}, quality {r.segmentation.quality:.2f}"
                     + ("" if r.segmentation.reliable else ", unreliable") + ")" for r in f.recordings)
    warn = f" {len(f.warnings)} warning(s): {'; '.join(f.warnings)}." if f.warnings else ""
    return f"Evidence: {len(f.recordings)} recording(s): {recs}.{warn}"


class Excerpter:
    """Cuts passages to the sentences nearest a question. Sentence vectors are kept: the same few corpus
    passages come back again and again, and embedding their sentences dominated a reply's time."""

    def __init__(self, embedder: Embedder, config: FocusConfig = FocusConfig()):
        self.embedder = embedder
        self.config = config
        self._vectors: dict[str, np.ndarray] = {}

    def _encode(self, sentences: list[str]) -> np.ndarray:
        new = [s for s in dict.fromkeys(sentences) if s not in self._vectors]
        if new:
            self._vectors.update(zip(new, self.embedder.encode(new)))
        return np.stack([self._vectors[s] for s in sentences])

    def excerpts(self, question: str, passages: list[GuidancePassage]) -> list[tuple[GuidancePassage, str]]:
        """Each passage's sentences nearest the question, in their original order, within the length budget."""
        qv = self.embedder.encode_query(question)[0]
        out = []
        for p in passages:
            sentences = split_sentences(p.text)
            if len(sentences) > self.config.sentences_per_passage:
                sims = self._encode(sentences) @ qv
                keep = sorted(np.argsort(-sims)[: self.config.sentences_per_passage])
                sentences = [sentences[i] for i in keep]
            text = " ".join(sentences)
            if len(text) > self.config.max_passage_chars:
                text = text[: self.config.max_passage_chars].rsplit(" ", 1)[0] + " …"
            out.append((p, text))
        return out


def focused_reply(question: str, topics: list[Topic], findings: Findings | None, passages: list[GuidancePassage],
                  excerpter: Excerpter | None, config: FocusConfig = FocusConfig()) -> FocusedReply:
    if findings is None:
        answers = ["**No recordings are attached**, so there are no findings to answer from; "
                   "the guidance that matches the question follows."]
    else:
        answers = [answer(t, findings) for t in topics]
    chosen = passages[: config.passages]
    excerpts = excerpter.excerpts(question, chosen) if chosen and excerpter is not None else []
    # Keep the reply within the limit by dropping the last excerpts rather than cutting the answer.
    reply = FocusedReply(topics, answers, evidence(findings) if findings else None, excerpts, list(passages))
    while len(reply.excerpts) > 1 and len(reply.markdown().split("**Sources**")[0]) > config.max_chars:
        reply.excerpts.pop()
    return reply
