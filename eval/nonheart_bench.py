"""The non-heart benchmark: recordings that are not heart sounds, and what the analysis calls them.

The set is made here, independently of the generators the segmenter was trained on
(finetune/nonheart.py): speech from espeak-ng (several languages, voices and speeds, clean and over
noise or hum), music (plucked strings, chords and arpeggios, some with a drum beat), five noise
colours at several levels, and mains hum at 50 and 60 Hz with and without harmonics and hiss.
Each clip is analysed as one patient; a correct answer is murmur Unknown. On labelled real patients
the benchmark reports how many calls the gate changes, and which way.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from assistant.data.audio import Recording, load_recording

RATE = 4000
DURATION = 12.0
# espeak-ng voices: language, sentence. Several scripts and prosodies, as patients and clinicians speak.
SPEECH = {
    "en-us": "Please take a deep breath and hold it while I listen to your heart. Now breathe out slowly.",
    "en-gb": "The child has had a cough for three days and a mild fever since yesterday evening.",
    "de": "Bitte atmen Sie tief ein und halten Sie die Luft an. Jetzt können Sie wieder normal atmen.",
    "fr-fr": "Respirez profondément, retenez votre souffle, puis expirez lentement. Merci beaucoup.",
    "es": "Respire hondo y aguante la respiración mientras escucho su corazón. Ahora puede respirar.",
    "pt-br": "Por favor, respire fundo e segure o ar enquanto eu escuto o seu coração com calma.",
    "it": "Faccia un respiro profondo e trattenga il fiato mentre ascolto il suo cuore. Grazie mille.",
    "nl": "Haal diep adem en houd uw adem in terwijl ik naar uw hart luister. Nu mag u weer ademen.",
    "pl": "Proszę wziąć głęboki oddech i wstrzymać powietrze, a teraz proszę powoli wypuścić.",
    "ru": "Пожалуйста, сделайте глубокий вдох и задержите дыхание, пока я слушаю ваше сердце.",
    "cmn": "请深呼吸，然后屏住呼吸，我要听一下你的心脏。现在可以慢慢呼气了。",
    "hi": "कृपया गहरी सांस लें और सांस रोककर रखें, मैं आपके दिल की धड़कन सुन रहा हूँ।",
    "ar": "من فضلك خذ نفسا عميقا واحبس أنفاسك بينما أستمع إلى قلبك. الآن تنفس ببطء.",
    "sw": "Tafadhali vuta pumzi ndefu na uishike wakati ninasikiliza moyo wako. Sasa pumua polepole.",
}
VOICES = ("m1", "f2", "m3", "f4")


@dataclass(frozen=True)
class Clip:
    kind: str
    name: str
    recording: Recording


def _norm(x: np.ndarray, level: float = 0.5) -> np.ndarray:
    return (level * x / (np.max(np.abs(x)) + 1e-12)).astype(np.float32)


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    """`x` repeated or cut to `n` samples."""
    reps = int(np.ceil(n / max(1, len(x))))
    return np.tile(x, reps)[:n]


def noise(colour: str, n: int, rng: np.random.Generator, rate: int = RATE) -> np.ndarray:
    """White, pink, brown, blue or violet noise (power ~ f^0, f^-1, f^-2, f^1, f^2) by spectral shaping."""
    exponent = {"white": 0, "pink": -1, "brown": -2, "blue": 1, "violet": 2}[colour]
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / rate)
    f[0] = f[1]
    return np.fft.irfft(spectrum * f ** (exponent / 2), n)


def hum(base: float, harmonics: tuple[int, ...], n: int, rng: np.random.Generator, rate: int = RATE) -> np.ndarray:
    t = np.arange(n) / rate
    return sum(np.sin(2 * np.pi * base * h * t + rng.uniform(0, 2 * np.pi)) / h for h in harmonics)


def pluck(freq: float, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A Karplus-Strong plucked string."""
    period = max(2, int(RATE / freq))
    buf = rng.uniform(-1, 1, period)
    out = np.empty(int(seconds * RATE))
    for k in range(len(out)):
        out[k] = buf[k % period]
        buf[k % period] = 0.996 * 0.5 * (buf[k % period] + buf[(k + 1) % period])
    return out


