"""Retrieval benchmark for the guidance index: recall@k, MRR@k and query latency (embedding included).

The questions (eval/data/retrieval_questions.jsonl) are clinician-style paraphrases written for this
project; each names the section id(s) that answer it. A hit is any retrieved passage whose section is
expected (long sections are split into windows that share the section id).
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from assistant.errors import ConfigError, KnowledgeError
from knowledge.retriever import SearchMode

QUESTIONS = Path(__file__).resolve().parent / "data" / "retrieval_questions.jsonl"


@dataclass(frozen=True)
class RetrievalBenchConfig:
    """What `murmurscope eval retrieval` measures; its options are built from these fields."""

    questions: Path = field(default=QUESTIONS, metadata={"help": "Question file (JSONL)."})
    index_dir: Path | None = field(default=None, metadata={
        "help": "Index folder [default: the shipped index].", "name": "index"})
    k: int = field(default=5, metadata={"help": "Passages retrieved per question.", "aliases": ("-k",)})
    # Untimed queries first: the first calls pay for lazy initialisation.
    warmup: int = field(default=5, metadata={"help": "Untimed queries before timing."})
    repeats: int = field(default=3, metadata={"help": "Timed passes over the questions (for a stable p99)."})
    threads: int | None = field(default=None, metadata={
        "help": "torch intra-op threads while timing [default: torch's]."})
    mode: SearchMode | None = field(default=None, metadata={
        "help": "Ranking: dense, lexical (BM25) or hybrid (both, fused by rank) [default: the retriever's, hybrid]."})

    def __post_init__(self) -> None:
        if self.repeats < 1:
            raise ConfigError(f"--repeats must be at least 1, not {self.repeats}")


@dataclass(frozen=True)
class Question:
    question: str
    expected: tuple[str, ...]


@dataclass
class RetrievalBenchResult:
    n_questions: int
    k: int
    recall_at_k: float
    mrr_at_k: float
    latency_p50_ms: float
    latency_p99_ms: float
    latency_mean_ms: float
    n_timed: int
    misses: list[dict] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("latencies_ms")
        return d


def load_questions(path: Path) -> list[Question]:
    if not Path(path).is_file():
        raise KnowledgeError(f"{path}: no such question file")
    questions = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            questions.append(Question(str(row["question"]), tuple(row["expected"])))
        except (ValueError, KeyError, TypeError):
            raise KnowledgeError(f"{path}:{n}: expected {{\"question\": ..., \"expected\": [section ids]}}") from None
    if not questions:
        raise KnowledgeError(f"{path}: no questions")
    return questions


def section_of(passage_id: str) -> str:
    return passage_id.split("~", 1)[0]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def run(config: RetrievalBenchConfig = RetrievalBenchConfig(), retriever=None, progress: bool = False
        ) -> RetrievalBenchResult:
    from tqdm import tqdm

    from knowledge.retriever import Retriever

    questions = load_questions(config.questions)
    retriever = retriever or Retriever.load(config.index_dir)
    known = {section_of(p.id) for p in retriever.index.passages}
    unknown = sorted({e for q in questions for e in q.expected} - known)
    if unknown:
        raise KnowledgeError(f"{config.questions}: expected sections not in the index: {', '.join(unknown[:3])}")
    if config.threads:
        import torch

        torch.set_num_threads(config.threads)

    hits, reciprocal, misses = 0, 0.0, []
    for q in questions:
        ranked = [section_of(p.id) for p in retriever.search(q.question, config.k, mode=config.mode)]
        rank = next((i for i, s in enumerate(ranked, 1) if s in q.expected), None)
        if rank:
            hits += 1
            reciprocal += 1 / rank
        else:
            misses.append({"question": q.question, "expected": list(q.expected), "got": ranked[:3]})

    for q in questions[: config.warmup]:
        retriever.search(q.question, config.k, mode=config.mode)
    latencies = []
    for _ in tqdm(range(config.repeats), desc="timing", disable=not progress):
        for q in questions:
            start = time.perf_counter()
            retriever.search(q.question, config.k, mode=config.mode)
            latencies.append((time.perf_counter() - start) * 1000)
    return RetrievalBenchResult(len(questions), config.k, hits / len(questions), reciprocal / len(questions),
                                percentile(latencies, 50), percentile(latencies, 99), statistics.fmean(latencies),
                                len(latencies), misses, latencies)


def plot_latency(result: RetrievalBenchResult, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(result.latencies_ms, bins=40)
    for value, label in ((result.latency_p50_ms, "p50"), (result.latency_p99_ms, "p99")):
        ax.axvline(value, color="k", linestyle="--", linewidth=1)
        ax.text(value, ax.get_ylim()[1] * 0.9, f" {label} {value:.1f}", fontsize=8)
    ax.set_title(f"recall@{result.k} {result.recall_at_k:.3f}, MRR@{result.k} {result.mrr_at_k:.3f}, "
                 f"n={result.n_questions}", fontsize=9)
    ax.set_xlabel("query latency (ms, embedding + FAISS search)")
    ax.set_ylabel("queries")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
