"""`murmurscope index ...`: build and query the guidance index."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from assistant.cli.options import ConfigCommand, from_config

if TYPE_CHECKING:
    from knowledge.index import IndexConfig

app = typer.Typer(help="Build and query the cardiology guidance index.", no_args_is_help=True)


@app.command("build", cls=ConfigCommand)
@from_config(config="knowledge.index:IndexConfig")
def build(
    config: IndexConfig,
    out: Annotated[Path | None, typer.Option(help="Index folder to write [default: the index shipped in the package].")]
    = None,
) -> None:
    """Chunk the corpus by heading, embed the passages and save a FAISS index with its metadata."""
    import time

    from rich.console import Console

    from assistant.errors import KnowledgeError
    from knowledge.index import META_FILE, GuidanceIndex
    from knowledge.retriever import PREBUILT_DIR

    out = out or PREBUILT_DIR
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / META_FILE).exists())):
        raise KnowledgeError(f"{out}: exists and is not a guidance index folder; choose an empty or new folder")
    if not Path(config.corpus_dir).is_dir():
        raise KnowledgeError(f"{config.corpus_dir}: no such corpus folder")
    start = time.perf_counter()
    index = GuidanceIndex.build(config, progress=True)
    index.save(out)
    Console().print(f"indexed {index.meta.n_passages} passages ({index.meta.kind}, {index.meta.dim}-d, "
                    f"{index.meta.model}) in {time.perf_counter() - start:.1f} s -> {out}")


@app.command()
def query(
    text: Annotated[str, typer.Argument(help="The question or keywords.")],
    k: Annotated[int, typer.Option("-k", "--k", help="How many passages.")] = 5,
    index: Annotated[Path | None, typer.Option(help="Index folder [default: the shipped index].")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Print the k passages nearest to TEXT with their scores and citations."""
    from rich.console import Console
    from rich.markup import escape

    from knowledge.retriever import Retriever, check_query

    check_query(text, k)  # before loading the model, so a bad query fails at once
    passages = Retriever.load(index).search(text, k)
    if as_json:
        print(json.dumps([p.to_dict() for p in passages], indent=2, ensure_ascii=False))
        return
    console = Console()
    for n, p in enumerate(passages, 1):
        console.print(f"[bold]{n}. {escape(p.title)} — {escape(p.section)}[/bold]  [dim]score {p.score:.3f} · "
                      f"{escape(p.id)}[/dim]")
        console.print(escape(p.text))
        console.print(f"[cyan]Source:[/cyan] {escape(p.source)}" + (f"\n[cyan]URL:[/cyan] {p.url}" if p.url else ""))
        console.print()


@app.command()
def add(
    paths: Annotated[list[Path], typer.Argument(help="Guideline files: PDF, HTML, Word (.docx), Markdown, text.")],
    user_index: Annotated[Path | None, typer.Option(help="User index folder [default: env MURMURSCOPE_USER_INDEX, "
                                                         "else ~/.cache/murmurscope/user-index].")] = None,
    max_words: Annotated[int, typer.Option(help="Longest passage in words; longer pages/sections are split.")] = 180,
) -> None:
    """Add your own guidelines to the user index that `index query`, `chat`, the API and the app search
    beside the shipped corpus. A file added again replaces its earlier copy; a bad file is one line on
    stderr (exit 2) and the rest are still added."""
    from knowledge.documents import ChunkConfig
    from knowledge.embedding import DEFAULT_MODEL, Embedder, EmbeddingConfig
    from knowledge.ingest import UserIndex, user_index_dir

    if max_words < 20:
        from assistant.errors import KnowledgeError

        raise KnowledgeError("--max-words must be at least 20")
    folder = user_index or user_index_dir()
    index = UserIndex.load(folder, DEFAULT_MODEL)
    result = index.add(list(paths), Embedder(EmbeddingConfig(model=DEFAULT_MODEL)), ChunkConfig(max_words=max_words))
    # typer.echo, not rich: one error is one line, however long, for whoever reads stderr.
    for line in result.errors:
        typer.echo(f"error: {line}", err=True)
    if result.added:
        index.save()
        for name, n in result.added.items():
            typer.echo(f"added {name}: {n} passages")
        typer.echo(f"user index: {len(index.chunks)} passages -> {folder}")
    if result.errors:
        raise typer.Exit(2)