def music(style: str, n: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n)
    scale = 220.0 * 2 ** (np.array([0, 2, 4, 5, 7, 9, 11, 12]) / 12)
    t, step = 0, int(rng.uniform(0.18, 0.45) * RATE)
    while t < n:
        if style == "chords":
            notes = rng.choice(scale, 3, replace=False)
            k = np.arange(min(4 * step, n - t)) / RATE
            out[t:t + len(k)] += sum(np.sin(2 * np.pi * f * k) for f in notes) * np.exp(-k / 1.5)
            t += 4 * step
        else:
            note = pluck(float(rng.choice(scale)) * (2 if style == "arpeggio" else 1), step / RATE * 2, rng)
            out[t:t + len(note)] += note[: n - t]
            t += step
    if rng.random() < 0.5 or style == "beat":
        # A kick drum on every beat (60-130 per minute): periodic thumps, the hard case for a heart detector.
        beat = int(RATE * 60 / rng.uniform(60, 130))
        k = np.arange(int(0.15 * RATE)) / RATE
        kick = np.sin(2 * np.pi * (50 + 80 * np.exp(-k / 0.03)) * k) * np.exp(-k / 0.05)
        for at in range(0, n - len(k), beat):
            out[at:at + len(k)] += 2 * kick
    return out


def require_espeak(needed_by: str) -> None:
    """A one-line error naming the Debian package when espeak-ng is not installed."""
    if shutil.which("espeak-ng") is None:
        from assistant.errors import MurmurScopeError

        raise MurmurScopeError(f"espeak-ng is not installed (Debian package espeak-ng); {needed_by} needs it")


def espeak(language: str, voice: str, speed: int, text: str, workdir: Path) -> np.ndarray:
    """`text` spoken by espeak-ng, at 4 kHz."""
    wav = workdir / f"{language}-{voice}-{speed}.wav"
    subprocess.run(["espeak-ng", "-v", f"{language}+{voice}", "-s", str(speed), "-w", str(wav), text],
                   check=True, capture_output=True, timeout=60)
    return load_recording(wav, rate=RATE, limits=_short_ok()).samples


def _short_ok():
    from assistant.data.audio import AudioLimits

    return AudioLimits(min_seconds=0.1)


def nonheart_clips(seed: int = 0, duration: float = DURATION) -> Iterator[Clip]:
    """At least 100 clips: speech (56, of which 14 over noise or hum), music (20), noise (15), hum (15)."""
    require_espeak("the non-heart benchmark")
    rng = np.random.default_rng(seed)
    n = int(duration * RATE)
    with tempfile.TemporaryDirectory() as tmp:
        for k, (lang, text) in enumerate(SPEECH.items()):
            for j, voice in enumerate(VOICES[: 3]):
                speed = int(rng.choice([130, 160, 190]))
                x = _fit(espeak(lang, voice, speed, text, Path(tmp)), n)
                yield Clip("speech", f"{lang}+{voice} {speed} wpm", Recording(_norm(x), RATE))
            voice = VOICES[3]
            x = _fit(espeak(lang, voice, 170, text, Path(tmp)), n)
            background = noise(str(rng.choice(["white", "pink", "brown"])), n, rng) if k % 2 == 0 else hum(
                50.0 if k % 4 == 1 else 60.0, (1, 2, 3), n, rng)
            snr_db = float(rng.uniform(0, 10))
            scale = np.std(x) / (np.std(background) * 10 ** (snr_db / 20) + 1e-12)
            yield Clip("speech over noise", f"{lang}+{voice} at {snr_db:.0f} dB SNR",
                       Recording(_norm(x + scale * background), RATE))
    for k in range(20):
        style = ("plucked", "chords", "arpeggio", "beat")[k % 4]
        yield Clip("music", f"{style} {k}", Recording(_norm(music(style, n, rng)), RATE))
    for colour in ("white", "pink", "brown", "blue", "violet"):
        for level in (0.05, 0.3, 0.9):
            yield Clip("noise", f"{colour} noise at {level:g}", Recording(_norm(noise(colour, n, rng), level), RATE))
    for base in (50.0, 60.0):
        for harmonics in ((1,), (1, 2, 3), (1, 3, 5, 7), (2, 4)):
            yield Clip("hum", f"{base:g} Hz x {harmonics}", Recording(_norm(hum(base, harmonics, n, rng)), RATE))
        for harmonics in ((1,), (1, 2, 3), (1, 3, 5)):
            x = hum(base, harmonics, n, rng) + 0.05 * rng.standard_normal(n)
            yield Clip("hum", f"{base:g} Hz x {harmonics} with hiss", Recording(_norm(x), RATE))
    yield Clip("hum", "50 Hz at 16 kHz", Recording(_norm(hum(50.0, (1,), 4 * n, rng)), 4 * RATE))


