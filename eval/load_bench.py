"""`murmurscope eval load`: the API under concurrent load, on loopback only.

Starts `murmurscope serve api` on 127.0.0.1 in a subprocess (the shipped models, no chat model: a chat
reply is the findings report, so every request does real analysis), then sends N concurrent
`/v1/analyze` requests and N concurrent chat requests with inline audio, one phase after the other.
Records status codes, latency percentiles and the server's resident memory (sampled every 100 ms);
then sends the audio bombs and a 300 MB chunked body with a lying Content-Length, and records how
fast each is refused and how much the server's memory grew meanwhile.
"""

from __future__ import annotations

import base64
import io
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import httpx
import numpy as np
import psutil
import soundfile as sf

from eval.hostile import chunked, flac_bomb, raw_post

KEY = "load-bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Phase:
    name: str
    requests: int
    statuses: dict[str, int]
    p50_s: float
    p99_s: float
    max_s: float
    wall_s: float


@dataclass
class Hostile:
    name: str
    status: int
    seconds: float
    rss_growth_mb: float  # peak while it was answered, over the RSS just before


@dataclass
class LoadResult:
    phases: list[Phase]
    rss_start_mb: float
    rss_peak_mb: float
    rss_end_mb: float
    server_options: list[str]
    hostile: list[Hostile]

    def to_dict(self) -> dict:
        return asdict(self)


def _wav(seconds: float, seed: int) -> bytes:
    from assistant.data.synth import SynthConfig, synthesize

    rec = synthesize(SynthConfig(duration=seconds, seed=seed)).recording
    buf = io.BytesIO()
    sf.write(buf, rec.samples, rec.rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _phase(name: str, n: int, send) -> Phase:
    latencies, statuses = [], Counter()
    lock = threading.Lock()

    def one(k: int) -> None:
        start = time.perf_counter()
        try:
            status = str(send(k).status_code)
        except httpx.HTTPError as e:
            status = type(e).__name__
        with lock:
            latencies.append(time.perf_counter() - start)
            statuses[status] += 1

    start = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        list(pool.map(one, range(n)))
    lat = np.array(latencies)
    return Phase(name, n, dict(statuses), float(np.percentile(lat, 50)), float(np.percentile(lat, 99)),
                 float(lat.max()), time.perf_counter() - start)


def run(n: int = 50, seconds: float = 8.0, timeout_s: float = 600.0,
        server_options: tuple[str, ...] = ()) -> LoadResult:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    options = ["--host", "127.0.0.1", "--port", str(port), "--api-key", KEY, *server_options]
    server = subprocess.Popen([sys.executable, "-c", "from assistant.cli.main import main; main()", "serve", "api",
                               *options], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={k: v for k, v in os.environ.items() if not k.startswith("MURMURSCOPE_CHAT")})
    try:
        proc = psutil.Process(server.pid)
        deadline = time.time() + 300
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline or server.poll() is not None:
                raise RuntimeError("the API server did not start")
            time.sleep(0.5)
        rss_start = proc.memory_info().rss / 2**20
        peak = [rss_start]
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.is_set():
                peak[0] = max(peak[0], proc.memory_info().rss / 2**20)
                time.sleep(0.1)

        threading.Thread(target=sample, daemon=True).start()
        wavs = [_wav(seconds, seed) for seed in range(4)]
        headers = {"Authorization": f"Bearer {KEY}"}
        with httpx.Client(timeout=timeout_s, headers=headers, limits=httpx.Limits(max_connections=2 * n)) as client:
            def analyze(k: int) -> httpx.Response:
                return client.post(f"{url}/v1/analyze", files=[("files", (f"{k}_AV.wav", wavs[k % 4], "audio/wav"))])

            def chat(k: int) -> httpx.Response:
                audio = base64.b64encode(wavs[k % 4]).decode()
                return client.post(f"{url}/v1/chat/completions", json={"model": "murmurscope", "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "Is there a murmur?"},
                                                 {"type": "input_audio", "input_audio": {"data": audio,
                                                                                         "format": "wav"}}]}]})

            phases = [_phase("/v1/analyze", n, analyze), _phase("/v1/chat/completions with audio", n, chat)]
            load_peak = peak[0]
            hostile = []

            def measured(name: str, send) -> None:
                before = peak[0] = proc.memory_info().rss / 2**20
                start = time.perf_counter()
                status = send()
                time.sleep(0.3)  # one more RSS sample after the answer
                hostile.append(Hostile(name, status, time.perf_counter() - start - 0.3, peak[0] - before))

            bombs = [("files", ("bomb.flac", flac_bomb(96_000, 8, 599), "audio/flac")),
                     ("files", ("bomb655.flac", flac_bomb(655_000, 1, 599), "audio/flac"))]
            measured("FLAC bombs (8 ch x 96 kHz x 599 s; 655 kHz) to /v1/analyze",
                     lambda: client.post(f"{url}/v1/analyze", files=bombs).status_code)
            lying = {**headers, "Content-Type": "application/json", "Content-Length": "10",
                     "Transfer-Encoding": "chunked"}
            measured("300 MB chunked body with Content-Length: 10 to /v1/chat/completions",
                     lambda: raw_post(url, "/v1/chat/completions", lying, chunked(300 << 20))[0])
        sampling.set()
        return LoadResult(phases, rss_start, load_peak, proc.memory_info().rss / 2**20, options, hostile)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
