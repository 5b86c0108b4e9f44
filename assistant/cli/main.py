"""The `murmurscope` command line: one typer app whose groups follow the packages."""

from __future__ import annotations

import os
import sys

import typer
from rich.console import Console
from rich.markup import escape

from assistant.errors import MurmurScopeError

app = typer.Typer(
    name="murmurscope",
    help="Heart-murmur consultation from phonocardiograms.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err = Console(stderr=True)


def _register() -> None:
    # The training and evaluation packages are only imported for their (light) typer apps here;
    # their heavy imports live inside the commands.
    from assistant.cli import consult, data, murmur, segment, serve
    from assistant.cli.options import ConfigCommand
    from eval.cli import app as eval_app
    from finetune.cli import app as finetune_app
    from knowledge.cli import app as index_app

    app.command()(data.info)
    app.command()(data.synth)
    app.command()(segment.segment)
    app.command()(murmur.predict)
    app.command(cls=ConfigCommand)(consult.analyze)
    app.command(cls=ConfigCommand)(consult.chat)
    app.add_typer(serve.app, name="serve")
    app.add_typer(finetune_app, name="finetune")
    app.add_typer(index_app, name="index")
    app.add_typer(eval_app, name="eval")


_register()


def main() -> None:
    """Console-script entry: user errors become one line on stderr and a non-zero exit."""
    try:
        app()
    except MurmurScopeError as e:
        err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - the promise is no traceback; MURMURSCOPE_DEBUG=1 shows it
        if os.environ.get("MURMURSCOPE_DEBUG"):
            raise
        err.print(f"[red]internal error:[/red] {type(e).__name__}: {escape(str(e))} "
                  "(set MURMURSCOPE_DEBUG=1 for the traceback)", highlight=False, soft_wrap=True)
        sys.exit(1)
