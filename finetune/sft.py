"""Supervised fine-tuning of Qwen2-Audio on the murmur Q&A with TRL's SFTTrainer and a PEFT LoRA.

LoRA goes on the language model's attention and MLP projections only (a bare `q_proj` would also
hit the Whisper encoder's attention); `lora_audio_encoder` adds the encoder's projections. With
`lora=False` every weight trains (how the learning check trains a micro model from scratch), and
the result is written directly in the layout vLLM loads.

On a GPU: bf16 weights and training. On CPU: fp32 with `use_cpu` (tests, smoke runs).
Multi-GPU: `accelerate launch --config_file finetune/accelerate_fsdp.yaml "$(which murmurscope)" finetune sft ...`
(see docs/audio_llm.md).
"""

from __future__ import annotations

import contextlib
import json
import resource
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from assistant.errors import MurmurScopeError
from assistant.llm.prompts import PRESENCE
from finetune.tiny_model import DEFAULT_MODEL_ID

LANGUAGE_MODEL_TARGETS = r".*language_model.*\.(q|k|v|o|gate|up|down)_proj"
AUDIO_ENCODER_TARGETS = r".*audio_tower.*\.(q_proj|k_proj|v_proj|out_proj|fc1|fc2)"


class SFTError(MurmurScopeError):
    pass


