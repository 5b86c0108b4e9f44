"""CirCor murmur-feature Q&A for the audio-LLM: cycle-aligned 16 kHz clips paired with one question each.

Output folder (loads with `datasets.load_dataset("json", data_files=...)`):
    train.jsonl, val.jsonl   one row per (clip, question): audio path relative to the folder, answer
    clips/*.wav              16 kHz mono PCM clips of whole heart cycles, at most `max_clip_seconds`
    meta.json                the config, row counts and where the cycle boundaries came from

Cycle boundaries come from the segmenter (`assistant.segment.segmenter`), falling back to the expert `.tsv`
annotation for recordings where it finds no reliable cycle; every row's `cycle_source` says which.

Which questions a clip gets:
- murmur Present and the site is one of the patient's murmur locations: all 12 questions, answered
  with the patient's labels ("no diastolic murmur" where CirCor has none);
- Present but this site is not a murmur location: "is there a murmur?" -> Absent;
- Absent: "is there a murmur?", "where is it loudest?" -> "no murmur", and one systolic and one
  diastolic question (drawn at random) -> "no systolic/diastolic murmur", so the negatives do not
  swamp the feature answers;
- Unknown: "is there a murmur?" -> Unknown only (the recording is too poor to describe).
The project split (`assistant.data.split`) decides each patient's side, so no patient is on both.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from assistant.data.audio import Recording, write_recording
from assistant.data.circor import Patient, RecordingRef, read_folder
from assistant.data.labels import FEATURES
from assistant.data.segmentation import Segmentation, complete_cycles
from assistant.data.split import SplitConfig, split_patients
from assistant.errors import DatasetError
from assistant.llm.prompts import PHRASINGS, PRESENCE, answer

CLIP_RATE = 16_000
# Longer gaps between S1 onsets are annotation holes, not heart cycles (20 bpm).
MAX_CYCLE_SECONDS = 3.0


@dataclass(frozen=True)
class QAConfig:
    circor_root: Path = field(metadata={"help": "CirCor root (training layout: labels and .tsv)."})
    out: Path = field(metadata={"help": "Folder to write (must not hold a Q&A set)."})
    max_clip_seconds: float = field(default=30.0, metadata={"help": "Longest clip (whole cycles), at most 30 s."})
    clips_per_recording: int = field(default=1, metadata={"help": "Clips cut from each recording (longest first)."})
    max_patients: int | None = field(default=None, metadata={"help": "Use only this many patients (smoke runs)."})
    seed: int = field(default=0, metadata={"help": "Seed for question phrasings and negative questions."})
    val_fraction: float = field(default=SplitConfig.val_fraction, metadata={
        "help": "The project split's validation fraction."})
    split_seed: int = field(default=SplitConfig.seed, metadata={"help": "The project split's seed."})


@dataclass(frozen=True)
class QASummary:
    out: Path
    rows: dict[str, int]
    clips: int
    patients: dict[str, int]
    cycle_sources: dict[str, int]
    skipped_recordings: int


def annotation_cycles(seg: Segmentation) -> list[tuple[float, float]]:
    """The annotation's complete heart cycles (S1 onset to the next S1 onset), at most MAX_CYCLE_SECONDS each."""
    return [(c.start, c.end) for c in complete_cycles(seg) if c.end - c.start <= MAX_CYCLE_SECONDS]


def recording_cycles(ref: RecordingRef, recording: Recording) -> tuple[list[tuple[float, float]], str]:
    """Cycle boundaries and where they came from.

    The segmenter's, as at consultation time (the model then hears clips cut the way it will be
    asked about them); the expert `.tsv` annotation only when the segmenter finds no reliable cycle.
    """
    from assistant.segment.segmenter import segment_recording

    result = segment_recording(recording)
    cycles = [(a, b) for a, b in result.cycles() if b - a <= MAX_CYCLE_SECONDS]
    if result.reliable and cycles:
        return cycles, "segmenter"
    seg = ref.segmentation()
    if seg is not None:
        return annotation_cycles(seg), "tsv"
    return [], "none"


def group_cycles(cycles: list[tuple[float, float]], max_seconds: float) -> list[tuple[float, float]]:
    """Runs of back-to-back cycles, each run as long as possible without exceeding `max_seconds`."""
    clips: list[tuple[float, float]] = []
    start = end = None
    for a, b in cycles:
        if b - a > max_seconds:
            continue
        if start is not None and abs(a - end) < 1e-3 and b - start <= max_seconds:
            end = b
            continue
        if start is not None:
            clips.append((start, end))
        start, end = a, b
    if start is not None:
        clips.append((start, end))
    return clips


