"""Figures of an analysis: per recording the waveform with the heart-cycle states shaded and a
spectrogram, then the murmur probabilities."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from assistant.consult.findings import Findings, SegmentationFinding  # noqa: E402
from assistant.data.audio import Recording  # noqa: E402
from assistant.data.labels import MURMUR_CLASSES  # noqa: E402
from assistant.viz.colors import CLASS_COLORS, STATE_ALPHA, STATE_COLORS, state_legend  # noqa: E402


def draw_waveform(ax, rec: Recording, seg: SegmentationFinding | None, window_s: float | None = None) -> None:
    n = len(rec.samples) if window_s is None else min(len(rec.samples), int(window_s * rec.rate))
    t = np.arange(n) / rec.rate
    ax.plot(t, rec.samples[:n], color="black", linewidth=0.4)
    for start, end, state in (seg.intervals if seg else []):
        if state in STATE_COLORS and start < t[-1]:
            ax.axvspan(start, min(end, t[-1]), color=STATE_COLORS[state], alpha=STATE_ALPHA, linewidth=0)
    ax.set_xlim(0, t[-1])
    ax.set_ylabel("amplitude")


def draw_spectrogram(ax, rec: Recording, window_s: float | None = None, max_hz: float = 800.0) -> None:
    n = len(rec.samples) if window_s is None else min(len(rec.samples), int(window_s * rec.rate))
    nfft = int(2 ** np.ceil(np.log2(0.064 * rec.rate)))
    ax.specgram(rec.samples[:n], NFFT=nfft, Fs=rec.rate, noverlap=nfft * 3 // 4, cmap="magma", scale="dB")
    ax.set_ylim(0, min(max_hz, rec.rate / 2))
    # specgram widens the x range to its own margins; keep the waveform's 0..n axis (they share it).
    ax.set_xlim(0, (n - 1) / rec.rate)
    ax.set_ylabel("Hz")


def draw_probabilities(ax, probabilities: dict[str, float], title: str = "murmur") -> None:
    values = [probabilities.get(c, 0.0) for c in MURMUR_CLASSES]
    ax.barh(MURMUR_CLASSES, values, color=[CLASS_COLORS[c] for c in MURMUR_CLASSES])
    for y, v in enumerate(values):
        ax.text(min(v + 0.02, 0.9), y, f"{100 * v:.0f}%", va="center")
    ax.set_xlim(0, 1)
    ax.set_xlabel("probability")
    ax.set_title(title)


def recording_figure(rec: Recording, seg: SegmentationFinding | None, window_s: float | None = 6.0) -> Figure:
    """One recording: waveform with states shaded over a spectrogram (the first `window_s` seconds)."""
    fig, (ax_w, ax_s) = plt.subplots(2, 1, figsize=(10, 4.2), sharex=True, constrained_layout=True)
    draw_waveform(ax_w, rec, seg, window_s)
    draw_spectrogram(ax_s, rec, window_s)
    ax_s.set_xlabel("time (s)")
    ax_w.legend(handles=state_legend(), loc="upper right", ncol=4, fontsize=7)
    return fig


def findings_figure(recordings: Sequence[Recording], findings: Findings, window_s: float | None = 6.0) -> Figure:
    """A patient: two rows per recording, then the murmur probabilities."""
    n = len(recordings)
    fig = plt.figure(figsize=(11, 2.6 * n + 2.2), constrained_layout=True)
    grid = fig.add_gridspec(2 * n + 1, 1, height_ratios=[1.2, 1.0] * n + [1.1])
    for k, (rec, rf) in enumerate(zip(recordings, findings.recordings)):
        ax_w = fig.add_subplot(grid[2 * k])
        ax_s = fig.add_subplot(grid[2 * k + 1], sharex=ax_w)
        draw_waveform(ax_w, rec, rf.segmentation, window_s)
        draw_spectrogram(ax_s, rec, window_s)
        hr = rf.segmentation.heart_rate
        shown = rec.duration if window_s is None else min(window_s, rec.duration)
        present = rf.murmur_probabilities.get("Present")
        ax_w.set_title(f"{rf.id} · site {rf.site or '?'} · {f'{hr:.0f} bpm' if hr else 'no rhythm'} · "
                       f"quality {rf.segmentation.quality:.2f}"
                       + (f" · P(murmur present) {100 * present:.0f}%" if present is not None else "")
                       + f" · first {shown:.0f} s of {rec.duration:.0f} s", fontsize=9, loc="left")
    ax_s.set_xlabel("time (s)")
    # Above the first recording rather than over a waveform, where it would hide heart sounds.
    fig.legend(handles=state_legend(), loc="outside upper right", ncol=4, fontsize=8)
    draw_probabilities(fig.add_subplot(grid[-1]), findings.probabilities,
                       f"patient {findings.patient_id}: murmur {findings.murmur}")
    return fig


def save_findings_figure(path: str | Path, recordings: Sequence[Recording], findings: Findings) -> Path:
    path = Path(path)
    fig = findings_figure(recordings, findings)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
