"""`murmurscope eval ...`: batch evaluation and benchmarks."""

import typer

app = typer.Typer(help="Evaluate predictors and benchmark components.", no_args_is_help=True)