def clip_questions(patient: Patient, site: str | None, rng: np.random.Generator) -> list[tuple[str, str]]:
    """(feature, answer) pairs for one clip of `patient` recorded at `site`."""
    labels = patient.labels
    if labels is None:
        return []
    if labels.murmur == "Unknown":
        return [(PRESENCE, "Unknown")]
    if labels.murmur == "Present":
        if site not in labels.murmur_locations:
            return [(PRESENCE, "Absent")]
        return [(PRESENCE, "Present")] + [(f, answer(f, labels.feature(f))) for f in FEATURES]
    systolic = [f for f in FEATURES if f.startswith("systolic")]
    diastolic = [f for f in FEATURES if f.startswith("diastolic")]
    picked = ["most_audible_location", str(rng.choice(systolic)), str(rng.choice(diastolic))]
    return [(PRESENCE, "Absent")] + [(f, answer(f, None)) for f in picked]


def _patients(config: QAConfig) -> tuple[list[Patient], dict[str, str]]:
    patients = [p for p in read_folder(config.circor_root) if p.labels is not None]
    if not patients:
        raise DatasetError(f"{config.circor_root}: no labelled patients (the Q&A needs CirCor's training layout)")
    split = split_patients(patients, SplitConfig(config.val_fraction, config.split_seed))
    side = {p.patient_id: split.side(p.patient_id) for p in patients}
    if config.max_patients is not None:
        # Alternate sides so a small run still has both train and val patients.
        train = [p for p in patients if side[p.patient_id] == "train"]
        val = [p for p in patients if side[p.patient_id] == "val"]
        mixed = [p for pair in zip(train, val) for p in pair] + train[len(val):] + val[len(train):]
        patients = mixed[: config.max_patients]
    return patients, side


def build_qa(config: QAConfig) -> QASummary:
    out = Path(config.out)
    if any((out / name).exists() for name in ("train.jsonl", "val.jsonl", "clips")):
        raise DatasetError(f"{out}: already holds a Q&A set; choose an empty folder")
    if not 1.0 <= config.max_clip_seconds <= 30.0:
        raise DatasetError("max_clip_seconds must lie between 1 and 30 (Qwen2-Audio hears at most 30 s)")
    patients, side = _patients(config)
    rng = np.random.default_rng(config.seed)
    (out / "clips").mkdir(parents=True)
    rows: dict[str, list[dict]] = {"train": [], "val": []}
    sources: Counter[str] = Counter()
    skipped = n_clips = 0
    for patient in tqdm(patients, desc="Q&A", unit="patient"):
        for ref in patient.recordings:
            recording = ref.load(rate=CLIP_RATE)
            cycles, source = recording_cycles(ref, recording)
            clips = group_cycles(cycles, config.max_clip_seconds)
            if not clips:
                skipped += 1
                continue
            sources[source] += 1
            clips.sort(key=lambda c: c[0] - c[1])  # longest first
            for start, end in clips[: config.clips_per_recording]:
                a, b = int(round(start * CLIP_RATE)), int(round(end * CLIP_RATE))
                clip_name = f"{ref.name}_{a}_{b}.wav"
                write_recording(out / "clips" / clip_name, Recording(recording.samples[a:b], CLIP_RATE))
                n_clips += 1
                n_cycles = sum(1 for c in cycles if c[0] >= start - 1e-3 and c[1] <= end + 1e-3)
                for feature, reply in clip_questions(patient, ref.site, rng):
                    variant = int(rng.integers(len(PHRASINGS[feature])))
                    rows[side[patient.patient_id]].append({
                        "id": f"{clip_name[:-4]}_{feature}",
                        "patient_id": patient.patient_id,
                        "site": ref.site,
                        "audio": f"clips/{clip_name}",
                        "start_s": round(start, 4),
                        "end_s": round(end, 4),
                        "n_cycles": n_cycles,
                        "cycle_source": source,
                        "feature": feature,
                        "question": PHRASINGS[feature][variant],
                        "answer": reply,
                    })
    for name, part in rows.items():
        with (out / f"{name}.jsonl").open("w") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in part)
    summary = QASummary(
        out=out,
        rows={k: len(v) for k, v in rows.items()},
        clips=n_clips,
        patients={k: len({r["patient_id"] for r in v}) for k, v in rows.items()},
        cycle_sources=dict(sources),
        skipped_recordings=skipped,
    )
    meta = {"config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()}}
    meta.update({k: v for k, v in asdict(summary).items() if k != "out"})
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return summary


def conversations(rows: list[dict], seed: int = 0) -> list[dict]:
    """One row per clip with all of its questions as `turns`, in clip order.

    Each clip's turns are in an order shuffled by the clip's seed. The collator lets every turn see only the
    audio prefix (`finetune.audio_collator`), so the order sets the layout only; it is kept so that the
    shipped model's run repeats batch for batch.
    """
    by_clip: dict[str, list[dict]] = {}
    for r in rows:
        by_clip.setdefault(r["audio"], []).append(r)
    out = []
    for audio, group in by_clip.items():
        rng = np.random.default_rng([seed, *audio.encode()])
        order = rng.permutation(len(group))
        first = group[0]
        out.append({"id": Path(audio).stem, "patient_id": first["patient_id"], "site": first["site"], "audio": audio,
                    "turns": [{"feature": group[i]["feature"], "question": group[i]["question"],
                               "answer": group[i]["answer"]} for i in order]})
    return out
