"""`Analyzer.analyze` on the shipped models: per-recording results stay with their recording."""

from __future__ import annotations

import numpy as np
import pytest

from assistant.consult.analyzer import AnalysisError
from assistant.data.audio import Recording


def test_per_recording_results_follow_the_input_order(analyzer, synth_recordings):
    forward = analyzer.analyze(synth_recordings, guidance=False)
    backward = analyzer.analyze(synth_recordings[::-1], ids=["r4", "r3", "r2", "r1"], guidance=False)
    assert [r.site for r in forward.recordings] == ["AV", "PV", "TV", "MV"]
    for a, b in zip(forward.recordings, backward.recordings[::-1]):
        assert a.site == b.site and a.segmentation == b.segmentation
        assert a.murmur_probabilities == b.murmur_probabilities
    alone = analyzer.analyze([synth_recordings[2]], guidance=False)
    assert alone.recordings[0].murmur_probabilities == forward.recordings[2].murmur_probabilities
    assert forward.recordings[0].segmentation.reliable and forward.recordings[0].segmentation.n_cycles >= 3


def test_an_unusable_recording_is_named_not_skipped(analyzer, synth_recordings):
    silent = Recording(np.zeros(4000 * 8, dtype=np.float32), 4000, site="PV", patient_id="9001", source="<upload>")
    with pytest.raises(AnalysisError, match="^rec2: every sample is zero"):
        analyzer.analyze([synth_recordings[0], silent])
