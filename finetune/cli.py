"""`murmurscope finetune ...`: every training command."""

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Train the segmenter, the murmur models and the audio-LLM.", no_args_is_help=True)


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
    threads: Annotated[int, typer.Option(help="torch CPU threads (1 trains faster on a busy 2-core machine).")] = 1,
) -> None:
    """Train the murmur classifier (encoder, multi-site head, feature heads) on the project split."""
    from rich.console import Console

    from finetune.classifier import ClassifierTrainConfig, train_classifier

    if (out / "murmur.safetensors").exists():
        from assistant.errors import MurmurScopeError

        raise MurmurScopeError(f"{out}: already holds a murmur model; choose another --out")
    config = ClassifierTrainConfig(circor_root=circor_root, out=out, encoder=encoder, m2d_checkpoint=m2d_checkpoint,
                                   cache_dir=cache_dir, seed=seed, encoder_epochs=encoder_epochs,
                                   head_epochs=head_epochs, feature_epochs=feature_epochs, threads=threads)
    log = train_classifier(config)
    head = log["head"]
    Console().print(f"wrote {out}: val weighted accuracy {head['best_val_wa']:.3f}, UAR {head['best_val_uar']:.3f}, "
                    f"temperature {log['temperature']:.2f}, {log['minutes']:.1f} min")
