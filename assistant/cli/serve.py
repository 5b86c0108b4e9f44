"""`murmurscope serve api` and `murmurscope serve llm`: the consultation API and the audio-LLM server."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape

from assistant.cli.consult import AUDIO_LLM, CHAT_MODEL
from assistant.cli.options import ConfigCommand, Section, from_config

if TYPE_CHECKING:
    from assistant.consult.agent import ChatModelConfig
    from assistant.llm.client import AudioLLMConfig
    from assistant.llm.launcher import LLMServerConfig
    from assistant.serve.app import APIConfig

out = Console()
err = Console(stderr=True)
LOOPBACK = ("127.0.0.1", "localhost", "::1")
app = typer.Typer(help="Run the servers: the API and the audio-LLM.", no_args_is_help=True)


@app.command("api", cls=ConfigCommand)
@from_config(config="assistant.serve.app:APIConfig", chat_model=Section(CHAT_MODEL.cls, prefix="chat"),
             audio_llm=AUDIO_LLM)
def serve_api(config: APIConfig, chat_model: ChatModelConfig, audio_llm: AudioLLMConfig | None) -> None:
    """The OpenAI-compatible consultation API (FastAPI + uvicorn)."""
    import uvicorn

    from assistant.consult.consultation import Consultation
    from assistant.serve.app import create_app

    consultation = Consultation.load(chat_model, audio_llm)
    host, port = config.host, config.port
    if not config.api_key and host not in LOOPBACK:
        err.print(f"[yellow]warning:[/yellow] listening on {escape(host)} without --api-key: anyone who can reach this "
                  "port can upload recordings and use the chat model", highlight=False)
    err.print(f"MurmurScope API on http://{host}:{port}/v1 "
              f"(chat model: {chat_model.base_url or 'none, findings only'})")
    # No access log: it would record client addresses.
    uvicorn.run(create_app(consultation, config), host=host, port=port, access_log=False, log_level="info")


@app.command("llm", cls=ConfigCommand)
@from_config(config="assistant.llm.launcher:LLMServerConfig")
def serve_llm(config: LLMServerConfig) -> None:
    """vLLM's OpenAI-compatible server on the audio-LLM; returns when stopped (Ctrl-C)."""
    import signal

    from assistant.llm.launcher import start_llm_server

    # vLLM runs in its own session: a SIGTERM to this command must still stop it (the `with` below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if not config.api_key and config.host not in LOOPBACK:
        err.print(f"[yellow]warning:[/yellow] vLLM listening on {escape(config.host)} without --api-key: anyone who "
                  "can reach this port can use the model", highlight=False)
    with start_llm_server(config) as server:
        out.print(f"audio-LLM ready after {server.ready_after:.0f} s: {config.base_url} (model {config.name!r})")
        server.process.wait()
