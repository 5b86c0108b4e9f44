"""Batches of (audio clip, question, answer) rows for Qwen2-Audio, with labels on the answer only.

TRL's SFTTrainer has no audio path, so this collator does what its vision collator does for images:
render the chat template, run the Qwen2-Audio processor on text and audio together (it expands the
one `<|AUDIO|>` placeholder to as many tokens as the clip yields), and mask every label except the
answer and the `<|im_end|>` that closes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from assistant.data.audio import resample
from assistant.llm.prompts import SYSTEM_PROMPT

AUDIO_RATE = 16_000
IGNORE_INDEX = -100


def prompt_messages(question: str) -> list[dict]:
    """The conversation up to the answer; the served client sends the same (see assistant.llm.client)."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": [{"type": "audio"}, {"type": "text", "text": question}]},
    ]


def load_clip(path: Path) -> np.ndarray:
    samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    samples = samples.mean(axis=1)
    return resample(samples, rate, AUDIO_RATE) if rate != AUDIO_RATE else samples


@dataclass
class AudioQACollator:
    processor: object  # Qwen2AudioProcessor
    data_dir: Path

    def __post_init__(self):
        self.tokenizer = self.processor.tokenizer
        self.tokenizer.padding_side = "right"
        self.end_token = self.tokenizer.eos_token or "<|im_end|>"

    def render(self, question: str) -> str:
        return self.processor.apply_chat_template(prompt_messages(question), tokenize=False,
                                                  add_generation_prompt=True)

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        texts = [self.render(r["question"]) + r["answer"] + self.end_token for r in rows]
        audios = [load_clip(self.data_dir / r["audio"]) for r in rows]
        batch = self.processor(text=texts, audio=audios, sampling_rate=AUDIO_RATE, padding=True,
                               return_tensors="pt")
        labels = torch.full_like(batch["input_ids"], IGNORE_INDEX)
        lengths = batch["attention_mask"].sum(-1).tolist()
        for i, r in enumerate(rows):
            target = self.tokenizer(r["answer"] + self.end_token, add_special_tokens=False)["input_ids"]
            end = int(lengths[i])
            start = end - len(target)
            # The answer is the text's tail; if tokenisation merged it with the prompt the mask would be wrong.
            if batch["input_ids"][i, start:end].tolist() != target:
                raise ValueError(f"answer tokens of row {r.get('id', i)} are not the tail of its input")
            labels[i, start:end] = batch["input_ids"][i, start:end]
        batch["labels"] = labels
        batch.pop("num_audio_tokens", None)
        return dict(batch)
