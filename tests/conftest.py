from __future__ import annotations

from pathlib import Path

import pytest

CIRCOR_DEV = Path(__file__).resolve().parents[1].parent / "shared" / "circor-dev"


@pytest.fixture(scope="session")
def circor_dev() -> Path:
    if not (CIRCOR_DEV / "training_data.csv").exists():
        pytest.skip(f"real CirCor data not found at {CIRCOR_DEV} (it stays in ../shared; absent on a user's machine)")
    return CIRCOR_DEV


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """A small labelled CirCor-layout folder, .wav like the official release."""
    from assistant.synth import write_circor_folder

    root = tmp_path_factory.mktemp("synth_circor")
    write_circor_folder(root, n_patients=8, seed=1, suffix=".wav", duration=8.0)
    return root


# Pieces built in parallel (segmenter, murmur model, retriever, audio-LLM client) are replaced by
# the doubles in tests/doubles.py only while they are absent from the branch.
from tests import doubles  # noqa: E402

MISSING_PIECES = doubles.install_missing()


@pytest.fixture()
def fake_analyzer(monkeypatch):
    """An Analyzer on the test doubles: tests of the consultation's own logic, independent of weights."""
    import assistant.findings as findings

    monkeypatch.setattr(findings, "segment_recording", doubles.segment_recording)
    return findings.Analyzer(doubles.MurmurModel(), doubles.Retriever(), guidance_k=2)


@pytest.fixture()
def synth_recordings():
    """Four 8 s recordings of one synthetic patient with a murmur."""
    from assistant.synth import synth_patient

    p = synth_patient("9001", seed=3, murmur="Present", duration=8.0)
    return [pcg.recording for pcg in p.recordings.values()]
