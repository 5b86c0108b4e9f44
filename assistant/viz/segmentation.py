"""PNG of a recording's waveform with its four heart-cycle states shaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from assistant.data.audio import Recording
from assistant.data.segmentation import State
from assistant.viz.colors import STATE_ALPHA, STATE_COLORS, state_legend


def plot_segmentation(rec: Recording, result, path: str | Path, seconds: float | None = None) -> Path:
    """Draw `rec` and the intervals of `result` (a SegmentResult); `seconds` limits the view to the start."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    end = rec.duration if seconds is None else min(seconds, rec.duration)
    n = int(end * rec.rate)
    t = np.arange(n) / rec.rate
    fig, ax = plt.subplots(figsize=(max(8.0, min(end, 30.0) * 0.8), 3.2))
    for iv in result.segmentation.intervals:
        if iv.state != State.UNANNOTATED and iv.start < end:
            ax.axvspan(iv.start, min(iv.end, end), color=STATE_COLORS[iv.state], alpha=STATE_ALPHA, lw=0)
    ax.plot(t, rec.samples[:n], color="black", lw=0.4)
    ax.set_xlim(0, end)
    ax.set_xlabel("time (s)")
    hr = f"{result.heart_rate:.0f} bpm" if result.heart_rate else "no heart rate"
    ax.set_title(f"{Path(rec.source).name} · {hr} · quality {result.quality:.2f} · {result.message}", fontsize=9)
    ax.legend(handles=state_legend(), loc="upper right", fontsize=7, ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
