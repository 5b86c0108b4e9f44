"""Heart-cycle state annotations and CirCor's `.tsv` format (`start_s end_s state`)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

import numpy as np

from assistant.errors import DatasetError


class State(IntEnum):
    UNANNOTATED = 0
    S1 = 1
    SYSTOLE = 2
    S2 = 3
    DIASTOLE = 4


@dataclass(frozen=True)
class Interval:
    start: float
    end: float
    state: State


@dataclass(frozen=True)
class Segmentation:
    intervals: tuple[Interval, ...]

    def states_at(self, rate: float, n: int) -> np.ndarray:
        """Per-frame state labels (frame k covers time k / rate), 0 outside every interval."""
        out = np.zeros(n, dtype=np.int8)
        for iv in self.intervals:
            a = max(0, int(round(iv.start * rate)))
            b = min(n, int(round(iv.end * rate)))
            out[a:b] = int(iv.state)
        return out

    @classmethod
    def from_states(cls, states: np.ndarray, rate: float) -> Segmentation:
        """Run-length encode per-frame states into intervals."""
        states = np.asarray(states)
        if states.size == 0:
            return cls(())
        change = np.flatnonzero(np.diff(states)) + 1
        starts = np.concatenate([[0], change])
        ends = np.concatenate([change, [states.size]])
        return cls(tuple(Interval(s / rate, e / rate, State(int(states[s]))) for s, e in zip(starts, ends)))

    def of(self, state: State) -> list[Interval]:
        return [iv for iv in self.intervals if iv.state == state]


def read_tsv(path: str | Path) -> Segmentation:
    path = Path(path)
    intervals = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            start, end, state = float(parts[0]), float(parts[1]), State(int(float(parts[2])))
        except (IndexError, ValueError):
            raise DatasetError(f"{path}:{lineno}: expected 'start end state' with state 0-4") from None
        intervals.append(Interval(start, end, state))
    return Segmentation(tuple(intervals))


def write_tsv(path: str | Path, seg: Segmentation) -> Path:
    path = Path(path)
    path.write_text("".join(f"{iv.start:.6g}\t{iv.end:.6g}\t{int(iv.state)}\n" for iv in seg.intervals))
    return path
