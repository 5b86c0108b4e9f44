"""Cycle-synchronous log-mel features on synthetic audio whose murmur timing is known."""

import numpy as np
import torch

from assistant.data.synth import Murmur, SynthConfig, synthesize
from assistant.murmur.cycle_features import CycleConfig, cycle_image, cycle_vector
from assistant.murmur.melspec import CIRCOR_MEL, LogMel


def _image(timing: str | None, seed: int = 0, config: CycleConfig = CycleConfig()) -> np.ndarray:
    murmurs = (Murmur(timing=timing, grading="III/VI"),) if timing else ()
    pcg = synthesize(SynthConfig(duration=10.0, murmurs=murmurs, seed=seed))
    with torch.inference_mode():
        mel = LogMel(CIRCOR_MEL)(torch.from_numpy(pcg.recording.samples)[None])[0].numpy()
    states = pcg.segmentation.states_at(50, mel.shape[1])
    return cycle_image(mel, states, config)


def _systole(image: np.ndarray, config: CycleConfig = CycleConfig()) -> np.ndarray:
    """Total power per systolic phase bin, relative to S1/S2."""
    n = config.sound_bins
    return np.log(np.exp(image[:, n : n + config.systole_bins]).sum(axis=0))


def test_shape_and_scale():
    cfg = CycleConfig()
    image = _image("Holosystolic")
    assert image.shape == (cfg.mel_groups, sum(cfg.phase_bins))
    assert np.isfinite(image).all()
    vec = cycle_vector(np.zeros((48, 100)), np.zeros(100, dtype=np.int8), cfg)
    assert vec.shape == (cfg.dim,) and not vec.any()  # no cycles: all zeros, flag off


def test_murmur_timing_shows_in_systolic_bins():
    early, late, none = (_systole(_image(t)) for t in ("Early-systolic", "Late-systolic", None))
    first, last = slice(1, 7), slice(9, 15)
    # An early murmur fills the first part of systole, a late one the last part.
    assert early[first].mean() - early[last].mean() > 1.0
    assert late[last].mean() - late[first].mean() > 1.0
    # Against no murmur, a murmur raises systolic energy relative to the heart sounds (grading).
    assert early[first].mean() > none[first].mean() + 1.0
    assert late[last].mean() > none[last].mean() + 1.0


def test_gain_invariant():
    a = _image("Holosystolic", seed=3)
    pcg = synthesize(SynthConfig(duration=10.0, murmurs=(Murmur(grading="III/VI"),), seed=3))
    with torch.inference_mode():
        mel = LogMel(CIRCOR_MEL)(torch.from_numpy(pcg.recording.samples * 0.1)[None])[0].numpy()
    b = cycle_image(mel, pcg.segmentation.states_at(50, mel.shape[1]))
    # Exact up to the log's epsilon, which only matters in near-silent bins (the synthetic audio has
    # little energy in the top mel groups).
    loud = a > -5.0
    assert loud.sum() >= 40
    np.testing.assert_allclose(a[loud], b[loud], atol=0.02)
