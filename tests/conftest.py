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
