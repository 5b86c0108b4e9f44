"""The guidance corpus: Markdown documents, their bibliography, and passages chunked by heading.

A document is YAML front matter (``title``) plus ``## `` sections; each section ends with one
``Sources: key [where]; key [where]`` line whose keys are defined in ``sources.yaml``. A section is
one passage; a section longer than ``max_words`` is split into windows that overlap by whole sentences,
so no fact is cut in half at a window edge.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from assistant.errors import ConfigError, CorpusError

CORPUS_DIR = Path(__file__).resolve().parent / "corpus"
SOURCES_FILE = "sources.yaml"

_SOURCE_ITEM = re.compile(r"([A-Za-z0-9_]+)\s*(?:\[([^\]]*)\])?")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


@dataclass(frozen=True)
class Reference:
    key: str
    citation: str
    year: int | None
    url: str | None


@dataclass(frozen=True)
class Citation:
    reference: Reference
    where: str | None

    def __str__(self) -> str:
        return f"{self.reference.citation}" + (f" Section: {self.where}." if self.where else "")


@dataclass(frozen=True)
class Section:
    doc_id: str
    title: str
    heading: str
    text: str
    citations: tuple[Citation, ...]

    @property
    def id(self) -> str:
        return f"{self.doc_id}#{slugify(self.heading)}"


@dataclass(frozen=True)
class Chunk:
    """One retrievable passage: a section, or one window of a long section."""

    id: str
    section_id: str
    title: str
    section: str
    text: str
    source: str
    url: str | None
    year: int | None

    def embedding_text(self) -> str:
        # The heading carries much of a passage's meaning (e.g. "Venous hum"), so it is embedded too.
        return f"{self.title}. {self.section}. {self.text}"

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ChunkConfig:
    max_words: int = field(default=180, metadata={"help": "Longest passage in words; longer sections are split."})
    overlap_sentences: int = field(default=1, metadata={
        "help": "Sentences shared by consecutive windows of a long section."})

    def __post_init__(self) -> None:
        if self.max_words < 20 or self.overlap_sentences < 0:
            raise ConfigError("--chunk-max-words must be at least 20 and --chunk-overlap-sentences at least 0")


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def load_references(corpus_dir: Path = CORPUS_DIR) -> dict[str, Reference]:
    path = corpus_dir / SOURCES_FILE
    if not path.is_file():
        raise CorpusError(f"{path}: the corpus bibliography is missing")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise CorpusError(f"{path}: not valid YAML ({e.__class__.__name__})") from None
    refs = {}
    for key, entry in raw.items():
        if not isinstance(entry, dict) or not entry.get("citation"):
            raise CorpusError(f"{path}: source {key!r} has no citation")
        year = entry.get("year")
        refs[key] = Reference(key, str(entry["citation"]), int(year) if year else None, entry.get("url") or None)
    return refs


def _split_front_matter(text: str, path: Path) -> tuple[dict, str]:
    if not text.startswith("---\n"):
        return {}, text
    end = text.find("\n---\n", 4)
    if end < 0:
        raise CorpusError(f"{path}: front matter is not closed with '---'")
    try:
        meta = yaml.safe_load(text[4:end]) or {}
    except yaml.YAMLError:
        raise CorpusError(f"{path}: front matter is not valid YAML") from None
    return meta, text[end + 5:]


def _parse_sources(line: str, refs: dict[str, Reference], where: str) -> tuple[Citation, ...]:
    rest = line.split(":", 1)[1]
    if _SOURCE_ITEM.sub("", rest).strip(" ;\t"):
        raise CorpusError(f"{where}: Sources line is not 'key [where]; key [where]'")
    citations = []
    for key, loc in _SOURCE_ITEM.findall(rest):
        if key not in refs:
            raise CorpusError(f"{where}: unknown source {key!r} (define it in {SOURCES_FILE})")
        citations.append(Citation(refs[key], loc.strip() or None))
    if not citations:
        raise CorpusError(f"{where}: empty Sources line")
    return tuple(citations)


def parse_document(path: Path, refs: dict[str, Reference]) -> list[Section]:
    meta, body = _split_front_matter(path.read_text(encoding="utf-8"), path)
    title = str(meta.get("title") or path.stem.replace("_", " "))
    sections: list[Section] = []
    for block in re.split(r"^## ", body, flags=re.M)[1:]:
        heading, _, rest = block.partition("\n")
        heading = heading.strip()
        where = f"{path.name} / {heading}"
        lines = rest.strip().splitlines()
        source_lines = [i for i, ln in enumerate(lines) if ln.startswith("Sources:")]
        if not source_lines:
            raise CorpusError(f"{where}: section has no 'Sources:' line")
        citations = _parse_sources(lines[source_lines[-1]], refs, where)
        text = " ".join(" ".join(ln.split()) for ln in lines[:source_lines[-1]] if ln.strip())
        if not text:
            raise CorpusError(f"{where}: section has no text")
        sections.append(Section(path.stem, title, heading, text, citations))
    return sections


def load_sections(corpus_dir: Path = CORPUS_DIR) -> list[Section]:
    refs = load_references(corpus_dir)
    docs = sorted(corpus_dir.glob("*.md"))
    if not docs:
        raise CorpusError(f"{corpus_dir}: no Markdown documents")
    sections = [s for doc in docs for s in parse_document(doc, refs)]
    seen: set[str] = set()
    for s in sections:
        if s.id in seen:
            raise CorpusError(f"{s.doc_id}: two sections are both called {s.heading!r}")
        seen.add(s.id)
    return sections


def split_sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(text) if s]


def _windows(sentences: list[str], config: ChunkConfig) -> list[list[str]]:
    windows: list[list[str]] = []
    start = 0
    while start < len(sentences):
        end, words = start, 0
        while end < len(sentences) and (end == start or words + len(sentences[end].split()) <= config.max_words):
            words += len(sentences[end].split())
            end += 1
        windows.append(sentences[start:end])
        if end >= len(sentences):
            break
        # Step back by the overlap, but always move forward by at least one sentence.
        start = max(end - config.overlap_sentences, start + 1)
    return windows


def chunk_section(section: Section, config: ChunkConfig = ChunkConfig()) -> list[Chunk]:
    # The passage's single url/year come from the first source that has a checkable link.
    first = next((c.reference for c in section.citations if c.reference.url), section.citations[0].reference)
    source = " | ".join(str(c) for c in section.citations)
    windows = [section.text] if len(section.text.split()) <= config.max_words else [
        " ".join(w) for w in _windows(split_sentences(section.text), config)]
    return [Chunk(id=section.id if i == 0 else f"{section.id}~{i}", section_id=section.id, title=section.title,
                  section=section.heading, text=text, source=source, url=first.url, year=first.year)
            for i, text in enumerate(windows)]


def load_chunks(corpus_dir: Path = CORPUS_DIR, config: ChunkConfig = ChunkConfig()) -> list[Chunk]:
    return [c for s in load_sections(corpus_dir) for c in chunk_section(s, config)]


def corpus_hash(corpus_dir: Path = CORPUS_DIR) -> str:
    """A digest of every file the index is built from; a changed digest means a stale index."""
    h = hashlib.sha256()
    files = sorted([*corpus_dir.glob("*.md"), corpus_dir / SOURCES_FILE])
    for f in files:
        if f.is_file():
            h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()