@dataclass
class AudioSFTConfig:
    """What `murmurscope finetune sft` trains; its options are built from these fields."""

    data: Path = field(metadata={"help": "Q&A folder from `murmurscope finetune qa`."})
    out: Path = field(metadata={"help": "Folder for the adapter (or full model), log and plot."})
    model: str = field(default=DEFAULT_MODEL_ID, metadata={"help": "Hub id or folder of a Qwen2-Audio model."})
    lora: bool = field(default=True, metadata={"help": "LoRA on the language model (off: train every weight)."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_audio_encoder: bool = field(default=False, metadata={"help": "Also put LoRA on the audio encoder."})
    epochs: float = field(default=1.0, metadata={"help": "Training epochs."})
    max_steps: int = field(default=-1, metadata={"help": "Stop after this many optimizer steps (-1: epochs decide)."})
    batch_size: int = field(default=1, metadata={"help": "Rows per device per step."})
    grad_accum: int = field(default=16, metadata={"help": "Gradient-accumulation steps."})
    learning_rate: float = field(default=1e-4, metadata={"help": "Peak learning rate (cosine schedule)."})
    warmup_ratio: float = field(default=0.03, metadata={"help": "Warm-up as a fraction of the steps."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Trade compute for memory (7B on one GPU)."})
    logging_steps: int = field(default=10, metadata={"help": "Log the loss every N steps."})
    save_steps: int = field(default=0, metadata={"help": "Checkpoint every N steps (0: only at the end)."})
    max_train_rows: int | None = field(default=None, metadata={"help": "Train on at most this many rows."})
    # The audio encoder is the expensive part on a CPU; one conversation per clip pays for it once per step.
    multi_turn: bool = field(default=False, metadata={
        "help": "One sequence per clip carrying all its questions, each answered from the audio alone as when "
                "served, every answer supervised."})
    murmur_balance_cap: int = field(default=1, metadata={
        "help": "Repeat training clips of the rarer murmur answers toward equal counts, at most this many times "
                "(1: off)."})
    freeze_audio_tower: bool = field(default=False, metadata={
        "help": "Keep the audio encoder's weights fixed (a pretrained tower under a language model trained here)."})
    seed: int = field(default=42, metadata={"help": "Training seed."})
    report_to: str = field(default="none", metadata={"help": "Trainer loggers: none, tensorboard, wandb ..."})
    # None: torch's default (all cores). On a shared CPU one thread avoids OpenMP oversubscription,
    # which made steps 7x slower in our measurements.
    torch_threads: int | None = field(default=None, metadata={"help": "CPU threads for torch (1 on a shared CPU)."})
    export_dtype: Literal["float32", "float16", "bfloat16"] = field(default="float32", metadata={
        "help": "Dtype of the written model when every weight trains (--no-lora); float16 halves what ships."})
    extra: dict = field(default_factory=dict, metadata={"help": "Further TRL SFTConfig fields (YAML only)."})


@dataclass(frozen=True)
class SFTResult:
    out: Path
    steps: int
    losses: list[float]
    runtime_s: float
    steps_per_second: float
    peak_rss_mib: float
    trainable_parameters: int


def target_modules(audio_encoder: bool) -> str:
    if audio_encoder:
        return f"(?:{LANGUAGE_MODEL_TARGETS})|(?:{AUDIO_ENCODER_TARGETS})"
    return LANGUAGE_MODEL_TARGETS


def lora_config(config: AudioSFTConfig):
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=target_modules(config.lora_audio_encoder),
        task_type="CAUSAL_LM",
    )


def balanced(rows: list[dict], cap: int) -> list[dict]:
    """Each row (question or conversation) repeated by its clip's murmur-answer rarity: round(largest class /
    its class), at most `cap` times.

    The Unknown and Present clips are few beside the Absent ones; without repeats a model trained on
    them learns to say Absent.
    """
    from finetune.audio_collator import turns_of

    if cap <= 1:
        return rows
    clip_class = {r["audio"]: t["answer"] for r in rows for t in turns_of(r) if t["feature"] == PRESENCE}
    counts = Counter(clip_class.values())
    repeat = {c: min(cap, max(1, round(max(counts.values()) / n))) for c, n in counts.items()}
    return [r for r in rows for _ in range(repeat.get(clip_class.get(r["audio"]), 1))]


def load_qa(data: Path, max_train_rows: int | None = None, multi_turn: bool = False, seed: int = 0,
            balance_cap: int = 1):
    from datasets import Dataset, DatasetDict, load_dataset

    from finetune.qa import conversations

    files = {name: str(data / f"{name}.jsonl") for name in ("train", "val")
             if (data / f"{name}.jsonl").exists() and (data / f"{name}.jsonl").stat().st_size > 0}
    if "train" not in files:
        raise SFTError(f"{data}: no train.jsonl; build one with `murmurscope finetune qa`")
    ds = load_dataset("json", data_files=files)
    if multi_turn:
        ds = DatasetDict({k: Dataset.from_list(conversations(list(v), seed)) for k, v in ds.items()})
    if balance_cap > 1:
        ds["train"] = Dataset.from_list(balanced(list(ds["train"]), balance_cap))
    if max_train_rows is not None:
        ds["train"] = ds["train"].shuffle(seed=0).select(range(min(max_train_rows, len(ds["train"]))))
    return ds


def load_model(model_id: str, on_gpu: bool):
    import torch
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

    dtype = torch.bfloat16 if on_gpu else torch.float32
    try:
        model = Qwen2AudioForConditionalGeneration.from_pretrained(model_id, dtype=dtype)
        processor = AutoProcessor.from_pretrained(model_id)
    except OSError as e:
        raise SFTError(f"cannot load {model_id}: {str(e).splitlines()[0]}") from None
    return model, processor


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def train(config: AudioSFTConfig) -> SFTResult:
    import torch
    from trl import SFTConfig, SFTTrainer

    from finetune.audio_collator import AudioQACollator
    from finetune.export import export_for_vllm
    from finetune.plots import plot_losses
    from finetune.tower_cache import TowerCache

    out = Path(config.out)
    if out.exists() and any(out.iterdir()):
        raise SFTError(f"{out}: not empty; choose a new folder")
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    data = Path(config.data)
    ds = load_qa(data, config.max_train_rows, config.multi_turn, config.seed, config.murmur_balance_cap)
    on_gpu = torch.cuda.is_available()
    model, processor = load_model(config.model, on_gpu)
    if config.freeze_audio_tower:
        model.model.audio_tower.requires_grad_(False)
    args = SFTConfig(
        output_dir=str(out),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.learning_rate,
        warmup_steps=config.warmup_ratio,
        weight_decay=config.weight_decay,
        lr_scheduler_type="cosine",
        logging_steps=config.logging_steps,
        save_strategy="steps" if config.save_steps else "no",
        save_steps=config.save_steps or 500,
        gradient_checkpointing=config.gradient_checkpointing,
        bf16=on_gpu,
        use_cpu=not on_gpu,
        seed=config.seed,
        report_to=config.report_to,
        # The collator needs the raw columns; TRL's tokenisation would drop the audio.
        remove_unused_columns=False,
        dataset_kwargs={"skip_prepare_dataset": True},
        dataloader_num_workers=0,
        **config.extra,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=ds["train"],
        data_collator=AudioQACollator(processor, data),
        processing_class=processor,
        peft_config=lora_config(config) if config.lora else None,
    )
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    cache = TowerCache(model.model.audio_tower) if config.freeze_audio_tower else contextlib.nullcontext()
    start = time.perf_counter()
    with cache:
        result = trainer.train()
    runtime = time.perf_counter() - start
    out.mkdir(parents=True, exist_ok=True)
    if config.lora:
        trainer.model.save_pretrained(out)
        processor.save_pretrained(out)
    else:
        export_for_vllm(trainer.model.to(getattr(torch, config.export_dtype)), processor, out)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    steps = int(result.global_step)
    res = SFTResult(out, steps, losses, runtime, steps / runtime if runtime else 0.0, peak_rss_mib(), trainable)
    log = {"config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
           "result": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(res).items()},
           "log_history": trainer.state.log_history}
    (out / "training_log.json").write_text(json.dumps(log, indent=2) + "\n")
    if losses:
        plot_losses(losses, config.logging_steps, out / "loss.png", title=f"SFT of {Path(config.model).name}")
    return res
