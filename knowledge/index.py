"""The FAISS index over the guidance passages: build, save and load, with metadata to detect staleness.

On disk an index is a folder with ``index.faiss`` (the vectors), ``passages.jsonl`` (one passage per
vector, in order) and ``meta.json`` (model, kind, dimension, corpus digest, counts).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from assistant.errors import IndexCorruptError, IndexMissingError, KnowledgeError
from knowledge.documents import CORPUS_DIR, Chunk, ChunkConfig, corpus_hash, load_chunks
from knowledge.embedding import DEFAULT_MODEL, Embedder, EmbeddingConfig

INDEX_FILE = "index.faiss"
PASSAGES_FILE = "passages.jsonl"
META_FILE = "meta.json"
FORMAT_VERSION = 1

IndexKind = Literal["flat", "ivf", "hnsw"]


@dataclass(frozen=True)
class IndexConfig:
    """How `murmurscope index build` builds an index; its options are built from these fields."""

    corpus_dir: Path = field(default=CORPUS_DIR, metadata={"help": "Corpus folder.", "name": "corpus"})
    model: str = field(default=DEFAULT_MODEL, metadata={
        "help": "Sentence-transformers model: a local folder or all-MiniLM-L6-v2."})
    # flat: exact inner product (right for a corpus of this size); ivf and hnsw: approximate, for large corpora.
    kind: IndexKind = field(default="flat", metadata={
        "help": "flat: exact inner product; ivf, hnsw: approximate (large corpora)."})
    nlist: int | None = field(default=None, metadata={"help": "IVF cells [default: about sqrt(passages)]."})
    nprobe: int | None = field(default=None, metadata={"help": "IVF cells visited per query [default: all, up to 16]."})
    hnsw_m: int = field(default=32, metadata={"help": "HNSW neighbours per node."})
    hnsw_ef_search: int = field(default=64, metadata={"help": "HNSW candidates examined per query."})
    chunk: ChunkConfig = field(default_factory=ChunkConfig)
    # None: use a GPU when faiss-gpu sees one.
    use_gpu: bool | None = field(default=None, metadata={
        "help": "FAISS on GPU [default: when faiss-gpu sees one].", "name": "gpu"})


@dataclass(frozen=True)
class IndexMeta:
    format_version: int
    model: str
    kind: str
    dim: int
    n_passages: int
    corpus_hash: str
    corpus_dir: str | None  # None: the corpus shipped in the package
    faiss_version: str
    params: dict

    @classmethod
    def from_dict(cls, d: dict) -> IndexMeta:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


def _factory(kind: str, dim: int, n: int, config: IndexConfig):
    import faiss

    if kind == "flat":
        return faiss.IndexFlatIP(dim), {}
    if kind == "ivf":
        nlist = max(1, min(config.nlist or round(math.sqrt(n)), n))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        nprobe = min(config.nprobe or min(nlist, 16), nlist)
        return index, {"nlist": nlist, "nprobe": nprobe}
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        return index, {"hnsw_m": config.hnsw_m, "ef_search": config.hnsw_ef_search}
    raise KnowledgeError(f"index kind must be flat, ivf or hnsw, not {kind!r}")


def _apply_search_params(index, kind: str, params: dict) -> None:
    import faiss

    if kind == "ivf":
        faiss.extract_index_ivf(index).nprobe = params["nprobe"]
    elif kind == "hnsw":
        index.hnsw.efSearch = params["ef_search"]


def _maybe_to_gpu(index, kind: str, use_gpu: bool | None):
    import faiss

    # faiss has no GPU HNSW; a flat or IVF index moves over whole.
    if kind == "hnsw" or use_gpu is False or not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
        if use_gpu:
            raise KnowledgeError("--gpu was asked for, but this faiss build sees no GPU (install faiss-gpu)")
        return index
    return faiss.index_cpu_to_all_gpus(index)


class GuidanceIndex:
    """Passages, their vectors in FAISS, and the metadata that says how they were made."""

    def __init__(self, index, passages: list[Chunk], meta: IndexMeta):
        self.index = index
        self.passages = passages
        self.meta = meta

    @classmethod
    def build(cls, config: IndexConfig = IndexConfig(), embedder: Embedder | None = None,
              progress: bool = False) -> GuidanceIndex:
        chunks = load_chunks(config.corpus_dir, config.chunk)
        embedder = embedder or Embedder(EmbeddingConfig(model=config.model))
        vectors = embedder.encode([c.embedding_text() for c in chunks], progress=progress)
        index, params = _factory(config.kind, vectors.shape[1], len(chunks), config)
        if not index.is_trained:
            index.train(vectors)
        index.add(vectors)
        _apply_search_params(index, config.kind, params)
        import faiss

        shipped = Path(config.corpus_dir).resolve() == CORPUS_DIR
        meta = IndexMeta(FORMAT_VERSION, config.model, config.kind, int(vectors.shape[1]), len(chunks),
                         corpus_hash(config.corpus_dir), None if shipped else str(Path(config.corpus_dir).resolve()),
                         faiss.__version__, params)
        return cls(_maybe_to_gpu(index, config.kind, config.use_gpu), chunks, meta)

    def save(self, out_dir: Path) -> Path:
        import faiss

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        index = faiss.index_gpu_to_cpu(self.index) if hasattr(faiss, "index_gpu_to_cpu") and _on_gpu(self.index) \
            else self.index
        # Write beside the target and rename, so an interrupted build never leaves a half-written index.
        for name, write in ((INDEX_FILE, lambda p: faiss.write_index(index, str(p))),
                            (PASSAGES_FILE, lambda p: p.write_text(
                                "".join(json.dumps(c.to_dict(), ensure_ascii=False) + "\n" for c in self.passages),
                                encoding="utf-8")),
                            (META_FILE, lambda p: p.write_text(json.dumps(asdict(self.meta), indent=2) + "\n"))):
            tmp = out_dir / f".{name}.tmp"
            write(tmp)
            tmp.replace(out_dir / name)
        return out_dir

    @classmethod
    def load(cls, index_dir: Path, use_gpu: bool | None = None) -> GuidanceIndex:
        import faiss

        index_dir = Path(index_dir)
        missing = [n for n in (INDEX_FILE, PASSAGES_FILE, META_FILE) if not (index_dir / n).is_file()]
        if missing:
            raise IndexMissingError(f"{index_dir}: no guidance index here (missing {', '.join(missing)}); "
                                    f"build one with: murmurscope index build --out {index_dir}")
        try:
            meta = IndexMeta.from_dict(json.loads((index_dir / META_FILE).read_text()))
            passages = [Chunk(**json.loads(line)) for line in
                        (index_dir / PASSAGES_FILE).read_text(encoding="utf-8").splitlines() if line.strip()]
            index = faiss.read_index(str(index_dir / INDEX_FILE))
        except (ValueError, KeyError, TypeError, RuntimeError, UnicodeDecodeError) as e:
            raise IndexCorruptError(f"{index_dir}: the guidance index is corrupt ({type(e).__name__}); "
                                    f"rebuild it with: murmurscope index build --out {index_dir}") from None
        if meta.format_version != FORMAT_VERSION or not index.ntotal == len(passages) == meta.n_passages \
                or index.d != meta.dim:
            raise IndexCorruptError(f"{index_dir}: the guidance index is inconsistent ({index.ntotal} vectors, "
                                    f"{len(passages)} passages); rebuild it with: murmurscope index build --out "
                                    f"{index_dir}")
        _apply_search_params(index, meta.kind, meta.params)
        return cls(_maybe_to_gpu(index, meta.kind, use_gpu), passages, meta)

    def corpus_dir(self) -> Path:
        return Path(self.meta.corpus_dir) if self.meta.corpus_dir else CORPUS_DIR

    def is_stale(self) -> bool:
        """True when the corpus this index came from has changed since (False when that corpus is gone)."""
        corpus = self.corpus_dir()
        return corpus.is_dir() and corpus_hash(corpus) != self.meta.corpus_hash

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, ids = self.index.search(vectors, min(k, len(self.passages)))
        return scores, ids


def _on_gpu(index) -> bool:
    return "Gpu" in type(index).__name__
