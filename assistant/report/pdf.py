"""The consultation report as a PDF (reportlab platypus): text is real text, selectable and searchable;
the fonts are DejaVu Sans from matplotlib's own data, embedded (as subsets) so the PDF reads the same
everywhere; each recording's segmentation and spectrogram figure is drawn by assistant.viz."""

from __future__ import annotations

import functools
import io
from pathlib import Path
from xml.sax.saxutils import escape

import matplotlib
from reportlab.lib import colors
from reportlab.lib.enums import TA_LEFT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import cm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import Image, KeepTogether, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from assistant import __version__
from assistant.consult.findings import FeatureFinding, Findings
from assistant.consult.report import AUDIO_LLM_CAVEAT, audio_llm_heading, audio_llm_rows, audio_llm_unavailable
from assistant.data.labels import MURMUR_CLASSES
from assistant.report.document import ReportInput

FONT, BOLD, ITALIC = "MurmurScopeSans", "MurmurScopeSans-Bold", "MurmurScopeSans-Oblique"
PAGE_W, PAGE_H = A4
MARGIN = 1.8 * cm
NOT_DETERMINABLE = "not determinable"
UNKNOWN_CALL = ("Not determinable (Unknown): the recordings do not allow a murmur call, usually because of "
                "noise or too few clean heart cycles. Repeat the recording in a quiet room before deciding.")


@functools.lru_cache(maxsize=1)
def _fonts() -> None:
    ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    for name, file in ((FONT, "DejaVuSans.ttf"), (BOLD, "DejaVuSans-Bold.ttf"), (ITALIC, "DejaVuSans-Oblique.ttf")):
        pdfmetrics.registerFont(TTFont(name, str(ttf / file)))
    pdfmetrics.registerFontFamily(FONT, normal=FONT, bold=BOLD, italic=ITALIC, boldItalic=BOLD)


def pct(p: float) -> str:
    """A probability as the report prints it: two decimals of a percent carry the four decimals of the JSON."""
    return f"{100 * p:.2f}%"


def _styles() -> dict[str, ParagraphStyle]:
    base = ParagraphStyle("body", fontName=FONT, fontSize=9.5, leading=12.5, alignment=TA_LEFT)
    return {
        "body": base,
        "small": ParagraphStyle("small", parent=base, fontSize=8, leading=10),
        "title": ParagraphStyle("title", parent=base, fontName=BOLD, fontSize=17, leading=21, spaceAfter=4),
        "h2": ParagraphStyle("h2", parent=base, fontName=BOLD, fontSize=12, leading=15, spaceBefore=10, spaceAfter=4),
        "call": ParagraphStyle("call", parent=base, fontName=BOLD, fontSize=13, leading=17, spaceAfter=3),
        "cell": ParagraphStyle("cell", parent=base, fontSize=8.5, leading=10.5),
        "note": ParagraphStyle("note", parent=base, fontName=ITALIC, fontSize=8.5, leading=11),
    }


def _table(rows: list[list], widths: list[float], st: dict[str, ParagraphStyle]) -> Table:
    cells = [[Paragraph(escape(str(c)), st["cell"]) if not isinstance(c, Paragraph) else c for c in row]
             for row in rows]
    t = Table(cells, colWidths=widths, repeatRows=1, hAlign="LEFT")
    t.setStyle(TableStyle([
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8ecf1")),
        ("LINEBELOW", (0, 0), (-1, 0), 0.6, colors.HexColor("#7a8694")),
        ("LINEBELOW", (0, 1), (-1, -1), 0.25, colors.HexColor("#c9d0d8")),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("FONTNAME", (0, 0), (-1, -1), FONT),  # the cell default is Helvetica, which would not be embedded
        ("TOPPADDING", (0, 0), (-1, -1), 2.5), ("BOTTOMPADDING", (0, 0), (-1, -1), 2.5),
    ]))
    return t


