"""`murmurscope eval llm-serve-bench`: vLLM serving the shipped audio-LLM (or any model folder) on this machine.

Time to ready (process start to /health 200), one question at a time (median and p90 latency), then
`concurrency` questions in flight (requests/s, errors). Recordings: the first patients of a CirCor
folder, else generated heart sounds.
"""

from __future__ import annotations

import socket
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from assistant.data.audio import Recording


@dataclass(frozen=True)
class ServeBenchResult:
    model: str
    time_to_ready_s: float
    sequential_requests: int
    latency_median_s: float
    latency_p90_s: float
    concurrent_requests: int
    concurrency: int
    requests_per_second: float
    errors: int
    machine: str


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_recordings(circor_root: Path | None, n: int) -> list[Recording]:
    if circor_root is not None:
        from assistant.data.circor import read_folder

        return [ref.load() for p in read_folder(circor_root)[: n] for ref in p.recordings][:n]
    from assistant.data.synth import synth_patient

    return [pcg.recording for k in range(n) for pcg in synth_patient(str(9000 + k), seed=k, duration=12.0)
            .recordings.values()][:n]


def run_serve_bench(model: Path, recordings: list[Recording], sequential: int = 20, concurrent: int = 32,
                    concurrency: int = 8, log_file: Path | None = None, machine: str = "",
                    dtype: str = "auto") -> ServeBenchResult:
    from assistant.llm.client import AudioLLMConfig, AudioLLMError, ask_feature
    from assistant.llm.launcher import LLMServerConfig, start_llm_server
    from assistant.llm.prompts import QUESTION_FEATURES

    cfg = LLMServerConfig(model, port=free_port(), log_file=log_file, dtype=dtype)
    questions = [(recordings[i % len(recordings)], QUESTION_FEATURES[i % len(QUESTION_FEATURES)])
                 for i in range(max(sequential, concurrent))]
    with start_llm_server(cfg) as server:
        client = AudioLLMConfig(cfg.base_url, cfg.name, timeout=300)
        ask_feature(recordings[0], "murmur", client)  # the first request pays for lazy initialisation

        def one(job) -> float | None:
            t = time.perf_counter()
            try:
                ask_feature(job[0], job[1], client)
            except AudioLLMError:
                return None
            return time.perf_counter() - t

        latencies = [one(q) for q in tqdm(questions[:sequential], desc="one at a time", unit="question")]
        start = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            parallel = list(tqdm(pool.map(one, questions[:concurrent]), total=concurrent,
                                 desc=f"{concurrency} in flight", unit="question"))
        elapsed = time.perf_counter() - start
        ready = server.ready_after or float("nan")
    ok = sorted(x for x in latencies if x is not None)
    errors = sum(x is None for x in latencies + parallel)
    return ServeBenchResult(cfg.name, ready, len(ok), statistics.median(ok) if ok else float("nan"),
                            ok[int(0.9 * (len(ok) - 1))] if ok else float("nan"), concurrent, concurrency,
                            concurrent / elapsed, errors, machine)
