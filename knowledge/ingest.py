"""The user's own guidelines: PDF, HTML, Word (.docx), Markdown and plain text read into passages that
cite the file and the page or section, kept in a user index beside the shipped one.

The user index is a folder with ``passages.jsonl`` (one `Chunk` per line) and ``vectors.npy`` (their
embeddings, same order) plus ``meta.json`` (the embedding model). The retriever appends it to the shipped
index when it loads, so the CLI, the API and the app all search both.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from assistant.errors import KnowledgeError
from knowledge.documents import Chunk, ChunkConfig, _windows, slugify, split_sentences
from knowledge.embedding import Embedder

SUFFIXES = (".pdf", ".html", ".htm", ".docx", ".md", ".markdown", ".txt")
PASSAGES_FILE = "passages.jsonl"
VECTORS_FILE = "vectors.npy"
META_FILE = "meta.json"


class IngestError(KnowledgeError):
    """One document could not be read; the rest of a batch is still indexed."""


def user_index_dir() -> Path:
    """Where `murmurscope index add` keeps the user's documents by default (MURMURSCOPE_USER_INDEX)."""
    if os.environ.get("MURMURSCOPE_USER_INDEX"):
        return Path(os.environ["MURMURSCOPE_USER_INDEX"])
    root = os.environ.get("MURMURSCOPE_CACHE") or Path.home() / ".cache" / "murmurscope"
    return Path(root) / "user-index"


@dataclass(frozen=True)
class Part:
    """A page (PDF) or a headed section (HTML, Word, Markdown) or the whole text (plain text)."""

    where: str  # "page 3", "section Referral", ...
    text: str


def _pdf(path: Path) -> tuple[str, list[Part]]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            raise IngestError(f"{path.name}: the PDF is encrypted; save an unprotected copy and add that")
        pages = [Part(f"page {n}", page.extract_text() or "") for n, page in enumerate(reader.pages, 1)]
    except PdfReadError as e:
        raise IngestError(f"{path.name}: not a readable PDF ({e})") from None
    except (ValueError, KeyError, TypeError, OSError) as e:
        raise IngestError(f"{path.name}: not a readable PDF ({type(e).__name__})") from None
    if pages and not any(p.text.strip() for p in pages):
        raise IngestError(f"{path.name}: the PDF has no text layer (scanned images?); run OCR on it first")
    title = (reader.metadata.title if reader.metadata and reader.metadata.title else "") or path.stem
    return str(title), pages


def _html(path: Path) -> tuple[str, list[Part]]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(path.read_bytes(), "html.parser")
    for tag in soup(["script", "style", "nav", "header", "footer"]):
        tag.decompose()
    title = soup.title.get_text(" ", strip=True) if soup.title else path.stem
    parts, heading, texts = [], "start", []
    for el in soup.find_all(["h1", "h2", "h3", "h4", "p", "li", "td", "pre", "blockquote"]):
        text = el.get_text(" ", strip=True)
        if el.name in ("h1", "h2", "h3", "h4"):
            if texts:
                parts.append(Part(f"section {heading}", " ".join(texts)))
            heading, texts = text or heading, []
        elif text:
            texts.append(text)
    if texts:
        parts.append(Part(f"section {heading}", " ".join(texts)))
    return title or path.stem, parts


def _docx(path: Path) -> tuple[str, list[Part]]:
    import zipfile

    import docx

    try:
        document = docx.Document(str(path))
    except (zipfile.BadZipFile, KeyError, ValueError) as e:
        raise IngestError(f"{path.name}: not a readable Word (.docx) file ({type(e).__name__})") from None
    title = document.core_properties.title or path.stem
    parts, heading, texts = [], "start", []
    for para in document.paragraphs:
        text = para.text.strip()
        if not text:
            continue
        if (para.style is not None and para.style.name or "").lower().startswith(("heading", "title")):
            if texts:
                parts.append(Part(f"section {heading}", " ".join(texts)))
            heading, texts = text, []
        else:
            texts.append(text)
    if texts:
        parts.append(Part(f"section {heading}", " ".join(texts)))
    return title, parts


_MD_HEADING = re.compile(r"^(#{1,4})\s+(.*)$")


def _markdown(path: Path) -> tuple[str, list[Part]]:
    text = _text_of(path)
    # YAML front matter, when present, is metadata rather than guidance.
    text = re.sub(r"\A---\n.*?\n---\n", "", text, flags=re.DOTALL)
    title, parts, heading, lines = path.stem, [], "start", []
    for line in text.splitlines():
        m = _MD_HEADING.match(line)
        if m:
            if " ".join(lines).strip():
                parts.append(Part(f"section {heading}", " ".join(" ".join(lines).split())))
            heading, lines = m.group(2).strip(), []
            if m.group(1) == "#" and title == path.stem:
                title = heading
        else:
            lines.append(line)
    if " ".join(lines).strip():
        parts.append(Part(f"section {heading}", " ".join(" ".join(lines).split())))
    return title, parts


