"""Hybrid retrieval: BM25 fused with the dense ranking by reciprocal rank, measured on the project's
questions and on 30 questions written without looking at the corpus (eval/data/retrieval_questions_unseen.jsonl)."""

from pathlib import Path

import pytest

from assistant.errors import KnowledgeError
from eval.retrieval_bench import RetrievalBenchConfig, load_questions, run, section_of
from knowledge.lexical import RRF_K, LexicalIndex, reciprocal_rank_fusion
from knowledge.retriever import Retriever

UNSEEN = Path(__file__).resolve().parents[1] / "eval" / "data" / "retrieval_questions_unseen.jsonl"


@pytest.fixture(scope="module")
def retriever():
    return Retriever.load()


def test_rrf_rewards_agreement_over_one_first_place():
    fused = reciprocal_rank_fusion([[1, 2, 3], [2, 4, 1]])
    assert [i for i, _ in fused] == [2, 1, 4, 3]
    assert fused[0][1] == pytest.approx(1 / (RRF_K + 2) + 1 / (RRF_K + 1))


def test_bm25_finds_the_precise_word_and_ignores_unknown_ones():
    lex = LexicalIndex(["The venous hum is a continuous murmur.", "A thrill is a palpable vibration.",
                        "Grading murmurs by loudness."])
    assert lex.rank("palpable thrills", 3)[0][0] == 1  # stemmed: thrills -> thrill
    assert lex.rank("zebra quokka", 3) == [] and not lex.scores("zebra").any()


def test_modes_and_a_bad_mode(retriever):
    for mode in ("dense", "lexical", "hybrid"):
        hits = retriever.search("What is a fixed split S2?", k=3, mode=mode)
        assert hits and section_of(hits[0].id) == "heart_sounds#the-second-heart-sound-and-its-splitting", mode
    with pytest.raises(KnowledgeError, match="search mode"):
        retriever.search("murmur", mode="sparse")
    assert retriever.mode == "hybrid"


@pytest.mark.parametrize("questions", [RetrievalBenchConfig().questions, UNSEEN], ids=["project", "unseen"])
def test_hybrid_is_at_least_as_good_as_either_alone(retriever, questions):
    assert len(load_questions(questions)) >= 30
    result = {m: run(RetrievalBenchConfig(questions=questions, mode=m, repeats=1, warmup=0), retriever=retriever)
              for m in ("dense", "lexical", "hybrid")}
    hybrid = result["hybrid"]
    assert hybrid.recall_at_k >= 0.95, hybrid.misses
    for other in ("dense", "lexical"):
        assert hybrid.recall_at_k >= result[other].recall_at_k and hybrid.mrr_at_k >= result[other].mrr_at_k, other