def heart_rate_text(hr: float | None) -> str:
    return NOT_DETERMINABLE if hr is None else f"{hr:.1f} bpm"


def feature_value_text(f: Findings, name: str, ft: FeatureFinding) -> str:
    """What the report says for a feature whose most likely value is not given."""
    if ft.label is not None:
        return ft.label
    if not ft.probabilities:
        return f"{NOT_DETERMINABLE} (no usable recording)"
    if f.murmur != "Present":
        return f"{NOT_DETERMINABLE} (murmur call {f.murmur})"
    return "no diastolic murmur found" if name.startswith("diastolic") else NOT_DETERMINABLE


def _figure(rec, seg, width: float) -> Image:
    import matplotlib.pyplot as plt

    from assistant.viz.analysis import recording_figure

    fig = recording_figure(rec, seg)
    buf = io.BytesIO()
    # JPEG: the spectrogram is photographic; as PNG one figure took ~500 kB, as JPEG ~100 kB, same legibility.
    fig.savefig(buf, format="jpeg", dpi=110, pil_kwargs={"quality": 85})
    w_in, h_in = fig.get_size_inches()
    plt.close(fig)
    buf.seek(0)
    return Image(buf, width=width, height=width * h_in / w_in)


def _audio_llm_section(f: Findings, width: float, st: dict[str, ParagraphStyle]) -> list:
    """The audio-LLM's voted answers beside the classifier's (the rows the Markdown shows), or why there are none."""
    a = f.audio_llm
    if a.error:
        return [Paragraph("Audio-LLM second opinion", st["h2"]),
                Paragraph(escape(audio_llm_unavailable(a)), st["body"])]
    rows = [["question", "classifier", "audio-LLM (voted)"]]
    rows += [[r.question, r.classifier, r.audio_llm_text] for r in audio_llm_rows(f)]
    return [Paragraph(escape(audio_llm_heading(a)), st["h2"]),
            _table(rows, [w * width for w in (0.34, 0.33, 0.33)], st),
            Spacer(1, 3), Paragraph(escape(AUDIO_LLM_CAVEAT), st["note"])]


