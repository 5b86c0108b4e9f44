from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# A user's own guideline index (`murmurscope index add`) would change what every retrieval test finds:
# the suite, and the servers it starts, see an empty one unless a test names its own.
os.environ["MURMURSCOPE_USER_INDEX"] = tempfile.mkdtemp(prefix="murmurscope-user-index-")

CIRCOR_DEV = Path(__file__).resolve().parents[1].parent / "shared" / "circor-dev"


@pytest.fixture(scope="session")
def circor_dev() -> Path:
    if not (CIRCOR_DEV / "training_data.csv").exists():
        pytest.skip(f"real CirCor data not found at {CIRCOR_DEV} (it stays in ../shared; absent on a user's machine)")
    return CIRCOR_DEV


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """A small labelled CirCor-layout folder, .wav like the official release."""
    from assistant.data.synth import write_circor_folder

    root = tmp_path_factory.mktemp("synth_circor")
    write_circor_folder(root, n_patients=8, seed=1, suffix=".wav", duration=8.0)
    return root


@pytest.fixture(scope="session")
def analyzer():
    """The shipped segmenter, murmur model and guidance index, loaded once for the whole session."""
    from assistant.consult.analyzer import Analyzer

    return Analyzer.load()


@pytest.fixture()
def analyzer_loaded_once(monkeypatch, analyzer):
    """`Analyzer.load()` of the shipped models returns the session's analyzer instead of loading them again."""
    from assistant.consult.analyzer import AnalysisConfig, Analyzer

    load = Analyzer.load.__func__

    def load_once(cls, config: AnalysisConfig = AnalysisConfig()) -> Analyzer:
        return analyzer if config == AnalysisConfig() else load(cls, config)

    monkeypatch.setattr(Analyzer, "load", classmethod(load_once))
    return analyzer


@pytest.fixture(scope="session")
def tiny_audio_llm(tmp_path_factory, synth_root) -> Path:
    """The audio-LLM chain through the CLI: tiny-model -> qa -> a few LoRA SFT steps -> merged vLLM export."""
    import subprocess
    import sys

    murmurscope = str(Path(sys.executable).with_name("murmurscope"))

    def cli(*args: str) -> None:
        subprocess.run([murmurscope, *args], check=True, timeout=900)

    work = tmp_path_factory.mktemp("audio_llm_chain")
    cli("finetune", "tiny-model", "--out", str(work / "tiny"))
    cli("finetune", "qa", "--circor-root", str(synth_root), "--out", str(work / "qa"), "--max-clip-seconds", "5")
    cli("finetune", "sft", "--model", str(work / "tiny"), "--data", str(work / "qa"), "--out", str(work / "adapter"),
        "--max-steps", "30", "--batch-size", "4", "--grad-accum", "1", "--learning-rate", "5e-3",
        "--lora-r", "16", "--lora-alpha", "32", "--logging-steps", "5", "--torch-threads", "1")
    cli("finetune", "merge", "--base", str(work / "tiny"), "--adapter", str(work / "adapter"),
        "--out", str(work / "merged"))
    return work / "merged"


@pytest.fixture()
def synth_recordings():
    """Four 8 s recordings of one synthetic patient with a murmur."""
    from assistant.data.synth import synth_patient

    p = synth_patient("9001", seed=3, murmur="Present", duration=8.0)
    return [pcg.recording for pcg in p.recordings.values()]
