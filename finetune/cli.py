"""`murmurscope finetune ...`: every training command."""

from pathlib import Path
from typing import Annotated, Optional

import typer

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
    from assistant.errors import MurmurScopeError
    from assistant.split import SplitConfig
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