@dataclass
class NonHeartResult:
    n_clips: int
    unknown: int
    by_kind: dict[str, dict[str, int]]
    missed: list[dict]
    real: dict | None = None
    clips: list[dict] = field(default_factory=list)

    @property
    def unknown_share(self) -> float:
        return self.unknown / self.n_clips

    def to_dict(self) -> dict:
        return asdict(self) | {"unknown_share": self.unknown_share}


def run_clips(analyzer, seed: int = 0) -> NonHeartResult:
    rows = []
    for clip in nonheart_clips(seed):
        f = analyzer.analyze([clip.recording], guidance=False)
        rows.append({"kind": clip.kind, "name": clip.name, "murmur": f.murmur, "model": f.ungated_murmur or f.murmur,
                     "why": [r.not_heart for r in f.recordings], "evidence": [r.evidence for r in f.recordings],
                     "reliable": [r.segmentation.reliable for r in f.recordings]})
    by_kind: dict[str, Counter] = {}
    for r in rows:
        by_kind.setdefault(r["kind"], Counter())[r["murmur"]] += 1
    missed = [r for r in rows if r["murmur"] != "Unknown"]
    return NonHeartResult(len(rows), len(rows) - len(missed), {k: dict(v) for k, v in by_kind.items()}, missed,
                          clips=rows)


def run_real(analyzer, root: Path, limit: int | None = None, progress: bool = True) -> dict:
    """Each labelled patient's call with and without the gate: how many change, and which way.

    The gate depends on the segmentation alone, so the murmur model runs only for the patients it
    stops: for every other patient the call is the model's, as before.
    """
    from tqdm import tqdm

    from assistant.consult.analyzer import heart_check, recording_gate
    from assistant.data.circor import read_folder
    from assistant.segment.segmenter import NO_CYCLES, segment_recording

    patients = read_folder(root)[:limit]
    changes: Counter = Counter()
    changed, steady, flagged = [], 0, 0
    for p in tqdm(patients, desc="non-heart gate on real patients", unit="patient", disable=not progress):
        recordings = [ref.load() for ref in p.recordings]
        results = [segment_recording(rec, segmenter=analyzer.segmenter) for rec in recordings]
        reasons = [recording_gate(r) for r in results]
        flagged += sum(1 for r, why in zip(results, reasons) if r.reliable and why)
        steady += sum(1 for r in results if not r.reliable and r.message != NO_CYCLES)
        if heart_check(results) is None:
            continue
        before = analyzer.murmur_model.predict_recordings(recordings, patient_id=p.patient_id).murmur
        if before != "Unknown":
            changes[f"{before} -> Unknown"] += 1
            changed.append({"patient_id": p.patient_id, "label": p.labels.murmur if p.labels else None,
                            "before": before, "after": "Unknown", "reasons": reasons})
    n_recordings = sum(len(p.recordings) for p in patients)
    return {"patients": len(patients), "recordings": n_recordings, "changed": len(changed),
            "changed_share": len(changed) / max(1, len(patients)), "changes": dict(changes), "which": changed,
            "recordings_flagged_by_the_gate_despite_reliable_cycles": flagged,
            "recordings_refused_by_the_segmenter_as_steady": steady}


def write(result: NonHeartResult, out: Path) -> None:
    out.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
