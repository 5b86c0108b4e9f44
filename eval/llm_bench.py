"""Benchmark of the audio-LLM chain on the tiny model: SFT speed and memory, vLLM start-up and throughput.

Also prints the recommended settings for `Qwen/Qwen2-Audio-7B-Instruct` on a GPU with where they come
from; those are not measured here (no GPU, no 7B weights), and say so.
"""

from __future__ import annotations

import concurrent.futures
import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from assistant.errors import MurmurScopeError

GPU_RECOMMENDATION = {
    "model": "Qwen/Qwen2-Audio-7B-Instruct (8.4 B parameters)",
    "lora": "rank 8, alpha 32, dropout 0.05, language-model q/k/v/o/gate/up/down projections",
    "optimiser": "AdamW, lr 1e-4, cosine, warm-up 3 %",
    "batch": "1 per device x 16 gradient-accumulation steps, bf16, gradient checkpointing",
    "memory": "about 17 GB of bf16 weights + LoRA states and activations: one 40-80 GB GPU (A100/H100); "
              "24 GB is too tight without quantisation",
    "sources": [
        "ms-swift's Qwen2-Audio-7B-Instruct LoRA recipe (swift sft --lora_rank 8 --lora_alpha 32 "
        "--learning_rate 1e-4 --per_device_train_batch_size 1 --gradient_accumulation_steps 16 "
        "--torch_dtype bfloat16)",
        "Hu et al. 2021, LoRA (arXiv:2106.09685): rank 8 on attention matches full fine-tuning",
        "memory: 2 bytes x 8.4e9 parameters for the bf16 weights (an estimate, not measured here)",
    ],
}


class BenchError(MurmurScopeError):
    pass


@dataclass(frozen=True)
class LLMBenchResult:
    sft_steps: int
    sft_batch_size: int
    sft_steps_per_second: float
    sft_peak_rss_mib: float
    vllm_time_to_ready_s: float
    vllm_requests: int
    vllm_concurrency: int
    vllm_requests_per_second: float
    vllm_latency_median_s: float
    machine: str


def run_llm_bench(work: Path, sft_steps: int = 10, batch_size: int = 2, requests: int = 16,
                  concurrency: int = 4, machine: str = "") -> LLMBenchResult:
    from assistant.data.circor import read_folder
    from assistant.data.synth import write_circor_folder
    from assistant.llm.client import AudioLLMConfig, ask_feature
    from assistant.llm.launcher import LLMServerConfig, start_llm_server
    from eval.llm_serve_bench import free_port
    from finetune.export import merge_adapter
    from finetune.qa import QAConfig, build_qa
    from finetune.sft import AudioSFTConfig, train
    from finetune.tiny_model import TinyModelConfig, write_tiny_model

    work = Path(work)
    if work.exists() and any(work.iterdir()):
        raise BenchError(f"{work}: not empty; choose a new folder")
    write_circor_folder(work / "synth", n_patients=8, seed=3, duration=10.0)
    build_qa(QAConfig(work / "synth", work / "qa", max_clip_seconds=8.0))
    write_tiny_model(TinyModelConfig(work / "tiny"))
    sft = train(AudioSFTConfig(model=str(work / "tiny"), data=work / "qa", out=work / "adapter",
                               max_steps=sft_steps, batch_size=batch_size, grad_accum=1, logging_steps=1))
    merge_adapter(str(work / "tiny"), work / "adapter", work / "merged")

    recordings = [ref.load() for p in read_folder(work / "synth") for ref in p.recordings][:requests]
    cfg = LLMServerConfig(work / "merged", port=free_port(), served_model_name="tiny", dtype="float32",
                          log_file=work / "vllm.log")
    with start_llm_server(cfg) as server:
        client = AudioLLMConfig(cfg.base_url, "tiny", timeout=300)
        ask_feature(recordings[0], "murmur", client)  # the first request pays for lazy initialisation

        def one(rec) -> float:
            t = time.perf_counter()
            ask_feature(rec, "murmur", client)
            return time.perf_counter() - t

        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            latencies = list(pool.map(one, [recordings[i % len(recordings)] for i in range(requests)]))
        elapsed = time.perf_counter() - start
        ready = server.ready_after or float("nan")
    result = LLMBenchResult(sft.steps, batch_size, sft.steps_per_second, sft.peak_rss_mib, ready, requests,
                            concurrency, requests / elapsed, statistics.median(latencies), machine)
    (work / "llm_bench.json").write_text(json.dumps({"measured": asdict(result),
                                                     "gpu_recommendation": GPU_RECOMMENDATION}, indent=2) + "\n")
    return result