def report_pdf(report: ReportInput) -> bytes:
    """The report as PDF bytes (A4)."""
    _fonts()
    st = _styles()
    f = report.findings
    width = PAGE_W - 2 * MARGIN
    story: list = [Paragraph("MurmurScope consultation report", st["title"])]
    story.append(_table([["patient", "date", "recordings", "generated by"],
                         [report.patient_label, report.created.strftime("%Y-%m-%d %H:%M UTC"),
                          str(len(f.recordings)), f"MurmurScope {__version__}"]],
                        [0.3 * width, 0.25 * width, 0.15 * width, 0.3 * width], st))

    story.append(Paragraph("Murmur call", st["h2"]))
    probs = ", ".join(f"{c} {pct(f.probabilities.get(c, 0.0))}" for c in MURMUR_CLASSES)
    story.append(Paragraph(escape(f"Murmur: {f.murmur}"), st["call"]))
    story.append(Paragraph(escape(f"Probabilities: {probs}. Signal quality {f.signal_quality:.3f} "
                                  "(mean over the recordings; 0 poor, 1 clean)."), st["body"]))
    if f.murmur == "Unknown":
        story.append(Paragraph(escape(UNKNOWN_CALL), st["body"]))
    for w in f.warnings:
        story.append(Paragraph(escape(f"Warning: {w}"), st["body"]))

    story.append(Paragraph("Recordings", st["h2"]))
    rows = [["recording", "site", "duration", "heart rate", "signal quality", "cycles", "P(murmur present)"]]
    for r in f.recordings:
        s = r.segmentation
        quality = f"{s.quality:.3f}" + ("" if s.reliable else f" (unreliable: {s.message})")
        present = r.murmur_probabilities.get("Present")
        rows.append([r.id, r.site or "not given", f"{r.duration_s:.1f} s", heart_rate_text(s.heart_rate), quality,
                     str(s.n_cycles), NOT_DETERMINABLE if present is None else pct(present)])
    story.append(_table(rows, [w * width for w in (0.14, 0.09, 0.1, 0.14, 0.29, 0.08, 0.16)], st))

    story.append(Paragraph("Murmur features", st["h2"]))
    if not any(ft.label for ft in f.features.values()):
        story.append(Paragraph(escape(f"The murmur call is {f.murmur}, so the murmur's features (location, timing, "
                                      f"shape, grading, pitch, quality) are {NOT_DETERMINABLE}."), st["body"]))
    else:
        rows = [["feature", "most likely value", "its probability", "all values", "confidence"]]
        for name, ft in f.features.items():
            p = pct(ft.probabilities[ft.label]) if ft.label else "-"
            every = ", ".join(f"{v} {pct(x)}" for v, x in ft.probabilities.items()) if ft.label else "-"
            conf = f"low (trained on {ft.n_train} murmurs)" if ft.low_confidence else "ok"
            rows.append([name.replace("_", " "), feature_value_text(f, name, ft), p, every, conf if ft.label else "-"])
        story.append(_table(rows, [w * width for w in (0.18, 0.2, 0.12, 0.32, 0.18)], st))

    if f.audio_llm is not None:
        story += _audio_llm_section(f, width, st)

    story.append(Paragraph("Segmentation and spectrogram", st["h2"]))
    story.append(Paragraph("Per recording, the first 6 s: waveform with S1 (red), systole (orange), S2 (blue) and "
                           "diastole (green) shaded, over a spectrogram (0-800 Hz).", st["small"]))
    for rec, r in zip(report.recordings, f.recordings):
        caption = (f"{r.id} · site {r.site or 'not given'} · {heart_rate_text(r.segmentation.heart_rate)} · "
                   f"quality {r.segmentation.quality:.3f}")
        story.append(KeepTogether([Spacer(1, 4), Paragraph(escape(caption), st["body"]),
                                   _figure(rec, r.segmentation, width)]))

    if f.guidance:
        story.append(Paragraph("Guidance matched by this analysis", st["h2"]))
        for k, g in enumerate(f.guidance, 1):
            story.append(Paragraph(escape(f"[{k}] {g.text}"), st["body"]))
            story.append(Spacer(1, 2))
        story.append(Paragraph("Sources", st["h2"]))
        for k, g in enumerate(f.guidance, 1):
            story.append(Paragraph(escape(f"[{k}] {g.citation()}" + (f" <{g.url}>" if g.url else "")), st["small"]))

    story.append(Paragraph("Model versions", st["h2"]))
    rows = [["model", "weights", "sha256 fingerprint"]] + [[v.name, v.location, v.sha256] for v in report.versions]
    story.append(_table(rows, [0.17 * width, 0.11 * width, 0.72 * width], st))
    story.append(Spacer(1, 8))
    story.append(Paragraph(escape(f.disclaimer), st["note"]))

    def footer(canvas, doc) -> None:
        canvas.saveState()
        canvas.setFont(FONT, 7.5)
        canvas.setFillColor(colors.HexColor("#5a6570"))
        canvas.drawString(MARGIN, 1.1 * cm, f"MurmurScope · patient {report.patient_label} · "
                                            "decision support, not a diagnosis")
        canvas.drawRightString(PAGE_W - MARGIN, 1.1 * cm, f"page {doc.page}")
        canvas.restoreState()

    buf = io.BytesIO()
    doc = SimpleDocTemplate(buf, pagesize=A4, leftMargin=MARGIN, rightMargin=MARGIN, topMargin=MARGIN,
                            bottomMargin=MARGIN, title="MurmurScope consultation report",
                            author="MurmurScope", subject=f"patient {report.patient_label}",
                            creator=f"MurmurScope {__version__}",
                            # else the canvas starts in Helvetica: listed, unembedded, in every PDF
                            initialFontName=FONT)
    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return buf.getvalue()
