"""`murmurscope serve api` and `murmurscope serve llm`: the consultation API and the audio-LLM server."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

out = Console()
err = Console(stderr=True)
LOOPBACK = ("127.0.0.1", "localhost", "::1")
app = typer.Typer(help="Run the servers: the API and the audio-LLM.", no_args_is_help=True)


@app.command("api")
def serve_api(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8080,
    api_key: Annotated[str | None, typer.Option(envvar="MURMURSCOPE_API_KEY", help="Require this bearer key.")] = None,
    max_upload_mb: Annotated[float, typer.Option(help="Largest request body, counted as received.")] = 25.0,
    max_recording_mb: Annotated[float, typer.Option(help="Largest single recording as sent.")] = 25.0,
    max_messages: Annotated[int, typer.Option(help="Most messages in one chat request.")] = 256,
    max_text_chars: Annotated[int, typer.Option(help="Most text characters in one chat request.")] = 200_000,
    workers: Annotated[int, typer.Option(help="Threads doing model work.")] = 4,
    max_queued: Annotated[int, typer.Option(help="Requests waiting for a worker before 503.")] = 64,
    deadline_s: Annotated[float, typer.Option(help="Time one request may take before 504.")] = 120.0,
    allow_remote_audio: Annotated[bool, typer.Option(help="Fetch http(s) audio URLs.")] = False,
    allowed_local_audio_dir: Annotated[Path | None, typer.Option(help="Allow file:// audio under this folder.")] = None,
    upload_dir: Annotated[Path | None, typer.Option(help="Where uploads are decoded (then deleted).")] = None,
    model_name: Annotated[str, typer.Option(help="The model id clients ask for.")] = "murmurscope",
    chat_base_url: Annotated[str | None, typer.Option(help="Chat endpoint (env MURMURSCOPE_CHAT_BASE_URL).")] = None,
    chat_model: Annotated[str | None, typer.Option(help="Chat model name (env MURMURSCOPE_CHAT_MODEL).")] = None,
    chat_api_key: Annotated[str | None, typer.Option(help="Chat model key (env MURMURSCOPE_CHAT_API_KEY).")] = None,
    audio_llm_url: Annotated[str | None, typer.Option(help="Served audio-LLM (enables ask_audio_llm).")] = None,
    audio_llm_model: Annotated[str, typer.Option(help="Audio-LLM model name.")] = "murmurscope-audio",
) -> None:
    """The OpenAI-compatible consultation API (FastAPI + uvicorn)."""
    import uvicorn

    from assistant.consult.agent import ChatModelConfig
    from assistant.consult.consultation import Consultation
    from assistant.llm.client import AudioLLMConfig
    from assistant.serve.app import APIConfig, create_app

    config = APIConfig(host=host, port=port, api_key=api_key, max_upload_mb=max_upload_mb,
                       max_recording_mb=max_recording_mb, max_messages=max_messages, max_text_chars=max_text_chars,
                       workers=workers, max_queued=max_queued, deadline_s=deadline_s,
                       allow_remote_audio=allow_remote_audio, allowed_local_audio_dir=allowed_local_audio_dir,
                       upload_dir=upload_dir, model_name=model_name)
    if not api_key and host not in LOOPBACK:
        err.print(f"[yellow]warning:[/yellow] listening on {escape(host)} without --api-key: anyone who can reach this "
                  "port can upload recordings and use the chat model", highlight=False)
    chat_cfg = ChatModelConfig.from_env(base_url=chat_base_url, model=chat_model, api_key=chat_api_key)
    consultation = Consultation.load(chat_cfg, AudioLLMConfig.from_env(audio_llm_url, audio_llm_model))
    err.print(f"MurmurScope API on http://{host}:{port}/v1 (chat model: {chat_cfg.base_url or 'none, findings only'})")
    # No access log: it would record client addresses.
    uvicorn.run(create_app(consultation, config), host=host, port=port, access_log=False, log_level="info")


@app.command("llm")
def serve_llm(
    model: Annotated[Path, typer.Option(help="Merged model folder (`murmurscope finetune merge`).")],
    port: Annotated[int, typer.Option(help="TCP port.")] = 8001,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    served_model_name: Annotated[str | None, typer.Option(help="Model name clients ask for (default: folder).")] = None,
    dtype: Annotated[str, typer.Option(help="vLLM --dtype (auto, bfloat16, float32).")] = "auto",
    max_model_len: Annotated[int, typer.Option(help="vLLM --max-model-len.")] = 2048,
    tensor_parallel_size: Annotated[int, typer.Option(help="GPUs to shard the model over.")] = 1,
    enforce_eager: Annotated[bool, typer.Option(help="Skip graph capture and compilation (starts faster).")] = True,
    vllm_python: Annotated[str | None, typer.Option(help="Interpreter with vLLM (default: .venv-vllm).")] = None,
    api_key: Annotated[str | None, typer.Option(envvar="MURMURSCOPE_AUDIO_LLM_API_KEY",
                                                help="Require this bearer key (clients: the same variable).")] = None,
) -> None:
    """vLLM's OpenAI-compatible server on the audio-LLM; returns when stopped (Ctrl-C)."""
    import signal

    from assistant.llm.launcher import LLMServerConfig, default_vllm_python, start_llm_server

    # vLLM runs in its own session: a SIGTERM to this command must still stop it (the `with` below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    cfg = LLMServerConfig(model=model, host=host, port=port, served_model_name=served_model_name, dtype=dtype,
                          max_model_len=max_model_len, tensor_parallel_size=tensor_parallel_size,
                          enforce_eager=enforce_eager, vllm_python=vllm_python or default_vllm_python(),
                          api_key=api_key)
    if not api_key and host not in LOOPBACK:
        err.print(f"[yellow]warning:[/yellow] vLLM listening on {escape(host)} without --api-key: anyone who can "
                  "reach this port can use the model", highlight=False)
    with start_llm_server(cfg) as server:
        out.print(f"audio-LLM ready after {server.ready_after:.0f} s: {cfg.base_url} (model {cfg.name!r})")
        server.process.wait()
