"""`murmurscope index ...`: build and query the guidance index."""

import typer

app = typer.Typer(help="Build and query the cardiology guidance index.", no_args_is_help=True)
