import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from assistant.errors import (
    CorpusError,
    EmptyQueryError,
    IndexCorruptError,
    IndexMissingError,
    KnowledgeError,
    StaleIndexError,
)
from knowledge.documents import ChunkConfig, chunk_section, corpus_hash, load_chunks, load_sections
from knowledge.index import GuidanceIndex, IndexConfig
from knowledge.retriever import PREBUILT_DIR, Retriever

SOURCES = """\
ref_a:
  citation: "Author A. A paper. Journal. 2020;1:1-2."
  year: 2020
  url: https://doi.org/10.0000/a
ref_b:
  citation: "Author B. A book. 1999."
  year: 1999
  url: null
"""

DOC = """\
---
title: Test document
---
# Test document

## Venous hum

A venous hum is a continuous humming sound above the clavicle. It fades when the child lies down.

Sources: ref_a [Table 2]; ref_b

## Long section

{long}

Sources: ref_b [chapter 3]
"""

LONG = " ".join(f"Sentence number {i} talks about mitral regurgitation and its blowing murmur." for i in range(30))


def _write_corpus(root: Path, doc: str = DOC) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "sources.yaml").write_text(SOURCES)
    (root / "doc.md").write_text(doc.format(long=LONG))
    return root


@pytest.fixture(scope="module")
def retriever() -> Retriever:
    return Retriever.load()


@pytest.fixture(scope="module")
def embedder(retriever):
    return retriever.embedder


# --- corpus and chunking -------------------------------------------------------------------------------------------

def test_sections_carry_their_sources(tmp_path):
    sections = load_sections(_write_corpus(tmp_path / "c"))
    hum = sections[0]
    assert hum.id == "doc#venous-hum" and hum.title == "Test document"
    assert [c.reference.key for c in hum.citations] == ["ref_a", "ref_b"]
    assert hum.citations[0].where == "Table 2" and hum.citations[1].where is None
    chunk = chunk_section(hum)[0]
    assert chunk.url == "https://doi.org/10.0000/a" and chunk.year == 2020 and "Table 2" in chunk.source


def test_long_section_splits_with_sentence_overlap(tmp_path):
    section = load_sections(_write_corpus(tmp_path / "c"))[1]
    chunks = chunk_section(section, ChunkConfig(max_words=60, overlap_sentences=1))
    assert len(chunks) > 2
    assert all(len(c.text.split()) <= 60 for c in chunks)
    assert {c.section_id for c in chunks} == {"doc#long-section"} and len({c.id for c in chunks}) == len(chunks)
    for a, b in zip(chunks, chunks[1:]):
        last_sentence = a.text.rsplit(". ", 1)[-1]
        assert b.text.startswith(last_sentence.rstrip(".")), "consecutive windows share one sentence"
    joined = " ".join(c.text for c in chunks)
    assert all(f"Sentence number {i} " in joined for i in range(30)), "no sentence is lost"


@pytest.mark.parametrize("bad", ["Sources: nobody [x]", "", "Sources: ref_a [unclosed"])
def test_bad_sources_line_is_rejected(tmp_path, bad):
    doc = DOC.replace("Sources: ref_a [Table 2]; ref_b", bad)
    with pytest.raises(CorpusError):
        load_sections(_write_corpus(tmp_path / "c", doc))


def test_shipped_corpus_is_substantive_and_cited():
    sections = load_sections()
    assert len(sections) >= 40
    for s in sections:
        assert len(s.text.split()) >= 60, s.id
        assert s.citations and all(c.reference.citation for c in s.citations)
        assert all((c.reference.url or "https://").startswith("https://") for c in s.citations)
    topics = {s.doc_id for s in sections}
    assert {"grading", "timing_and_shape", "pitch_and_quality", "auscultation_sites", "pediatric_murmurs",
            "referral_and_echo", "circor_labels", "automated_auscultation_limits"} <= topics


def test_shipped_index_matches_the_corpus():
    index = GuidanceIndex.load(PREBUILT_DIR)
    assert not index.is_stale(), "corpus changed: run `murmurscope index build` and commit knowledge/prebuilt"
    assert [c.id for c in index.passages] == [c.id for c in load_chunks()]


# --- index round trip ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_index_round_trip(tmp_path, embedder, kind):
    corpus = _write_corpus(tmp_path / "c")
    config = IndexConfig(corpus_dir=corpus, kind=kind, chunk=ChunkConfig(max_words=60))
    built = GuidanceIndex.build(config, embedder=embedder)
    built.save(tmp_path / "idx")
    loaded = Retriever(GuidanceIndex.load(tmp_path / "idx"), embedder)
    assert loaded.index.meta == built.meta and loaded.index.meta.kind == kind
    hits = loaded.search("continuous hum above the collarbone in a child", k=3)
    assert hits[0].id == "doc#venous-hum" and hits[0].source.startswith("Author A")
    direct = Retriever(built, embedder).search("continuous hum above the collarbone in a child", k=3)
    assert [p.id for p in hits] == [p.id for p in direct]
    assert hits[0].score == pytest.approx(direct[0].score, abs=1e-5)


