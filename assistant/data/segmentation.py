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


CYCLE_ORDER = (State.S1, State.SYSTOLE, State.S2, State.DIASTOLE)


@dataclass(frozen=True)
class Cycle:
    """One heart cycle: its S1, systole, S2 and diastole intervals, and the onset of the S1 right after it."""

    phases: tuple[Interval, Interval, Interval, Interval]
    next_onset: float | None  # None: the diastole runs into the end of the recording or into unannotated time

    @property
    def start(self) -> float:
        return self.phases[0].start

    @property
    def end(self) -> float:
        """The next S1 onset, or the diastole's end when no S1 follows."""
        return self.phases[3].end if self.next_onset is None else self.next_onset


def complete_cycles(seg: Segmentation | np.ndarray, closed: bool = True) -> list[Cycle]:
    """The complete heart cycles of `seg`: four consecutive intervals S1, systole, S2, diastole.

    `seg` is a Segmentation, or per-frame states (then every time in the result is a frame index). With `closed`
    an S1 must follow at once, so the diastole is known to be whole and the cycle runs from one S1 onset to the
    next (heart rate, durations, clips); without it a last diastole cut short by the end of the recording or by
    unannotated frames counts too (the cycle-synchronous features, which only read each phase's frames).
    A partial cycle at the start (the first interval not S1) never counts; a leading S1 cut by the start does.
    """
    if not isinstance(seg, Segmentation):
        seg = Segmentation.from_states(seg, 1.0)
    ivs = seg.intervals
    cycles = []
    for i in range(len(ivs) - 3):
        if tuple(iv.state for iv in ivs[i : i + 4]) != CYCLE_ORDER:
            continue
        follows = i + 4 < len(ivs) and ivs[i + 4].state == State.S1
        if closed and not follows:
            continue
        cycles.append(Cycle(ivs[i : i + 4], ivs[i + 4].start if follows else None))
    return cycles


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
