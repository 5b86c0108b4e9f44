"""Search the guidance index: passages with scores and citations, also as a LangChain tool."""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from assistant.errors import EmptyQueryError, IndexCorruptError, IndexMissingError, KnowledgeError, StaleIndexError
from knowledge.documents import Chunk
from knowledge.embedding import Embedder, EmbeddingConfig
from knowledge.index import GuidanceIndex, IndexConfig
from knowledge.lexical import LexicalIndex, reciprocal_rank_fusion

log = logging.getLogger(__name__)

# The index that ships in the package, built from knowledge/corpus by `murmurscope index build`.
PREBUILT_DIR = Path(__file__).resolve().parent / "prebuilt"


def cache_dir() -> Path:
    """Where the default index is rebuilt when the package folder is read-only."""
    root = os.environ.get("MURMURSCOPE_CACHE") or Path.home() / ".cache" / "murmurscope"
    return Path(root) / "knowledge-index"


@dataclass(frozen=True)
class Passage:
    id: str
    title: str
    section: str
    text: str
    source: str  # human-readable citation(s), " | "-separated
    url: str | None
    year: int | None
    score: float  # the ranking's own score: cosine (dense), BM25 (lexical) or reciprocal-rank sum (hybrid)

    def to_dict(self) -> dict:
        return asdict(self)


def _load_or_rebuild_default() -> GuidanceIndex:
    candidates = [PREBUILT_DIR, cache_dir()]
    for index_dir in candidates:
        try:
            index = GuidanceIndex.load(index_dir)
        except (IndexMissingError, IndexCorruptError) as e:
            problem = str(e).split(";")[0]
            continue
        if not index.is_stale():
            return index
        problem = f"{index_dir}: the guidance index is older than the corpus"
    log.warning("%s; rebuilding the guidance index (a few seconds)", problem)
    index = GuidanceIndex.build(IndexConfig())
    for index_dir in candidates:
        try:
            index.save(index_dir)
            break
        except OSError:
            continue
    return index


def check_query(query: str, k: int = 5) -> None:
    if not isinstance(query, str) or not query.strip():
        raise EmptyQueryError("the query is empty; ask a question about murmurs, referral or the CirCor labels")
    if k < 1:
        raise KnowledgeError(f"k must be at least 1, not {k}")


SearchMode = Literal["dense", "lexical", "hybrid"]
SEARCH_MODES: tuple[str, ...] = get_args(SearchMode)