def test_missing_and_corrupt_index_are_reported(tmp_path):
    with pytest.raises(IndexMissingError, match="murmurscope index build"):
        Retriever.load(tmp_path / "nowhere")
    broken = tmp_path / "broken"
    shutil.copytree(PREBUILT_DIR, broken)
    (broken / "index.faiss").write_bytes(b"not a faiss index")
    with pytest.raises(IndexCorruptError):
        Retriever.load(broken)
    shutil.copy(PREBUILT_DIR / "index.faiss", broken / "index.faiss")
    lines = (broken / "passages.jsonl").read_text().splitlines()
    (broken / "passages.jsonl").write_text("\n".join(lines[:-3]) + "\n")
    with pytest.raises(IndexCorruptError, match="inconsistent"):
        Retriever.load(broken)


def test_stale_index_is_detected(tmp_path, embedder):
    corpus = _write_corpus(tmp_path / "c")
    GuidanceIndex.build(IndexConfig(corpus_dir=corpus), embedder=embedder).save(tmp_path / "idx")
    before = corpus_hash(corpus)
    (corpus / "doc.md").write_text((corpus / "doc.md").read_text().replace("humming", "buzzing"))
    assert corpus_hash(corpus) != before
    with pytest.raises(StaleIndexError, match="older than its corpus"):
        Retriever.load(tmp_path / "idx")


def test_default_index_is_rebuilt_when_missing(tmp_path, monkeypatch):
    import knowledge.retriever as retriever_module

    monkeypatch.setattr(retriever_module, "PREBUILT_DIR", tmp_path / "prebuilt")
    monkeypatch.setenv("MURMURSCOPE_CACHE", str(tmp_path / "cache"))
    rebuilt = Retriever.load()
    assert (tmp_path / "prebuilt" / "index.faiss").is_file()
    assert rebuilt.search("venous hum", k=1)[0].id == "pediatric_murmurs#venous-hum"


# --- retrieval quality and bad input ------------------------------------------------------------------------------

def test_recall_on_the_question_set(retriever):
    from eval.retrieval_bench import RetrievalBenchConfig, load_questions, run

    assert len(load_questions(RetrievalBenchConfig().questions)) >= 50
    result = run(RetrievalBenchConfig(repeats=1, warmup=0), retriever=retriever)
    assert result.recall_at_k >= 0.90, result.misses
    assert 0 < result.mrr_at_k <= result.recall_at_k


@pytest.mark.parametrize("query", ["", "   \n\t"])
def test_empty_query_is_a_clear_error(retriever, query):
    with pytest.raises(EmptyQueryError):
        retriever.search(query)


def test_bad_k_is_a_clear_error(retriever):
    with pytest.raises(KnowledgeError):
        retriever.search("venous hum", k=0)


def test_very_long_and_non_english_queries_are_best_effort(retriever):
    long = "Which murmurs in children are innocent? " + "lorem ipsum " * 20000
    assert len(retriever.search(long, k=5)) == 5
    for query in ("sopro holossistólico em criança: quando encaminhar?", "心雑音", "🙂🙂"):
        passages = retriever.search(query, k=3)
        assert len(passages) == 3 and all(p.source for p in passages)


def test_k_larger_than_the_corpus(retriever):
    assert len(retriever.search("murmur", k=10_000)) == len(retriever.index.passages)


# --- LangChain tool ------------------------------------------------------------------------------------------------

def test_langchain_tool(retriever):
    tool = retriever.as_tool()
    assert tool.name == "search_guidance"
    text = tool.invoke({"query": "when should a child with a murmur see a cardiologist?", "k": 3})
    assert text.count("Source:") == 3 and "[1]" in text
    message = tool.invoke({"type": "tool_call", "id": "call-1", "name": "search_guidance",
                           "args": {"query": "what does Unknown mean in CirCor?"}})
    assert message.artifact[0]["id"] == "circor_labels#murmur-present-absent-or-unknown"
    assert {"source", "section", "url", "score"} <= set(message.artifact[0])
    error = tool.invoke({"query": "  "})
    assert "empty" in error  # reported to the agent, not raised


# --- CLI ----------------------------------------------------------------------------------------------------------

def _run(*args):
    return subprocess.run([sys.executable, "-c", "from assistant.cli.main import main; main()", *args],
                          capture_output=True, text=True)


def test_cli_query_and_errors(tmp_path):
    ok = _run("index", "query", "venous hum in a toddler", "-k", "2", "--json")
    assert ok.returncode == 0, ok.stderr
    passages = json.loads(ok.stdout)
    assert len(passages) == 2 and passages[0]["id"] == "pediatric_murmurs#venous-hum"
    for args in (["index", "query", " "], ["index", "query", "hum", "--index", str(tmp_path / "none")]):
        bad = _run(*args)
        assert bad.returncode == 2 and "Traceback" not in bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr


@pytest.mark.slow
def test_cli_build_then_query(tmp_path):
    corpus = _write_corpus(tmp_path / "c")
    built = _run("index", "build", "--out", str(tmp_path / "idx"), "--corpus", str(corpus), "--kind", "hnsw")
    assert built.returncode == 0, built.stderr
    got = _run("index", "query", "venous hum", "--index", str(tmp_path / "idx"), "-k", "1", "--json")
    assert json.loads(got.stdout)[0]["id"] == "doc#venous-hum"
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep me")
    refused = _run("index", "build", "--out", str(tmp_path / "notes"), "--corpus", str(corpus))
    assert refused.returncode == 2 and (tmp_path / "notes" / "mine.txt").read_text() == "keep me"
