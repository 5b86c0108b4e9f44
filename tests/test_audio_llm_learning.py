"""Learning check: a micro Qwen2-Audio trained from scratch hears a synthetic murmur's pitch (chance 1/3)."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_micro_qwen2_audio_learns_murmur_pitch_from_scratch(tmp_path):
    from finetune.learning_check import LearningCheckConfig, run_learning_check

    result = run_learning_check(LearningCheckConfig(tmp_path))
    assert result.n_test == 60
    # Well above chance (1/3): only possible with answer-only labels and audio tokens aligned to the clip.
    assert result.accuracy >= 0.6, result
