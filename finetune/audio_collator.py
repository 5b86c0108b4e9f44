"""Batches of Q&A rows for Qwen2-Audio, with labels on the answers only.

A row is one clip with either one `question`/`answer` or several `turns` (all the questions about the same
clip, `finetune.qa.conversations`). Turns make one sequence per clip, so the clip is encoded once for all its
questions: the system prompt and the audio once, then every turn as a branch that attends to that prefix and
to itself only, with positions restarting at the prefix's end. Each branch then sees exactly the tokens, at
exactly the positions, of the single question a client sends (`assistant.llm.client`), so no answer can lean
on another turn's answer instead of the audio. (A chained chat, each answer seeing the turns before it, taught
the shipped model's first version to answer from those turns: asked alone, it said "no systolic murmur" to 19
of 30 Present training clips.)

TRL's SFTTrainer has no audio path, so this collator does what its vision collator does for images:
render the chat template, run the Qwen2-Audio processor on text and audio together (it expands the
one `<|AUDIO|>` placeholder to as many tokens as the clip yields), and mask every label except each
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


def turns_of(row: dict) -> list[dict]:
    return row.get("turns") or [{"feature": row.get("feature"), "question": row["question"], "answer": row["answer"]}]


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

        self.answer_opening = self.tokenizer("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
        self.end_id = self.tokenizer.convert_tokens_to_ids(self.end_token)

    def render(self, turn: dict) -> str:
        return self.processor.apply_chat_template(
            prompt_messages(turn["question"]) + [{"role": "assistant", "content": turn["answer"]}], tokenize=False)

    def answer_spans(self, ids: list[int]) -> list[tuple[int, int]]:
        """[start, end) of each assistant reply, its closing <|im_end|> included."""
        spans, n, i = [], len(self.answer_opening), 0
        while i + n <= len(ids):
            if ids[i : i + n] == self.answer_opening:
                start = i + n
                end = ids.index(self.end_id, start) + 1
                spans.append((start, end))
                i = end
            else:
                i += 1
        return spans

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        if any("turns" in r for r in rows):
            return self.branched(rows)
        turns = [turns_of(r) for r in rows]
        texts = [self.render(t[0]) for t in turns]
        audios = [load_clip(self.data_dir / r["audio"]) for r in rows]
        batch = self.processor(text=texts, audio=audios, sampling_rate=AUDIO_RATE, padding=True,
                               return_tensors="pt")
        labels = torch.full_like(batch["input_ids"], IGNORE_INDEX)
        for i, r in enumerate(rows):
            ids = batch["input_ids"][i].tolist()
            spans = self.answer_spans(ids)
            targets = [self.tokenizer(t["answer"] + self.end_token, add_special_tokens=False)["input_ids"]
                       for t in turns[i]]
            # If tokenisation merged an answer with its surroundings the mask would be wrong: refuse the row.
            if [ids[a:b] for a, b in spans] != targets:
                raise ValueError(f"answer tokens of row {r.get('id', i)} do not match its answers")
            for a, b in spans:
                labels[i, a:b] = batch["input_ids"][i, a:b]
        batch["labels"] = labels
        batch.pop("num_audio_tokens", None)
        return dict(batch)

    def single_turn(self, turn: dict) -> tuple[str, str]:
        """(prefix, branch): the served prompt up to its question, and the question, reply opening and answer."""
        text = self.render(turn)
        cut = text.index(turn["question"], text.index("<|audio_eos|>"))
        return text[:cut], text[cut:]

    def branched(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        tok = self.tokenizer
        prefixes, branches = [], []
        for r in rows:
            pieces = [self.single_turn(t) for t in turns_of(r)]
            if len({p for p, _ in pieces}) != 1:
                raise ValueError(f"turns of row {r.get('id')} do not share one prompt prefix")
            prefix = pieces[0][0]
            branch_ids = [tok(b, add_special_tokens=False)["input_ids"] for _, b in pieces]
            # Each branch must tokenise as it does inside the whole served prompt, or training would see other ids.
            head = tok(prefix, add_special_tokens=False)["input_ids"]
            for (_, b), ids in zip(pieces, branch_ids):
                if tok(prefix + b, add_special_tokens=False)["input_ids"] != head + ids:
                    raise ValueError(f"row {r.get('id')}: a turn tokenises differently after the prompt prefix")
            prefixes.append(prefix)
            branches.append(branch_ids)
        audios = [load_clip(self.data_dir / r["audio"]) for r in rows]
        head = self.processor(text=prefixes, audio=audios, sampling_rate=AUDIO_RATE, padding=True, return_tensors="pt")
        seqs, segments, positions, labels = [], [], [], []
        for i, r in enumerate(rows):
            prefix = head["input_ids"][i][head["attention_mask"][i].bool()].tolist()
            n = len(prefix)
            ids, seg, pos, lab = list(prefix), [0] * n, list(range(n)), [IGNORE_INDEX] * n
            for k, (b, t) in enumerate(zip(branches[i], turns_of(r)), start=1):
                (a, e), = self.answer_spans(b)
                if b[a:e] != tok(t["answer"] + self.end_token, add_special_tokens=False)["input_ids"]:
                    raise ValueError(f"answer tokens of row {r.get('id', i)} do not match its answers")
                ids += b
                seg += [k] * len(b)
                pos += range(n, n + len(b))
                lab += [IGNORE_INDEX] * a + b[a:e] + [IGNORE_INDEX] * (len(b) - e)
            seqs.append(ids)
            segments.append(seg)
            positions.append(pos)
            labels.append(lab)
        width = max(map(len, seqs))

        def pad(xs: list[list[int]], value: int) -> torch.Tensor:
            return torch.tensor([x + [value] * (width - len(x)) for x in xs])

        seg = pad(segments, -1)
        causal = torch.ones(width, width, dtype=torch.bool).tril()
        same = (seg[:, None, :] == 0) | (seg[:, None, :] == seg[:, :, None])
        # A padding position attends to itself only, so its (unsupervised) output stays finite.
        mask = (causal & same & (seg[:, None, :] >= 0)) | torch.eye(width, dtype=torch.bool)
        # A 4D boolean mask reaches the attention as it is (transformers' masking_utils), under sdpa: True attends.
        # TRL's logged `num_tokens` sums the mask, so with branches it counts attending pairs, not tokens.
        return {"input_ids": pad(seqs, tok.pad_token_id), "attention_mask": mask[:, None],
                "position_ids": pad(positions, 0), "labels": pad(labels, IGNORE_INDEX),
                "input_features": head["input_features"], "feature_attention_mask": head["feature_attention_mask"]}
