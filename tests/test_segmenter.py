from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from assistant.cli.main import app
from assistant.data.audio import Recording, write_recording
from assistant.data.segmentation import Segmentation, State, complete_cycles, read_tsv
from assistant.data.synth import SynthConfig, synthesize, write_circor_folder
from assistant.segment.envelopes import FRAME_RATE, frame_features
from assistant.segment.hsmm import DurationModel, autocorrelation_heart_rate, viterbi
from assistant.segment.segmenter import NO_CYCLES, Segmenter, SegmentResult, default_segmenter, segment_recording
from eval.segmenter_bench import Counts, match, score_recording
from finetune.nonheart import GENERATORS

runner = CliRunner()


def _f1(truth: Segmentation, pred: Segmentation) -> tuple[float, float]:
    scores = score_recording(truth, pred, 0.06)
    return scores[State.S1].f1, scores[State.S2].f1


def test_match_is_one_to_one():
    c = match(np.array([1.0, 2.0]), np.array([1.01, 1.02, 2.07, 5.0]), 0.06)
    assert (c.tp, c.fp, c.fn) == (1, 3, 1)
    assert Counts(8, 1, 1).f1 == pytest.approx(16 / 18)


def test_heart_rate_from_pulse_train():
    t = np.arange(20 * FRAME_RATE) / FRAME_RATE
    pulses = np.exp(-(((t % 0.6) - 0.05) ** 2) / 0.001) + 0.5 * np.exp(-(((t % 0.6) - 0.35) ** 2) / 0.001)
    est = autocorrelation_heart_rate(pulses, FRAME_RATE)
    assert est.heart_rate == pytest.approx(100.0, abs=1.5)
    assert est.confidence > 0.8


def test_heart_rate_of_a_clip_holding_one_cycle():
    # 1.6 s at 60 bpm: the 1 s lag overlaps 0.6 s of the clip (more than half the clip, once the cap, away).
    t = np.arange(int(1.6 * FRAME_RATE)) / FRAME_RATE
    pulses = np.exp(-(((t % 1.0) - 0.2) ** 2) / 0.001) + 0.5 * np.exp(-(((t % 1.0) - 0.55) ** 2) / 0.001)
    assert autocorrelation_heart_rate(pulses, FRAME_RATE).heart_rate == pytest.approx(60.0, abs=3)


def test_viterbi_recovers_noisy_states():
    rng = np.random.default_rng(0)
    model = DurationModel()
    truth = []
    while len(truth) < 900:
        for state, mean in enumerate(model.moments(90.0)[0]):
            truth += [state] * max(1, int(round(mean * FRAME_RATE + rng.normal(0, 1))))
    truth = np.array(truth[:900])
    log_b = np.log(np.full((900, 4), 0.1))
    log_b[np.arange(900), truth] = np.log(0.7)
    flip = rng.random(900) < 0.2  # a fifth of the frames point at a wrong state
    log_b[flip] = np.log(rng.dirichlet(np.ones(4), size=flip.sum()))
    decoded = viterbi(log_b, *model.log_tables(90.0, FRAME_RATE)).states
    assert np.mean(decoded == truth) > 0.95


def test_duration_tables_are_distributions():
    log_d, log_s = DurationModel().log_tables(120.0, FRAME_RATE)
    assert np.allclose(np.exp(log_d).sum(axis=1), 1.0)
    assert np.allclose(np.exp(log_s[:, 0]), 1.0)


def _runs(*runs: tuple[State, int]) -> np.ndarray:
    return np.concatenate([np.full(n, int(state), dtype=np.int8) for state, n in runs])


CYCLE = ((State.S1, 3), (State.SYSTOLE, 6), (State.S2, 3), (State.DIASTOLE, 8))


def test_complete_cycles_on_states():
    # a diastole cut by the start, three whole cycles, then one cut by the end during its diastole
    states = _runs((State.DIASTOLE, 5), *CYCLE * 3, (State.S1, 3), (State.SYSTOLE, 4), (State.S2, 2),
                   (State.DIASTOLE, 3))
    closed = complete_cycles(states)
    assert [(c.start, c.end) for c in closed] == [(5, 25), (25, 45), (45, 65)]
    assert [(iv.start, iv.end, iv.state) for iv in closed[0].phases] == [
        (5, 8, State.S1), (8, 14, State.SYSTOLE), (14, 17, State.S2), (17, 25, State.DIASTOLE)]
    assert all(c.next_onset == c.end for c in closed)
    trailing = complete_cycles(states, closed=False)
    assert trailing[:3] == closed and len(trailing) == 4
    assert trailing[3].next_onset is None and (trailing[3].start, trailing[3].end) == (65, 77)
    # the same in seconds, from a Segmentation
    seconds = complete_cycles(Segmentation.from_states(states, FRAME_RATE))
    assert [(c.start, c.end) for c in seconds] == [(a / FRAME_RATE, b / FRAME_RATE) for a, b in [(5, 25), (25, 45),
                                                                                               (45, 65)]]


