"""Consultation benchmark: warm `analyze` latency per patient (four 20 s recordings) and the API under
20 concurrent `/v1/analyze` requests (p50, p99, errors), on the shipped models."""

from __future__ import annotations

import io
import json
import socket
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm


@dataclass(frozen=True)
class ConsultBenchConfig:
    """What `murmurscope eval consult-bench` measures; its options are built from these fields."""

    runs: int = field(default=7, metadata={"help": "Timed analyze runs after warm-up."})
    warmup: int = field(default=2, metadata={"help": "Untimed warm-up runs."})
    concurrency: int = field(default=20, metadata={"help": "Concurrent /v1/analyze requests."})
    duration: float = field(default=20.0, metadata={"help": "Seconds per recording (four recordings per patient)."})
    threads: int = field(default=2, metadata={"help": "torch threads (the 2-core target)."})
    seed: int = field(default=11, metadata={"help": "Seed of the synthetic patient."})
    out_dir: Path = field(default=Path("build/consult_bench"), metadata={"help": "Where the JSON and PNG go."})


@dataclass
class ConsultBenchResult:
    threads: int
    analyze_runs_s: list[float]
    analyze_median_s: float
    analyze_p90_s: float
    api_requests: int
    api_errors: int
    api_p50_s: float
    api_p99_s: float
    api_wall_s: float
    target_analyze_s: float = 2.0

    def to_dict(self) -> dict:
        return asdict(self)


def _patient(config: ConsultBenchConfig):
    from assistant.data.synth import synth_patient

    p = synth_patient("bench", seed=config.seed, murmur="Present", duration=config.duration)
    return [pcg.recording for pcg in p.recordings.values()]


def _wav(rec) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, rec.samples, rec.rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_analyze(analyzer, recordings, config: ConsultBenchConfig) -> list[float]:
    for _ in range(config.warmup):
        analyzer.analyze(recordings)
    times = []
    for _ in tqdm(range(config.runs), desc="analyze (warm)"):
        t = time.perf_counter()
        analyzer.analyze(recordings)
        times.append(time.perf_counter() - t)
    return times


def bench_api(analyzer, recordings, config: ConsultBenchConfig) -> tuple[list[float], int, float]:
    import httpx
    import uvicorn

    from assistant.consult.consultation import Consultation
    from assistant.serve.app import APIConfig, create_app

    app = create_app(Consultation(analyzer), APIConfig(max_upload_mb=50))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    while not server.started:
        time.sleep(0.05)
    files = [("files", (f"{r.site}.wav", _wav(r), "audio/wav")) for r in recordings]
    data = {"sites": [r.site for r in recordings]}

    def one(_):
        t = time.perf_counter()
        try:
            ok = httpx.post(f"{url}/v1/analyze", files=files, data=data, timeout=600).status_code == 200
        except httpx.HTTPError:
            ok = False
        return time.perf_counter() - t, ok

    try:
        one(0)  # warm the server path
        start = time.perf_counter()
        with ThreadPoolExecutor(config.concurrency) as pool:
            results = list(tqdm(pool.map(one, range(config.concurrency)), total=config.concurrency,
                                desc=f"API, {config.concurrency} concurrent /v1/analyze"))
        wall = time.perf_counter() - start
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    return [t for t, _ in results], sum(not ok for _, ok in results), wall


def run(config: ConsultBenchConfig = ConsultBenchConfig(), analyzer=None) -> ConsultBenchResult:
    import torch

    from assistant.consult.analyzer import Analyzer

    torch.set_num_threads(config.threads)
    analyzer = analyzer or Analyzer.load()
    recordings = _patient(config)
    times = bench_analyze(analyzer, recordings, config)
    api_times, errors, wall = bench_api(analyzer, recordings, config)
    result = ConsultBenchResult(
        threads=config.threads,
        analyze_runs_s=[round(t, 3) for t in times],
        analyze_median_s=round(statistics.median(times), 3),
        analyze_p90_s=round(float(np.percentile(times, 90)), 3),
        api_requests=len(api_times),
        api_errors=errors,
        api_p50_s=round(float(np.percentile(api_times, 50)), 3),
        api_p99_s=round(float(np.percentile(api_times, 99)), 3),
        api_wall_s=round(wall, 3),
    )
    config.out_dir.mkdir(parents=True, exist_ok=True)
    (config.out_dir / "consult_bench.json").write_text(json.dumps(result.to_dict(), indent=2))
    _plot(config.out_dir / "consult_bench.png", times, api_times, result)
    return result


def _plot(path: Path, times: list[float], api_times: list[float], result: ConsultBenchResult) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5), constrained_layout=True)
    a.plot(range(1, len(times) + 1), times, "o-")
    a.axhline(result.target_analyze_s, color="tab:red", linestyle="--", label="target 2 s")
    a.set(title=f"analyze, warm (median {result.analyze_median_s:.2f} s)", xlabel="run", ylabel="s", ylim=(0, None))
    a.legend()
    b.hist(api_times, bins=10)
    b.set(title=f"{result.api_requests} concurrent /v1/analyze: p50 {result.api_p50_s:.2f} s, "
                f"p99 {result.api_p99_s:.2f} s, {result.api_errors} errors", xlabel="latency (s)", ylabel="requests")
    fig.savefig(path, dpi=110)
    plt.close(fig)
