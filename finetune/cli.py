"""`murmurscope finetune ...`: every training command."""

import typer

app = typer.Typer(help="Train the segmenter, the murmur models and the audio-LLM.", no_args_is_help=True)