def test_complete_cycles_edge_cases():
    # an S1 cut by the start still opens a cycle (its onset is the first frame)
    assert [(c.start, c.end) for c in complete_cycles(_runs((State.S1, 1), *CYCLE[1:], *CYCLE))] == [(0, 18)]
    # unannotated frames break a cycle; a diastole running into them closes nothing
    broken = _runs(*CYCLE, (State.UNANNOTATED, 4), *CYCLE, *CYCLE[:2], (State.UNANNOTATED, 2), *CYCLE[2:], *CYCLE)
    assert [(c.start, c.end) for c in complete_cycles(broken)] == [(24, 44)]
    assert [(c.start, c.end) for c in complete_cycles(broken, closed=False)] == [(0, 20), (24, 44), (66, 86)]
    # no cycles: nothing, silence, states out of order, a cycle without its S1
    for states in ([], np.zeros(100, dtype=np.int8), _runs(*CYCLE[:1], *CYCLE[2:], *CYCLE[1:2], *CYCLE[:1]),
                   _runs(*CYCLE[1:], *CYCLE[1:])):
        assert complete_cycles(np.asarray(states, dtype=np.int8)) == []
        assert complete_cycles(np.asarray(states, dtype=np.int8), closed=False) == []


@pytest.mark.parametrize("heart_rate,snr,seed", [(70, 30, 1), (95, 22, 2), (125, 28, 3), (80, 18, 4)])
def test_synthetic_recordings_are_segmented(heart_rate, snr, seed):
    pcg = synthesize(SynthConfig(duration=20.0, heart_rate=heart_rate, snr_db=snr, seed=seed))
    result = segment_recording(pcg.recording)
    assert result.reliable and not result.thin, result.message
    s1, s2 = _f1(pcg.segmentation, result.segmentation)
    assert s1 >= 0.98 and s2 >= 0.98, (s1, s2)
    assert result.heart_rate == pytest.approx(heart_rate, rel=0.06)
    assert 0.0 < result.quality <= 1.0 and 0.0 < result.heart_rate_confidence <= 1.0
    assert result.frame_rate == 50.0 and result.states.dtype == np.int8
    assert result.states.size == frame_features(pcg.recording.samples, pcg.recording.rate).shape[0]
    cycles = result.cycles()
    assert len(cycles) >= 0.8 * 20 * heart_rate / 60
    assert all(0.3 < b - a < 1.2 for a, b in cycles)


@pytest.mark.parametrize("heart_rate,seed,n_cycles", [(100, 0, 1), (120, 0, 2)])
def test_short_clips_are_segmented_on_the_cycles_they_hold(heart_rate, seed, n_cycles):
    pcg = synthesize(SynthConfig(duration=1.5, heart_rate=heart_rate, seed=seed))
    result = segment_recording(pcg.recording)
    assert result.reliable and result.thin, result.message
    assert len(result.cycles()) == n_cycles < default_segmenter().config.min_cycles
    assert result.message == f"{n_cycles} heart cycle{'s' if n_cycles > 1 else ''}"
    assert result.heart_rate == pytest.approx(heart_rate, rel=0.15)


def test_a_short_clip_without_a_complete_cycle_has_none():
    # 1.5 s at 60 bpm: the network finds one clear S1 here, so there is no complete cycle to count.
    result = segment_recording(synthesize(SynthConfig(duration=1.5, heart_rate=60, seed=0)).recording)
    assert not result.reliable and not result.thin and result.message == NO_CYCLES and result.cycles() == []


@pytest.mark.parametrize("kind", sorted(GENERATORS))
def test_non_heart_recordings_are_refused(kind):
    rec = GENERATORS[kind](np.random.default_rng(11), 20.0)
    result = segment_recording(rec)
    assert not result.reliable
    # Steady sound is refused by the gate's measures, with its own reason; the rest by the quality score.
    assert result.message.startswith(NO_CYCLES)
    assert result.heart_rate is None and result.heart_rate_confidence == 0.0
    assert result.quality < default_segmenter().config.min_quality
    assert not result.states.any()
    assert {iv.state for iv in result.segmentation.intervals} == {State.UNANNOTATED}
    assert result.cycles() == []


def test_weights_round_trip(tmp_path):
    seg = default_segmenter()
    seg.save(tmp_path)
    again = Segmenter.load(tmp_path)
    pcg = synthesize(SynthConfig(duration=8.0, seed=5))
    a, b = seg.segment(pcg.recording), again.segment(pcg.recording)
    assert np.array_equal(a.states, b.states) and a.quality == pytest.approx(b.quality)
    assert again.durations == seg.durations and again.config == seg.config


def test_logistic_emission_segments_too():
    pcg = synthesize(SynthConfig(duration=20.0, heart_rate=85, seed=7))
    result = default_segmenter().with_config(emission="logistic").segment(pcg.recording)
    assert isinstance(result, SegmentResult)
    if result.reliable:
        assert result.heart_rate == pytest.approx(85, rel=0.1)


