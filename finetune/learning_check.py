"""Learning check: a micro Qwen2-Audio trained from scratch must hear a synthetic murmur's pitch.

It trains every weight of a random micro model (the same tiny-model builder, 5 s windows) with the
real SFT path (Q&A JSONL, `AudioQACollator`, TRL's SFTTrainer) on synthetic phonocardiograms whose
systolic murmur is absent, low-pitched or high-pitched, then asks "What is the pitch of the systolic
murmur?" about held-out clips with greedy generation and parses the replies with
`parse_answer`. Chance is 1/3. Accuracy clearly above that is only reachable if the labels are
masked to the answer, the audio tokens line up with the clip, and the chat template matches.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from assistant.data.audio import Recording, write_recording
from assistant.data.synth import Murmur, SynthConfig, synthesize
from assistant.llm.prompts import answer, parse_answer, question

FEATURE = "systolic_pitch"
CLASSES = (None, "Low", "High")
CLIP_SECONDS = 4.0


@dataclass(frozen=True)
class LearningCheckConfig:
    work: Path
    train_clips: int = 480
    test_clips: int = 60
    steps: int = 600
    batch_size: int = 8
    learning_rate: float = 3e-3
    torch_threads: int | None = 1
    seed: int = 0


@dataclass(frozen=True)
class LearningCheckResult:
    accuracy: float
    chance: float
    n_test: int
    final_loss: float
    train_seconds: float
    confusion: dict[str, dict[str, int]]


def _clip(label: str | None, seed: int) -> Recording:
    murmurs = () if label is None else (Murmur("systolic", "Holosystolic", "Plateau", "III/VI", label, "Blowing"),)
    rng = np.random.default_rng(seed)
    cfg = SynthConfig(duration=CLIP_SECONDS, heart_rate=float(rng.uniform(60, 120)), murmurs=murmurs,
                      snr_db=float(rng.uniform(20, 35)), seed=seed)
    return synthesize(cfg).recording.resampled(16_000)


def write_synthetic_qa(root: Path, n_train: int, n_test: int, seed: int) -> None:
    """A Q&A folder in `murmurscope finetune qa`'s format, about synthetic clips."""
    (root / "clips").mkdir(parents=True, exist_ok=True)
    for split, n, offset in (("train", n_train, 0), ("val", n_test, 1_000_000)):
        rows = []
        for i in range(n):
            label = CLASSES[i % len(CLASSES)]
            clip_seed = seed * 10_000_000 + offset + i
            name = f"clips/{split}_{i}.wav"
            write_recording(root / name, _clip(label, clip_seed))
            rows.append({"id": f"{split}_{i}", "audio": name, "feature": FEATURE,
                         "question": question(FEATURE, i // len(CLASSES)), "answer": answer(FEATURE, label)})
        with (root / f"{split}.jsonl").open("w") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in rows)


def evaluate(model_dir: Path, data: Path) -> tuple[float, dict[str, dict[str, int]], int]:
    """Greedy answers of the trained model on `data`/val.jsonl, parsed to labels; (accuracy, confusion, n)."""
    import torch
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

    from finetune.audio_collator import AUDIO_RATE, load_clip, prompt_messages

    processor = AutoProcessor.from_pretrained(model_dir)
    model = Qwen2AudioForConditionalGeneration.from_pretrained(model_dir).eval()
    rows = [json.loads(line) for line in (data / "val.jsonl").read_text().splitlines()]
    confusion: dict[str, dict[str, int]] = {}
    correct = 0
    for r in tqdm(rows, desc="held-out answers", unit="clip"):
        prompt = processor.apply_chat_template(prompt_messages(r["question"]), tokenize=False,
                                               add_generation_prompt=True)
        inputs = processor(text=[prompt], audio=[load_clip(data / r["audio"])], sampling_rate=AUDIO_RATE,
                           return_tensors="pt")
        inputs.pop("num_audio_tokens", None)
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
        raw = processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        truth, said = parse_answer(FEATURE, r["answer"]), parse_answer(FEATURE, raw)
        confusion.setdefault(truth, {}).setdefault(said, 0)
        confusion[truth][said] += 1
        correct += truth == said
    return correct / len(rows), confusion, len(rows)


def run_learning_check(config: LearningCheckConfig) -> LearningCheckResult:
    from finetune.sft import AudioSFTConfig, train
    from finetune.tiny_model import TinyModelConfig, write_tiny_model

    work = Path(config.work)
    data, base, trained = work / "qa", work / "micro", work / "trained"
    write_synthetic_qa(data, config.train_clips, config.test_clips, config.seed)
    write_tiny_model(TinyModelConfig(base, hidden_size=64, heads=1, audio_hidden_size=64, window_seconds=5,
                                     seed=config.seed))
    result = train(AudioSFTConfig(
        model=str(base), data=data, out=trained, lora=False, max_steps=config.steps, batch_size=config.batch_size,
        grad_accum=1, learning_rate=config.learning_rate, warmup_ratio=0.05, logging_steps=max(1, config.steps // 20),
        seed=config.seed, torch_threads=config.torch_threads,
    ))
    accuracy, confusion, n = evaluate(trained, data)
    return LearningCheckResult(accuracy, 1 / len(CLASSES), n, result.losses[-1], result.runtime_s, confusion)
