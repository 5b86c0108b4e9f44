"""Synthetic phonocardiograms with ground-truth segmentation and CirCor labels.

For tests and the demo only; evaluation never uses them. Each beat has an S1 (mitral and
tricuspid components, 20-35 Hz apart in time) and an S2 (aortic and pulmonary components whose
split widens with inspiration), made of damped low-frequency sinusoids. Heart rate varies beat to
beat; breathing adds a slow low-frequency rumble and the sensor adds white noise. A murmur is
band-limited noise (blowing, harsh) or a harmonic tone (musical), shaped by its timing window and
envelope, with loudness set by its grade and frequency band set by its pitch.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy.signal import butter, sosfilt

from assistant.data.audio import Recording, write_recording
from assistant.data.labels import FEATURES, LOCATIONS, Demographics, PatientLabels
from assistant.data.segmentation import Segmentation, State, write_tsv

PITCH_BANDS = {"Low": (30.0, 120.0), "Medium": (100.0, 300.0), "High": (250.0, 600.0)}
SYSTOLIC_WINDOWS = {
    "Early-systolic": (0.0, 0.45),
    "Mid-systolic": (0.25, 0.75),
    "Late-systolic": (0.55, 1.0),
    "Holosystolic": (0.0, 1.0),
}
DIASTOLIC_WINDOWS = {"Early-diastolic": (0.0, 0.4), "Mid-diastolic": (0.3, 0.7), "Holodiastolic": (0.0, 1.0)}
# Murmur peak amplitude relative to the S1 peak, by grade.
GRADE_GAIN = {"I/VI": 0.12, "II/VI": 0.22, "III/VI": 0.4, "I/IV": 0.12, "II/IV": 0.22, "III/IV": 0.4}


@dataclass(frozen=True)
class Murmur:
    """One murmur in CirCor's vocabulary; `phase` is 'systolic' or 'diastolic'."""

    phase: str = "systolic"
    timing: str = "Holosystolic"
    shape: str = "Plateau"
    grading: str = "II/VI"
    pitch: str = "Medium"
    quality: str = "Blowing"


@dataclass(frozen=True)
class SynthConfig:
    rate: int = 4000
    duration: float = 20.0
    heart_rate: float = 90.0
    hrv: float = 0.03
    breathing_rate: float = 0.3
    breathing_level: float = 0.05
    snr_db: float = 30.0
    murmurs: tuple[Murmur, ...] = ()
    murmur_gain: float = 1.0
    seed: int = 0


@dataclass(frozen=True)
class SyntheticPCG:
    recording: Recording
    segmentation: Segmentation
    heart_rate: float


def _envelope(shape: str, n: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n)
    if shape == "Crescendo":
        env = 0.15 + 0.85 * t
    elif shape == "Decrescendo":
        env = 1.0 - 0.85 * t
    elif shape == "Diamond":
        env = 1.0 - np.abs(2 * t - 1) * 0.85
    else:
        env = np.ones(n)
    ramp = min(n // 2, 20)  # 5 ms at 4 kHz: no click at the edges
    if ramp:
        env[:ramp] *= np.linspace(0, 1, ramp)
        env[-ramp:] *= np.linspace(1, 0, ramp)
    return env


def _murmur_texture(m: Murmur, n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    lo, hi = PITCH_BANDS[m.pitch]
    hi = min(hi, rate / 2 * 0.95)
    t = np.arange(n) / rate
    if m.quality == "Musical":
        f0 = rng.uniform(lo, (lo + hi) / 2)
        x = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 2 * np.pi)) / k for k in (1, 2, 3))
    else:
        if m.quality == "Harsh":
            lo, hi = lo * 0.7, min(hi * 1.5, rate / 2 * 0.95)
        sos = butter(4, [lo, hi], btype="band", fs=rate, output="sos")
        x = sosfilt(sos, rng.standard_normal(n + 400))[400:]
        if m.quality == "Harsh":
            # Rough texture: fast irregular amplitude modulation.
            x *= 1.0 + 0.6 * np.sign(np.sin(2 * np.pi * rng.uniform(25, 45) * t))
    return x / (np.max(np.abs(x)) + 1e-9)