class Retriever:
    """The k best passages for a query: dense (the index's own embedding model, FAISS), lexical (BM25) or,
    by default, both fused by reciprocal rank (docs/knowledge.md has the numbers for each)."""

    # How deep each ranking goes before fusion: past the last passage either ranking would still promote.
    candidates = 30

    def __init__(self, index: GuidanceIndex, embedder: Embedder | None = None, mode: SearchMode = "hybrid"):
        if mode not in SEARCH_MODES:
            raise KnowledgeError(f"search mode must be one of {', '.join(SEARCH_MODES)}, not {mode!r}")
        self.index = index
        self.mode = mode
        self.lexical = LexicalIndex([c.embedding_text() for c in index.passages])
        self.embedder = embedder or Embedder(EmbeddingConfig(model=index.meta.model))
        if self.embedder.dim != index.meta.dim:
            raise KnowledgeError(f"embedding model {index.meta.model!r} gives {self.embedder.dim}-d vectors but the "
                                 f"index holds {index.meta.dim}-d ones; rebuild the index")

    @classmethod
    def load(cls, index_dir: Path | None = None, user_index: Path | None = None) -> Retriever:
        """The shipped index by default (rebuilt when missing, corrupt or stale); else the index in `index_dir`.
        The user's own documents (`murmurscope index add`; `user_index`, default `user_index_dir()`) are
        searched with it when that folder holds any."""
        if index_dir is None:
            retriever = cls(_load_or_rebuild_default())
        else:
            index = GuidanceIndex.load(Path(index_dir))
            if index.is_stale():
                raise StaleIndexError(f"{index_dir}: the guidance index is older than its corpus "
                                      f"({index.corpus_dir()}); rebuild it with: murmurscope index build --out "
                                      f"{index_dir}")
            retriever = cls(index)
        from knowledge.ingest import UserIndex, user_index_dir

        user = UserIndex.load(user_index or user_index_dir(), retriever.index.meta.model)
        retriever.add(user.chunks, user.vectors)
        return retriever

    def add(self, chunks: list[Chunk], vectors: np.ndarray | None = None) -> None:
        """Make more passages searchable (the user's documents), embedding them unless `vectors` are given."""
        if not chunks:
            return
        if vectors is None:
            vectors = self.embedder.encode([c.embedding_text() for c in chunks])
        # Passages before vectors: a search running meanwhile never gets an id it cannot look up.
        self.index.passages.extend(chunks)
        self.index.index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        self.lexical = LexicalIndex([c.embedding_text() for c in self.index.passages])

    def _dense(self, query: str, k: int) -> list[tuple[int, float]]:
        vector = self.embedder.encode_query(query)
        scores, ids = self.index.search(vector, k)
        # An approximate index can return fewer than k hits (id -1).
        return [(int(i), float(s)) for s, i in zip(scores[0], ids[0]) if i >= 0]

    def search(self, query: str, k: int = 5, mode: SearchMode | None = None) -> list[Passage]:
        check_query(query, k)
        mode = mode or self.mode
        if mode not in SEARCH_MODES:
            raise KnowledgeError(f"search mode must be one of {', '.join(SEARCH_MODES)}, not {mode!r}")
        query = " ".join(query.split())
        if mode == "dense":
            ranked = self._dense(query, k)
        elif mode == "lexical":
            ranked = self.lexical.rank(query, k)
        else:
            depth = max(k, self.candidates)
            dense = [i for i, _ in self._dense(query, depth)]
            lexical = [i for i, _ in self.lexical.rank(query, depth)]
            ranked = reciprocal_rank_fusion([dense, lexical])[:k]
        passages = []
        for i, score in ranked:
            c = self.index.passages[i]
            passages.append(Passage(c.id, c.title, c.section, c.text, c.source, c.url, c.year, float(score)))
        return passages

    def as_tool(self, default_k: int = 5):
        """A LangChain tool "search_guidance": the LLM sees numbered passages with section and source; the
        Passage dicts ride along as the tool message's artifact for the caller to show citations."""
        from langchain_core.tools import StructuredTool, ToolException
        from pydantic import BaseModel, Field

        class SearchGuidanceInput(BaseModel):
            query: str = Field(description="A question or keywords about heart murmurs, auscultation, referral or "
                                           "echocardiography, or the CirCor labels.")
            k: int = Field(default=default_k, ge=1, le=20, description="How many passages to return.")

        def search_guidance(query: str, k: int = default_k) -> tuple[str, list[dict]]:
            try:
                passages = self.search(query, k)
            except KnowledgeError as e:
                raise ToolException(str(e)) from None
            return format_passages(passages), [p.to_dict() for p in passages]

        return StructuredTool.from_function(
            func=search_guidance,
            name="search_guidance",
            description="Search the cardiology guidance corpus (murmur grading, timing and shape, pitch and quality, "
                        "auscultation sites, innocent murmurs and red flags in children, when to refer or order "
                        "echocardiography, CirCor label meanings, limits of automated auscultation). Returns passages "
                        "with their section and source to cite.",
            args_schema=SearchGuidanceInput,
            response_format="content_and_artifact",
            handle_tool_error=True,
        )


def format_passages(passages: list[Passage]) -> str:
    if not passages:
        return "No guidance passages found."
    blocks = []
    for n, p in enumerate(passages, 1):
        blocks.append(f"[{n}] {p.title} — {p.section} (score {p.score:.2f})\n{p.text}\n"
                      f"Source: {p.source}" + (f"\nURL: {p.url}" if p.url else ""))
    return "\n\n".join(blocks)