def _plain(path: Path) -> tuple[str, list[Part]]:
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", _text_of(path)) if p.strip()]
    return path.stem, [Part(f"paragraph {n}", p) for n, p in enumerate(paragraphs, 1)]


def _text_of(path: Path) -> str:
    data = path.read_bytes()
    if b"\0" in data[:4096]:
        raise IngestError(f"{path.name}: binary data, not text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise IngestError(f"{path.name}: not UTF-8 text") from None


READERS = {".pdf": _pdf, ".html": _html, ".htm": _html, ".docx": _docx, ".md": _markdown, ".markdown": _markdown,
           ".txt": _plain}


def load_document(path: Path, config: ChunkConfig = ChunkConfig()) -> list[Chunk]:
    """The document's passages: each part (page or section) in windows of at most `max_words` words."""
    path = Path(path)
    if not path.is_file():
        raise IngestError(f"{path}: no such file")
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise IngestError(f"{path.name}: unsupported type {path.suffix or '(none)'}; "
                          f"use one of {', '.join(SUFFIXES)}")
    if path.stat().st_size == 0:
        raise IngestError(f"{path.name}: the file is empty")
    title, parts = reader(path)
    doc_id = f"user:{slugify(path.name)}"
    chunks = []
    for part in parts:
        sentences = split_sentences(part.text)
        windows = [part.text] if len(part.text.split()) <= config.max_words else [
            " ".join(w) for w in _windows(sentences, config)]
        section_id = f"{doc_id}#{slugify(part.where)}"
        for i, text in enumerate(windows):
            chunks.append(Chunk(id=section_id if i == 0 else f"{section_id}~{i}", section_id=section_id,
                                title=title, section=part.where, text=text, source=f"{path.name}, {part.where}",
                                url=None, year=None))
    if not chunks:
        raise IngestError(f"{path.name}: no text found")
    return chunks


@dataclass
class IngestResult:
    added: dict[str, int]  # file name -> passages
    errors: list[str]


class UserIndex:
    """The user's passages and their vectors on disk (see the module docstring)."""

    def __init__(self, folder: Path, chunks: list[Chunk], vectors: np.ndarray, model: str):
        self.folder = Path(folder)
        self.chunks = chunks
        self.vectors = vectors
        self.model = model

    @classmethod
    def load(cls, folder: Path, model: str) -> UserIndex:
        folder = Path(folder)
        if not (folder / PASSAGES_FILE).is_file():
            return cls(folder, [], np.zeros((0, 0), dtype=np.float32), model)
        try:
            meta = json.loads((folder / META_FILE).read_text())
            chunks = [Chunk(**json.loads(line)) for line in
                      (folder / PASSAGES_FILE).read_text(encoding="utf-8").splitlines() if line.strip()]
            vectors = np.load(folder / VECTORS_FILE)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise KnowledgeError(f"{folder}: the user index is corrupt ({type(e).__name__}); delete it and add "
                                 "the documents again") from None
        if meta.get("model") != model or len(chunks) != len(vectors):
            raise KnowledgeError(f"{folder}: the user index was built with {meta.get('model')!r} for "
                                 f"{len(vectors)} passages; delete it and add the documents again")
        return cls(folder, chunks, vectors.astype(np.float32), model)

    def add(self, paths: list[Path], embedder: Embedder, config: ChunkConfig = ChunkConfig()) -> IngestResult:
        """Read each file (replacing an earlier copy of the same file name); a bad file is one error line."""
        added, errors, new = {}, [], []
        for path in paths:
            try:
                chunks = load_document(path, config)
            except IngestError as e:
                errors.append(str(e))
                continue
            added[Path(path).name] = len(chunks)
            new += chunks
        if new:
            replaced = {c.id.split("#")[0] for c in new}
            keep = [i for i, c in enumerate(self.chunks) if c.id.split("#")[0] not in replaced]
            vectors = embedder.encode([c.embedding_text() for c in new])
            old = self.vectors[keep] if len(keep) else np.zeros((0, vectors.shape[1]), dtype=np.float32)
            self.chunks = [self.chunks[i] for i in keep] + new
            self.vectors = np.concatenate([old, vectors]).astype(np.float32)
        return IngestResult(added, errors)

    def save(self) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        writes = ((PASSAGES_FILE, lambda p: p.write_text("".join(json.dumps(c.to_dict(), ensure_ascii=False) + "\n"
                                                                  for c in self.chunks), encoding="utf-8")),
                  (VECTORS_FILE, lambda p: np.save(p, self.vectors)),
                  (META_FILE, lambda p: p.write_text(json.dumps({"model": self.model, "n_passages": len(self.chunks)},
                                                                indent=2) + "\n")))
        # Beside the target, then renamed: an interrupted add never leaves a half-written index.
        for name, write in writes:
            tmp = self.folder / f".{name}.tmp{'.npy' if name.endswith('.npy') else ''}"
            write(tmp)
            tmp.replace(self.folder / name)
        return self.folder