def test_cli_file_tsv_round_trip(tmp_path):
    pcg = synthesize(SynthConfig(duration=10.0, heart_rate=90, seed=3))
    wav = write_recording(tmp_path / "9_MV.wav", pcg.recording)
    out = tmp_path / "9_MV.tsv"
    res = runner.invoke(app, ["segment", str(wav), "--out", str(out), "--plot"])
    assert res.exit_code == 0, res.output
    assert "heart rate" in res.output and "quality" in res.output
    written = read_tsv(out)
    expected = segment_recording(Recording(pcg.recording.samples, pcg.recording.rate)).segmentation
    assert [iv.state for iv in written.intervals] == [iv.state for iv in expected.intervals]
    assert np.allclose([iv.start for iv in written.intervals], [iv.start for iv in expected.intervals], atol=1e-4)
    assert (tmp_path / "9_MV.png").stat().st_size > 1000
    refused = runner.invoke(app, ["segment", str(wav), "--out", str(out)])
    assert refused.exit_code != 0 and "already exists" in str(refused.exception)
    assert read_tsv(out) == written
    assert runner.invoke(app, ["segment", str(wav), "--out", str(out), "--force"]).exit_code == 0


def test_cli_file_without_cycles(tmp_path):
    wav = write_recording(tmp_path / "noise.wav", GENERATORS["white noise"](np.random.default_rng(2), 10.0))
    out = tmp_path / "noise.tsv"
    res = runner.invoke(app, ["segment", str(wav), "--out", str(out)])
    assert res.exit_code == 0 and f"{NO_CYCLES} (no beats: steady sound" in res.output
    assert {iv.state for iv in read_tsv(out).intervals} == {State.UNANNOTATED}


def test_cli_folder_mode_on_official_wav_layout(tmp_path):
    root = tmp_path / "circor"
    write_circor_folder(root, n_patients=2, seed=4, suffix=".wav", duration=8.0, with_labels=False)
    out = tmp_path / "tsv"
    res = runner.invoke(app, ["segment", str(root), "--out", str(out)])
    assert res.exit_code == 0, res.output
    stems = sorted(p.stem for p in root.glob("*.wav"))
    assert sorted(p.stem for p in out.glob("*.tsv")) == stems and len(stems) == 8
    for stem in stems:
        assert any(iv.state == State.S1 for iv in read_tsv(out / f"{stem}.tsv").intervals)
    again = runner.invoke(app, ["segment", str(root), "--out", str(out)])
    assert again.exit_code != 0 and "already exists" in str(again.exception)
    plots = runner.invoke(app, ["segment", str(root), "--out", str(tmp_path / "png"), "--plot"])
    assert plots.exit_code == 0 and len(list((tmp_path / "png").glob("*.png"))) == 8
    assert runner.invoke(app, ["segment", str(root), "--plot"]).exit_code != 0


def test_cli_refuses_bad_out(tmp_path):
    pcg = synthesize(SynthConfig(duration=4.0, seed=1))
    wav = write_recording(tmp_path / "a.wav", pcg.recording)
    res = runner.invoke(app, ["segment", str(wav), "--out", str(tmp_path / "a.txt")])
    assert res.exit_code != 0 and ".tsv" in str(res.exception)
    res = runner.invoke(app, ["segment", str(tmp_path / "missing.wav")])
    assert res.exit_code != 0


@pytest.mark.realdata
def test_real_recordings_of_validation_patients(circor_dev, tmp_path):
    from assistant.data.circor import read_folder
    from assistant.data.split import split_patients

    patients = read_folder(circor_dev)
    val = split_patients(patients).val[:3]
    refs = [r for p in patients if p.patient_id in val for r in p.recordings][:6]
    f1s = []
    for ref in refs:
        result = segment_recording(ref.load())
        f1s.append(np.mean(_f1(ref.segmentation(), result.segmentation)))
    assert np.median(f1s) > 0.9, f1s
    out = tmp_path / "r.tsv"
    res = runner.invoke(app, ["segment", str(refs[0].audio_path), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert read_tsv(out).intervals


@pytest.mark.slow
def test_short_training_run_on_synthetic_data(tmp_path):
    from finetune.segmenter import SegmenterTrainConfig, train

    root = tmp_path / "synth"
    write_circor_folder(root, n_patients=6, seed=9, suffix=".wav", duration=8.0)
    out = train(SegmenterTrainConfig(root, tmp_path / "w", epochs=2, batch_size=8, non_heart=6, synthetic=4,
                                        workers=1, threads=1))
    seg = Segmenter.load(out)
    assert seg.metadata["training"]["recordings"] > 0
    assert (out / "segmenter_training.png").exists()
    result = seg.segment(synthesize(SynthConfig(duration=8.0, seed=2)).recording)
    assert result.states.size == 400
