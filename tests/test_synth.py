import numpy as np
import pytest

from assistant.data.segmentation import State
from assistant.data.synth import PITCH_BANDS, Murmur, SynthConfig, synth_patient, synthesize


def _band_energy(x, rate, lo, hi):
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / rate)
    return spec[(f >= lo) & (f < hi)].sum()


def test_segmentation_covers_beats_at_the_heart_rate():
    pcg = synthesize(SynthConfig(duration=20, heart_rate=90, hrv=0.0, seed=4))
    s1 = pcg.segmentation.of(State.S1)
    assert len(s1) == pytest.approx(20 * 90 / 60, abs=2)
    intervals = np.diff([iv.start for iv in s1])
    assert np.median(intervals) == pytest.approx(60 / 90, rel=0.02)
    order = [iv.state for iv in pcg.segmentation.intervals if iv.state != State.UNANNOTATED]
    assert all(b == (a % 4) + 1 for a, b in zip(order, order[1:]))


def test_systolic_murmur_lives_in_systole():
    base = SynthConfig(duration=10, seed=5, breathing_level=0.0, snr_db=60)
    quiet = synthesize(base)
    loud = synthesize(SynthConfig(**{**base.__dict__, "murmurs": (Murmur(grading="III/VI"),)}))
    for pcg, expect_murmur in ((quiet, False), (loud, True)):
        states = pcg.segmentation.states_at(4000, len(pcg.recording.samples))
        x = pcg.recording.samples
        ratio = np.sqrt(np.mean(x[states == State.SYSTOLE] ** 2) / np.mean(x[states == State.DIASTOLE] ** 2))
        assert (ratio > 3) == expect_murmur


@pytest.mark.parametrize("pitch", list(PITCH_BANDS))
def test_pitch_sets_the_band(pitch):
    pcg = synthesize(SynthConfig(duration=10, seed=6, murmurs=(Murmur(pitch=pitch, grading="III/VI"),), snr_db=60))
    states = pcg.segmentation.states_at(4000, len(pcg.recording.samples))
    x = pcg.recording.samples * (states == State.SYSTOLE)
    energies = {p: _band_energy(x, 4000, *PITCH_BANDS[p]) for p in PITCH_BANDS}
    assert max(energies, key=energies.get) == pitch


def test_patient_murmur_loudest_at_labelled_site():
    p = synth_patient("1", seed=11, murmur="Present")
    rms = {}
    for site, pcg in p.recordings.items():
        st = pcg.segmentation.states_at(4000, len(pcg.recording.samples))
        x = pcg.recording.samples
        rms[site] = np.sqrt(np.mean(x[st == State.SYSTOLE] ** 2) / np.mean(x[st == State.S1] ** 2))
    assert max(rms, key=rms.get) == p.labels.most_audible_location


def test_seeded():
    a = synthesize(SynthConfig(seed=9, duration=5)).recording.samples
    b = synthesize(SynthConfig(seed=9, duration=5)).recording.samples
    assert (a == b).all()
