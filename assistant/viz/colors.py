"""The one colour scheme of every figure: the four heart-cycle states and the three murmur classes.

No matplotlib import here, so a module that draws lazily can hold the palette without loading it.
"""

from __future__ import annotations

from assistant.data.segmentation import State

STATE_COLORS = {State.S1: "tab:red", State.SYSTOLE: "tab:orange", State.S2: "tab:blue", State.DIASTOLE: "tab:green"}
STATE_NAMES = {State.S1: "S1", State.SYSTOLE: "systole", State.S2: "S2", State.DIASTOLE: "diastole"}
STATE_ALPHA = 0.18  # states are shaded behind the waveform, which must stay readable over them
LEGEND_ALPHA = 0.35  # a legend swatch a little stronger than the shading, or it is hard to tell apart
CLASS_COLORS = {"Present": "tab:red", "Unknown": "tab:gray", "Absent": "tab:green"}


def state_legend() -> list:
    """Legend handles (matplotlib Patches) for the shaded states, S1 to diastole."""
    from matplotlib.patches import Patch

    return [Patch(color=STATE_COLORS[s], alpha=LEGEND_ALPHA, label=STATE_NAMES[s]) for s in STATE_COLORS]