def _sound(n: int, rate: int, freq: float, decay: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / rate
    return np.sin(2 * np.pi * freq * t + rng.uniform(0, 0.5)) * np.exp(-t / decay) * (1 - np.exp(-t / 0.003))


def synthesize(config: SynthConfig = SynthConfig()) -> SyntheticPCG:
    rng = np.random.default_rng(config.seed)
    rate = config.rate
    n_total = int(round(config.duration * rate))
    x = np.zeros(n_total)
    states = np.zeros(n_total, dtype=np.int8)
    t = rng.uniform(0.0, 0.3)
    period_mean = 60.0 / config.heart_rate
    breath_phase = rng.uniform(0, 2 * np.pi)
    while True:
        period = period_mean * (1 + config.hrv * rng.standard_normal())
        s1_len = rng.uniform(0.10, 0.14)
        s2_len = rng.uniform(0.08, 0.11)
        sys_len = max(0.06, 0.35 * np.sqrt(period) - s1_len + rng.normal(0, 0.01))
        dia_len = period - s1_len - sys_len - s2_len
        if dia_len < 0.08:
            dia_len = 0.08
        if t + s1_len + sys_len + s2_len + dia_len > config.duration:
            break
        bounds = np.cumsum([t, s1_len, sys_len, s2_len, dia_len])
        idx = np.round(bounds * rate).astype(int)
        for k, st in enumerate((State.S1, State.SYSTOLE, State.S2, State.DIASTOLE)):
            states[idx[k] : idx[k + 1]] = int(st)
        # S1: mitral then tricuspid closure.
        seg = idx[1] - idx[0]
        split = int(rng.uniform(0.015, 0.03) * rate)
        s1 = _sound(seg, rate, rng.uniform(35, 55), 0.025, rng)
        s1[split:] += 0.6 * _sound(seg - split, rate, rng.uniform(40, 60), 0.02, rng)
        x[idx[0] : idx[1]] += s1 * rng.uniform(0.85, 1.0)
        # S2: aortic then pulmonary closure, split widening with inspiration.
        seg = idx[3] - idx[2]
        breath = 0.5 * (1 + np.sin(2 * np.pi * config.breathing_rate * t + breath_phase))
        split = int((0.01 + 0.03 * breath) * rate)
        s2 = _sound(seg, rate, rng.uniform(55, 80), 0.018, rng)
        s2[split:] += 0.5 * _sound(seg - split, rate, rng.uniform(50, 70), 0.015, rng)
        x[idx[2] : idx[3]] += s2 * rng.uniform(0.6, 0.8)
        for m in config.murmurs:
            if m.phase == "systolic":
                a, b = idx[1], idx[2]
                lo, hi = SYSTOLIC_WINDOWS[m.timing]
            else:
                a, b = idx[3], idx[4]
                lo, hi = DIASTOLIC_WINDOWS[m.timing]
            start = a + int(lo * (b - a))
            stop = a + int(hi * (b - a))
            if stop - start < 8:
                continue
            n = stop - start
            gain = GRADE_GAIN[m.grading] * config.murmur_gain * rng.uniform(0.9, 1.1)
            x[start:stop] += gain * _envelope(m.shape, n) * _murmur_texture(m, n, rate, rng)
        t = bounds[-1]
    # Breathing: slow, low-pass rumble.
    tt = np.arange(n_total) / rate
    sos = butter(2, 60, btype="low", fs=rate, output="sos")
    rumble = sosfilt(sos, rng.standard_normal(n_total))
    rumble *= (0.5 + 0.5 * np.sin(2 * np.pi * config.breathing_rate * tt + breath_phase)) / (np.std(rumble) + 1e-9)
    x += config.breathing_level * rumble
    signal_power = np.mean(x[states > 0] ** 2) if np.any(states > 0) else np.mean(x**2)
    x += rng.standard_normal(n_total) * np.sqrt(signal_power / 10 ** (config.snr_db / 10))
    x = (0.7 * x / (np.max(np.abs(x)) + 1e-9)).astype(np.float32)
    return SyntheticPCG(
        recording=Recording(x, rate, source="<synthetic>"),
        segmentation=Segmentation.from_states(states, rate),
        heart_rate=config.heart_rate,
    )


@dataclass(frozen=True)
class SyntheticPatient:
    patient_id: str
    labels: PatientLabels
    recordings: dict[str, SyntheticPCG] = field(default_factory=dict)


def random_labels(rng: np.random.Generator, murmur: str | None = None) -> tuple[PatientLabels, tuple[Murmur, ...]]:
    """A patient's labels and the murmurs that realise them (diastolic ones are rare, as in CirCor)."""
    murmur = murmur or rng.choice(["Present", "Absent", "Absent", "Unknown"])
    if murmur != "Present":
        return PatientLabels(murmur=str(murmur)), ()
    pick = {k: str(rng.choice(v)) for k, v in FEATURES.items()}
    sys_m = Murmur(
        "systolic",
        pick["systolic_timing"],
        pick["systolic_shape"],
        pick["systolic_grading"],
        pick["systolic_pitch"],
        pick["systolic_quality"],
    )
    murmurs = [sys_m]
    diastolic = rng.random() < 0.1
    if diastolic:
        murmurs.append(
            Murmur(
                "diastolic",
                pick["diastolic_timing"],
                pick["diastolic_shape"],
                pick["diastolic_grading"],
                pick["diastolic_pitch"],
                pick["diastolic_quality"],
            )
        )
    labels = PatientLabels(
        murmur="Present",
        murmur_locations=tuple(LOCATIONS),
        most_audible_location=pick["most_audible_location"],
        **{k: v for k, v in pick.items() if k.startswith("systolic")},
        **({k: v for k, v in pick.items() if k.startswith("diastolic")} if diastolic else {}),
    )
    return labels, tuple(murmurs)


def synth_patient(patient_id: str, seed: int, murmur: str | None = None, duration: float = 20.0) -> SyntheticPatient:
    rng = np.random.default_rng(seed)
    labels, murmurs = random_labels(rng, murmur)
    heart_rate = float(rng.uniform(65, 130))
    recordings = {}
    for k, site in enumerate(LOCATIONS):
        # The murmur is loudest at the labelled site and fainter elsewhere.
        gain = 1.0 if site == labels.most_audible_location else 0.55
        cfg = SynthConfig(
            duration=duration,
            heart_rate=heart_rate,
            murmurs=murmurs,
            murmur_gain=gain,
            snr_db=float(rng.uniform(18, 35)) if labels.murmur != "Unknown" else 3.0,
            seed=seed * 10 + k,
        )
        pcg = synthesize(cfg)
        source = f"<synthetic {patient_id}_{site}>"
        recordings[site] = replace(
            pcg, recording=replace(pcg.recording, site=site, patient_id=patient_id, source=source)
        )
    return SyntheticPatient(patient_id, labels, recordings)


def write_circor_folder(
    root: str | Path,
    n_patients: int = 8,
    seed: int = 0,
    suffix: str = ".wav",
    duration: float = 20.0,
    with_labels: bool = True,
) -> list[SyntheticPatient]:
    """Write a CirCor-layout folder: `P.txt`, `P_SITE{suffix}`, `.tsv`, `.hea`, `training_data.csv`.

    With `with_labels=False` it writes the Challenge's inference layout instead: no labels in the
    headers, no `.tsv`, no `training_data.csv`.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    murmur_cycle = ["Present", "Absent", "Unknown", "Absent"]
    patients = []
    rows = []
    for i in range(n_patients):
        pid = str(10000 + seed * 1000 + i)
        p = synth_patient(pid, seed=seed * 100_003 + i, murmur=murmur_cycle[i % 4], duration=duration)
        patients.append(p)
        lines = [f"{pid} {len(p.recordings)} 4000"]
        for site, pcg in p.recordings.items():
            stem = f"{pid}_{site}"
            write_recording(root / f"{stem}{suffix}", pcg.recording)
            (root / f"{stem}.hea").write_text(
                f"{stem} 1 4000 {len(pcg.recording.samples)}\n{stem}.wav 16+44 1 16 0 0 0 0 {site}\n"
            )
            if with_labels:
                write_tsv(root / f"{stem}.tsv", pcg.segmentation)
                lines.append(f"{site} {stem}.hea {stem}.wav {stem}.tsv")
            else:
                lines.append(f"{site} {stem}.hea {stem}.wav")
        demo = Demographics(age="Child", sex="Female" if i % 2 else "Male", height_cm=110.0, weight_kg=20.0,
                            pregnant=False, campaign="CC2015")
        lines += [f"#Age: {demo.age}", f"#Sex: {demo.sex}", f"#Height: {demo.height_cm}", f"#Weight: {demo.weight_kg}",
                  "#Pregnancy status: False"]
        if with_labels:
            lines += p.labels.header_lines()
        lines += [f"#Campaign: {demo.campaign}", "#Additional ID: nan"]
        (root / f"{pid}.txt").write_text("\n".join(lines) + "\n")
        rows.append((pid, "+".join(p.recordings), demo, p.labels))
    if with_labels:
        with (root / "training_data.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["Patient ID", "Locations", "Age", "Sex", "Height", "Weight", "Pregnancy status", "Murmur",
                        "Murmur locations", "Most audible location", "Systolic murmur timing", "Systolic murmur shape",
                        "Systolic murmur grading", "Systolic murmur pitch", "Systolic murmur quality",
                        "Diastolic murmur timing", "Diastolic murmur shape", "Diastolic murmur grading",
                        "Diastolic murmur pitch", "Diastolic murmur quality", "Campaign", "Additional ID"])
            for pid, locs, demo, lab in rows:
                feats = [lab.feature(k) or "nan" for k in FEATURES]
                w.writerow([pid, locs, demo.age, demo.sex, demo.height_cm, demo.weight_kg, False, lab.murmur,
                            "+".join(lab.murmur_locations) or "nan", *feats, demo.campaign, "nan"])
    return patients
