"""Heart rate from autocorrelation, heart-rate-conditioned state durations and duration-aware Viterbi.

The hidden semi-Markov model of Springer, Tarassenko and Clifford (IEEE TBME 2016): four states in a
fixed cycle S1 -> systole -> S2 -> diastole, each with an explicit Gaussian duration distribution whose
means follow the heart rate. The first and the last state may be cut by the recording's edges, so they
are scored by the duration survival function instead of the density. States here are 0-based
(0 S1, 1 systole, 2 S2, 3 diastole); `assistant.data.segmentation.State` numbers them 1-4.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import log_ndtr

N_STATES = 4
_PREVIOUS = np.array([3, 0, 1, 2])


@dataclass(frozen=True)
class DurationModel:
    """State durations in seconds; systole grows with the RR interval, diastole takes the rest."""

    s1_mean: float = 0.122
    s1_std: float = 0.022
    s2_mean: float = 0.094
    s2_std: float = 0.022
    systole_intercept: float = 0.13
    systole_slope: float = 0.17
    systole_std: float = 0.025
    diastole_std_fraction: float = 0.07
    diastole_std_floor: float = 0.006

    def moments(self, heart_rate: float) -> tuple[np.ndarray, np.ndarray]:
        rr = 60.0 / heart_rate
        systole = self.systole_intercept + self.systole_slope * rr
        diastole = max(rr - self.s1_mean - systole - self.s2_mean, 0.06)
        means = np.array([self.s1_mean, systole, self.s2_mean, diastole])
        stds = np.array(
            [
                self.s1_std,
                self.systole_std,
                self.s2_std,
                self.diastole_std_fraction * diastole + self.diastole_std_floor,
            ]
        )
        return means, stds

    def log_tables(self, heart_rate: float, frame_rate: float) -> tuple[np.ndarray, np.ndarray]:
        """log P(d) and log P(D >= d) for d = 1..d_max frames, shape (4, d_max) each."""
        means, stds = self.moments(heart_rate)
        means, stds = means * frame_rate, np.maximum(stds * frame_rate, 0.5)
        d_max = int(np.ceil((means + 4 * stds).max()))
        d = np.arange(1, d_max + 1, dtype=np.float64)[None, :]
        z_hi = (d + 0.5 - means[:, None]) / stds[:, None]
        z_lo = (d - 0.5 - means[:, None]) / stds[:, None]
        # Probability mass of the Gaussian on [d - 0.5, d + 0.5), restricted to within 3 sd of the mean.
        mass = np.exp(log_ndtr(z_hi)) - np.exp(log_ndtr(z_lo))
        inside = np.abs((d - means[:, None]) / stds[:, None]) <= 3.0
        inside[:, 0] |= means < 1.5  # a state shorter than a frame still needs one frame
        mass = np.where(inside, mass, 0.0)
        mass /= mass.sum(axis=1, keepdims=True)
        survival = np.cumsum(mass[:, ::-1], axis=1)[:, ::-1]
        with np.errstate(divide="ignore"):
            return np.log(mass), np.log(np.maximum(survival, 1e-300))


@dataclass(frozen=True)
class HeartRateEstimate:
    heart_rate: float
    confidence: float


def autocorrelation_heart_rate(
    signal: np.ndarray, frame_rate: float, min_bpm: float = 40.0, max_bpm: float = 220.0
) -> HeartRateEstimate:
    """The beat period as the first strong peak of the normalised autocorrelation in [60/max_bpm, 60/min_bpm] s.

    Taking the earliest peak within 85% of the strongest guards against picking a multiple of the period.
    """
    x = np.asarray(signal, dtype=np.float64)
    x = x - x.mean()
    n = x.size
    spectrum = np.fft.rfft(x, 2 * n)
    ac = np.fft.irfft(np.abs(spectrum) ** 2)[:n]
    if ac[0] <= 0:
        return HeartRateEstimate(float("nan"), 0.0)
    # Unbiased: each lag is averaged over the samples it actually overlaps.
    ac = ac / ac[0] * n / np.maximum(n - np.arange(n), 1)
    lo = int(np.floor(frame_rate * 60.0 / max_bpm))
    # A lag needs a third of the signal to overlap itself: a 1.5 s clip holding one cycle at 60 bpm is
    # measured at its 1 s lag (half the signal would have capped it at 0.75 s, 80 bpm). From 2.25 s of
    # signal up, 60/min_bpm (1.5 s at 40 bpm) is the cap either way.
    hi = min(int(np.ceil(frame_rate * 60.0 / min_bpm)), n - n // 3)
    if hi - lo < 3:
        return HeartRateEstimate(float("nan"), 0.0)
    seg = ac[lo : hi + 1]
    peaks = np.flatnonzero((seg[1:-1] > seg[:-2]) & (seg[1:-1] >= seg[2:])) + 1
    if peaks.size == 0:
        return HeartRateEstimate(float("nan"), 0.0)
    best = seg[peaks].max()
    if best <= 0:
        return HeartRateEstimate(float("nan"), 0.0)
    chosen = peaks[np.flatnonzero(seg[peaks] >= 0.85 * best)[0]]
    # Parabolic interpolation gives sub-frame resolution (1 frame is 20 ms, ~2 bpm at 100 bpm).
    a, b, c = seg[chosen - 1], seg[chosen], seg[chosen + 1]
    denom = a - 2 * b + c
    offset = 0.5 * (a - c) / denom if denom < 0 else 0.0
    lag = (lo + chosen + offset) / frame_rate
    return HeartRateEstimate(60.0 / lag, float(np.clip(seg[chosen], 0.0, 1.0)))


@dataclass(frozen=True)
class Decoded:
    states: np.ndarray  # (T,) int, 0-based states


def viterbi(log_emission: np.ndarray, log_duration: np.ndarray, log_survival: np.ndarray) -> Decoded:
    """Most likely state sequence of the cyclic four-state HSMM.

    `log_emission` (T, 4) is log b_j(o_t) up to a per-frame constant; the tables come from
    `DurationModel.log_tables`. Runs in O(T * d_max) with the inner maximisation vectorised.
    """
    log_emission = np.asarray(log_emission, dtype=np.float64)
    t_total = log_emission.shape[0]
    d_max = log_duration.shape[1]
    cum = np.zeros((t_total + 1, N_STATES))
    np.cumsum(log_emission, axis=0, out=cum[1:])
    best = np.full((t_total + 1, N_STATES), -np.inf)  # best[b, j]: a segment of state j ends at frame b
    back = np.zeros((t_total + 1, N_STATES), dtype=np.int64)  # its duration; negative marks the first segment
    log_pi = np.log(1.0 / N_STATES)
    cols = np.arange(N_STATES)
    for b in range(1, t_total + 1):
        k = min(d_max, b - 1)
        if b <= d_max:  # the first segment, cut by the start of the recording
            best[b] = log_pi + log_survival[:, b - 1] + cum[b]
            back[b] = -b
        if k == 0:
            continue
        starts = best[b - k : b][::-1]  # starts[i] = best[b - 1 - i], i.e. duration i + 1
        cand = starts[:, _PREVIOUS] + log_duration[:, :k].T + (cum[b] - cum[b - k : b][::-1])
        arg = np.argmax(cand, axis=0)
        val = cand[arg, cols]
        better = val > best[b]
        best[b] = np.where(better, val, best[b])
        back[b] = np.where(better, arg + 1, back[b])
    # The last segment, cut by the end of the recording.
    k = min(d_max, t_total - 1)
    final = best[t_total].copy()
    final_back = back[t_total].copy()
    if k > 0:
        starts = best[t_total - k : t_total][::-1]
        cand = starts[:, _PREVIOUS] + log_survival[:, :k].T + (cum[t_total] - cum[t_total - k : t_total][::-1])
        arg = np.argmax(cand, axis=0)
        final = cand[arg, cols]
        final_back = arg + 1
    state = int(np.argmax(final))
    states = np.empty(t_total, dtype=np.int64)
    b, d = t_total, int(final_back[state])
    while True:
        if d < 0:
            states[:b] = state
            break
        states[b - d : b] = state
        b -= d
        state = int(_PREVIOUS[state])
        d = int(back[b, state])
    return Decoded(states)
