"""Lexical ranking of the guidance passages (BM25, `bm25s`, Snowball-stemmed English) and reciprocal
rank fusion with the dense ranking.

Dense embeddings find passages on the question's theme; BM25 finds the passage that uses the question's
precise words ("thrill", "Levine", "venous hum"). Fusing the two rankings by rank, not by score, needs no
calibration between cosine similarities and BM25 scores.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Cormack, Clarke and Buettcher (SIGIR 2009): k = 60 damps the weight of the very top ranks so that
# agreement between rankings counts for more than one ranking's first place.
RRF_K = 60


def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


class LexicalIndex:
    """BM25 over the passages' embedding texts (title, section, body), built in memory at load: a few
    milliseconds for a corpus of this size, so nothing extra is stored beside the FAISS index."""

    def __init__(self, texts: Sequence[str]):
        import bm25s

        self._bm25s = bm25s
        self._stemmer = _stemmer()
        self.n = len(texts)
        self.bm25 = bm25s.BM25()
        self.bm25.index(self._tokens(list(texts)), show_progress=False)

    def _tokens(self, texts: list[str]) -> list[list[str]]:
        return self._bm25s.tokenize(texts, stopwords="en", stemmer=self._stemmer, return_ids=False,
                                    show_progress=False)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every passage (all zero when no query word is in the corpus)."""
        tokens = [t for t in self._tokens([query])[0] if t in self.bm25.vocab_dict]
        if not tokens:
            return np.zeros(self.n, dtype=np.float32)
        return np.asarray(self.bm25.get_scores(tokens), dtype=np.float32)

    def rank(self, query: str, k: int) -> list[tuple[int, float]]:
        """The k best (passage index, score) pairs with a positive score, best first."""
        s = self.scores(query)
        order = np.argsort(-s, kind="stable")[:k]
        return [(int(i), float(s[i])) for i in order if s[i] > 0]


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], k: int = RRF_K) -> list[tuple[int, float]]:
    """Items of several best-first rankings ordered by the sum of 1 / (k + rank), best first."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, 1):
            fused[item] = fused.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(fused.items(), key=lambda kv: -kv[1])
