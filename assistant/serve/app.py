"""The MurmurScope HTTP API (FastAPI): OpenAI-compatible chat completions whose agent runs the tools
server-side, model listing, one-shot analysis of uploaded recordings, and a health check.

Privacy: uploaded audio lives in a temporary folder only while it is decoded and is deleted right
after; conversations are forgotten when the response ends; the log holds method, path, status and
duration only (no client address, no file names, no content).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, StreamingResponse
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from starlette.exceptions import HTTPException as StarletteHTTPException

from assistant.consult.consultation import Consultation
from assistant.consult.findings import Findings
from assistant.data.audio import SITES, Recording, load_recording
from assistant.data.uploads import MAX_RECORDINGS, MAX_UPLOAD_MB, anonymous, decode_upload
from assistant.errors import AudioError, MurmurScopeError, NotAudioError
from assistant.report.document import check_patient_id
from assistant.serve.failures import InternalErrors, internal_message, log_internal, request_id
from assistant.serve.limits import BodyLimit, bounded_route
from assistant.serve.protocol import (
    AssistantMessage,
    AudioURLPart,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatCompletionStreamResponse,
    ChatMessage,
    Choice,
    DeltaMessage,
    ErrorInfo,
    ErrorResponse,
    InputAudioPart,
    ModelCard,
    ModelList,
    StreamChoice,
    TextPart,
)
from assistant.serve.remote import RemoteAudioError, fetch_audio
from assistant.serve.report_formats import (
    FORMAT_HELP,
    JSON,
    RESPONSES,
    Format,
    FormatError,
    report_response,
    wanted_media_type,
)
from assistant.serve.work import Busy, DeadlineExceeded, Ticket, WorkPool

log = logging.getLogger("murmurscope.api")
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 405: "invalid_request_error", 411: "invalid_request_error",
               406: "invalid_request_error", 413: "invalid_request_error", 415: "invalid_request_error",
               422: "invalid_request_error"}
_DATA_URL = re.compile(r"^data:audio/(?P<fmt>[\w.+-]+)?(?:;[^,]*)?;base64,(?P<data>.*)$", re.DOTALL)
OPEN_PATHS = ("/health",)
Site = Literal[SITES]  # the tuple's members: the schema lists them, validation refuses others


@dataclass(frozen=True)
class APIConfig:
    """What `murmurscope serve api` serves; its options are built from these fields."""

    host: str = field(default="127.0.0.1", metadata={"help": "Interface to bind."})
    port: int = field(default=8080, metadata={"help": "Port."})
    api_key: str | None = field(default=None, metadata={
        "help": "Require this bearer key.", "env": "MURMURSCOPE_API_KEY"})
    max_upload_mb: float = field(default=MAX_UPLOAD_MB, metadata={
        "help": "Largest request body, counted on the bytes received."})
    max_recording_mb: float = field(default=MAX_UPLOAD_MB, metadata={
        "help": "Largest single recording as sent (upload, base64 part, remote file)."})
    allow_remote_audio: bool = field(default=False, metadata={"help": "Fetch http(s) audio URLs (public addresses)."})
    remote_audio_timeout_s: float = field(default=10.0, metadata={
        "help": "Deadline for the whole fetch of one remote recording (s)."})
    allowed_local_audio_dir: Path | None = field(default=None, metadata={
        "help": "Allow file:// audio under this folder."})
    upload_dir: Path | None = field(default=None, metadata={"help": "Where uploads are decoded (then deleted)."})
    model_name: str = field(default="murmurscope", metadata={"help": "The model id clients ask for."})
    max_recordings: int = field(default=MAX_RECORDINGS, metadata={"help": "Most recordings one request may carry."})
    # Per chat request, checked before anything is decoded.
    max_messages: int = field(default=256, metadata={"help": "Most messages in one chat request."})
    max_text_chars: int = field(default=200_000, metadata={"help": "Most text characters in one chat request."})
    max_json_values: int = field(default=8_192, metadata={"help": "Most JSON values in one chat request body."})
    # Model work (assistant/serve/work.py): worker threads, requests queued behind them, one deadline each.
    workers: int = field(default=4, metadata={"help": "Threads doing model work."})
    max_queued: int = field(default=64, metadata={"help": "Requests waiting for a worker before 503."})
    deadline_s: float = field(default=120.0, metadata={"help": "Time one request may take before 504 (s)."})
    retry_after_s: int = field(default=5, metadata={"help": "Retry-After sent with a 503 (s)."})


class APIError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.headers = status, message, param, headers


# 400: the request does not match the schema; 422: it does, but breaks a rule the schema cannot state
# (one site per file, the last message from the user, total text, audio that cannot be analysed).
ERROR_MEANINGS = {400: "Invalid request", 401: "Missing or wrong API key", 403: "Not allowed on this server",
                  404: "Unknown model", 413: "Body, recording or JSON over a limit", 415: "Not a readable audio file",
                  422: "Valid request that cannot be processed",
                  500: "Unexpected error (the message carries a request id)",
                  503: "Busy: the queue is full (see Retry-After)", 504: "The request's deadline passed"}


def _documented(*statuses: int) -> dict:
    return {s: {"model": ErrorResponse, "description": ERROR_MEANINGS[s]} for s in statuses}


def error_body(status: int, message: str, param: str | None = None) -> ErrorResponse:
    return ErrorResponse(error=ErrorInfo(message=message, type=ERROR_TYPES.get(status, "server_error"),
                                         param=param, code=status))


def error_response(status: int, message: str, param: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, param).model_dump(), status_code=status, headers=headers)


def error_event(status: int, message: str) -> str:
    """An OpenAI-style error as a server-sent event, for failures after a stream has started."""
    return f"data: {error_body(status, message).model_dump_json()}\n\n"


def create_app(consultation: Consultation, config: APIConfig = APIConfig()) -> FastAPI:
    app = FastAPI(title="MurmurScope API", version="0.1.0",
                  description="Heart-murmur consultation: OpenAI-compatible chat with server-side tools, "
                              "and analysis of uploaded phonocardiograms. Decision support, not a diagnosis.")
    limit = int(config.max_upload_mb * 1024 * 1024)
    app.router.route_class = bounded_route(
        config.max_json_values,
        lambda n: APIError(413, f"the request has about {n:,} JSON values; at most {config.max_json_values:,} "
                                "are accepted"),
        max_files=config.max_recordings, spool_dir=config.upload_dir)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        start = time.perf_counter()
        if config.api_key and request.url.path not in OPEN_PATHS:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), config.api_key.encode()):
                return error_response(401, "invalid or missing API key (Authorization: Bearer ...)")
        response = await call_next(request)
        log.info("%s %s %d %.0f ms", request.method, request.url.path, response.status_code,
                 1000 * (time.perf_counter() - start))
        return response

    # Around the app: counts the bytes received, whatever Content-Length or Transfer-Encoding claim.
    app.add_middleware(BodyLimit, max_bytes=limit,
                       too_large=lambda: error_response(413, f"request body over the {config.max_upload_mb:g} MB "
                                                             "limit"))
    # Outermost (inside Starlette's own error middleware, which it never lets an exception reach): an
    # unexpected error anywhere below is logged once and answered 500 with a request id.
    app.add_middleware(InternalErrors, internal=lambda rid: error_response(500, internal_message(rid)))

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError):
        return error_response(exc.status, exc.message, exc.param, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        # Starlette's 405 carries the Allow header RFC 9110 requires; keep the exception's headers.
        return error_response(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {"msg": "invalid request", "loc": ()}
        param = ".".join(str(x) for x in first.get("loc", ())[1:]) or None
        return error_response(400, f"{first['msg']}" + (f" ({param})" if param else ""), param)

    @app.exception_handler(MurmurScopeError)
    async def _user_error(request: Request, exc: MurmurScopeError):
        return error_response(415 if isinstance(exc, NotAudioError) else 422, anonymous(str(exc)))

    pool = WorkPool(config.workers, config.max_queued, config.deadline_s)

    def admit() -> Ticket:
        try:
            return pool.admit()
        except Busy:
            raise APIError(503, "the server is busy; retry later", headers={
                "Retry-After": str(config.retry_after_s)}) from None

    def too_slow() -> APIError:
        return APIError(504, f"the request did not finish within the {config.deadline_s:g} s deadline")

    # async: /health and /v1/models answer on the event loop, whatever the worker threads are doing.
    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/v1/models", response_model=ModelList, responses=_documented(401))
    async def models() -> ModelList:
        return ModelList(data=[ModelCard(id=config.model_name)])

    @app.post("/v1/analyze", response_model=Findings,
              responses={**_documented(400, 401, 413, 415, 422, 500, 503, 504), **RESPONSES})
    async def analyze(request: Request,
                      files: list[UploadFile] = File(..., min_length=1, max_length=config.max_recordings,
                                                     description="One recording per auscultation site."),
                      sites: list[Site] = Form([], max_length=config.max_recordings,
                                               description="The site of each file, in order."),
                      patient_id: str | None = Form(None, description="The patient's id, written into the PDF and "
                                                    "FHIR reports; without it they say 'anonymous'. File names "
                                                    "never are."),
                      format_: Format | None = Form(None, alias="format", description=FORMAT_HELP)):
        try:
            media_type = wanted_media_type(format_, request.headers.get("accept"))
        except FormatError as e:
            raise APIError(e.status, str(e), "format") from None
        patient_id = check_patient_id(patient_id)
        ticket = admit()
        try:
            return await ticket.run(_analyze, files, sites, media_type, patient_id)
        except DeadlineExceeded:
            raise too_slow() from None
        finally:
            ticket.close()

    def _analyze(files: list[UploadFile], sites: list[str], media_type: str, patient_id: str | None):
        if sites and len(sites) != len(files):
            raise APIError(422, f"{len(sites)} sites for {len(files)} files: give one site per file", "sites")
        recordings = []
        for k, upload in enumerate(files):
            site = sites[k] if sites else None
            suffix = Path(upload.filename or "").suffix.lower() or ".wav"
            if (upload.size or 0) > config.max_recording_mb * 1024 * 1024:
                raise APIError(413, f"file {k + 1}: over the {config.max_recording_mb:g} MB limit", "files")
            recordings.append(_decode(upload.file.read(), suffix, site, config, f"file {k + 1}"))
        ids = [f"rec{k + 1}" for k in range(len(recordings))]
        findings = consultation.analyze(recordings, ids=ids, patient_id=patient_id or "upload")
        if media_type == JSON:
            return findings
        return report_response(media_type, consultation.analyzer, findings, recordings, patient_id)

    @app.post("/v1/chat/completions", response_model=ChatCompletionResponse,
              responses={200: {"description": "The reply; with stream=true, chat.completion.chunk events",
                               "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                         **_documented(400, 401, 403, 404, 413, 415, 422, 500, 503, 504)})
    async def chat_completions(request: ChatCompletionRequest, http: Request):
        if request.model != config.model_name:
            raise APIError(404, f"the model {request.model!r} does not exist; use {config.model_name!r}", "model")
        ticket = admit()
        conversation = consultation.new_conversation()
        streaming = False
        try:
            history, text = await ticket.run(_conversation, request.messages, conversation, consultation, config)
            if not request.stream:
                reply = await ticket.run(consultation.ask, conversation, text, history)
                return ChatCompletionResponse(model=config.model_name,
                                              choices=[Choice(message=AssistantMessage(content=reply.text))])
            events = _sse(consultation, conversation, text, history, config.model_name, request_id(http.scope))
            streaming = True
            return StreamingResponse(_within(ticket, events, config.deadline_s), media_type="text/event-stream")
        except DeadlineExceeded:
            raise too_slow() from None
        finally:
            if not streaming:
                ticket.close(then=lambda: consultation.end(conversation))

    def openapi() -> dict:
        # The one model this server answers for is part of the contract: say so in the schema.
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            request = schema["components"]["schemas"]["ChatCompletionRequest"]["properties"]
            request["model"]["enum"] = [config.model_name]
            request["messages"]["maxItems"] = config.max_messages
            # A form field has no null: `format` is optional (absent: the Accept header decides), never "null".
            for body in schema["components"]["schemas"].values():
                field = body.get("properties", {}).get("format")
                if field and "anyOf" in field:
                    (choices,) = [s for s in field.pop("anyOf") if s.get("type") != "null"]
                    field.update(choices)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
    return app


async def _within(ticket: Ticket, events: Iterator[str], deadline_s: float) -> AsyncIterator[str]:
    """The events of `_sse`, each produced on a worker; past the deadline, an error event and [DONE]."""
    try:
        async for event in ticket.iterate(events):
            yield event
    except DeadlineExceeded:
        yield error_event(504, f"the reply did not finish within the {deadline_s:g} s deadline")
        yield "data: [DONE]\n\n"
    finally:
        ticket.close(then=events.close)  # the generator's own finally forgets the conversation


def _sse(consultation: Consultation, conversation: str, text: str, history: list[BaseMessage],
         model: str, rid: str) -> Iterator[str]:
    """The reply as chat.completion.chunk events; a failure midway ends with an error event and [DONE]."""
    chunk_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def event(delta: DeltaMessage, finish: str | None = None) -> str:
        body = ChatCompletionStreamResponse(id=chunk_id, created=created, model=model,
                                            choices=[StreamChoice(delta=delta, finish_reason=finish)])
        return f"data: {body.model_dump_json(exclude_none=True)}\n\n"

    try:
        yield event(DeltaMessage(role="assistant", content=""))
        for piece in consultation.stream(conversation, text, history):
            yield event(DeltaMessage(content=piece))
        yield event(DeltaMessage(), "stop")
    except MurmurScopeError as e:
        yield error_event(400, anonymous(str(e)))
    except Exception:  # noqa: BLE001 - the response has started: the error goes in the stream, once
        log_internal(rid, "/v1/chat/completions (stream)")
        yield error_event(500, internal_message(rid))
    finally:
        consultation.end(conversation)
    yield "data: [DONE]\n\n"


def _conversation(messages: list[ChatMessage], conversation: str, consultation: Consultation,
                  config: APIConfig) -> tuple[list[BaseMessage], str]:
    """Attach the audio parts to the conversation; the history as LangChain messages and the last user text.

    System and developer messages are not passed on: the consultation's own system prompt governs.
    """
    if messages[-1].role != "user":
        raise APIError(422, "the last message must come from the user", "messages")
    _check_sizes(messages, config)
    history: list[BaseMessage] = []
    for i, msg in enumerate(messages):
        texts = []
        for part in _parts(msg):
            if isinstance(part, TextPart):
                texts.append(part.text)
                continue
            where = f"messages.{i}.content"
            if isinstance(part, InputAudioPart):
                data = _b64(part.input_audio.data, where)
                rec = _decode(data, f".{part.input_audio.format}", part.input_audio.site, config, where)
            else:
                rec = _decode_url(part, config, where)
            consultation.attach(conversation, rec)
        text = "\n".join(t for t in texts if t)
        if msg.role == "user":
            history.append(HumanMessage(text))
        elif msg.role == "assistant" and text:
            history.append(AIMessage(text))
    last = history.pop()
    return history, last.content or "Please analyse the attached recordings."


def _parts(msg: ChatMessage) -> list:
    return [TextPart(type="text", text=msg.content)] if isinstance(msg.content, str) else (msg.content or [])


def _check_sizes(messages: list[ChatMessage], config: APIConfig) -> None:
    """Counts and lengths of the whole request, before any audio is decoded."""
    if len(messages) > config.max_messages:
        raise APIError(400, f"{len(messages)} messages; at most {config.max_messages} per request", "messages")
    chars = n_audio = 0
    for i, msg in enumerate(messages):
        for part in _parts(msg):
            if isinstance(part, TextPart):
                chars += len(part.text)
                continue
            if msg.role != "user":
                raise APIError(422, "audio is accepted in user messages only", f"messages.{i}.content")
            n_audio += 1
            encoded = part.input_audio.data if isinstance(part, InputAudioPart) else part.audio_url.url
            # base64 is 4 characters per 3 bytes: the decoded size is known without decoding.
            if len(encoded) * 3 // 4 > config.max_recording_mb * 1024 * 1024:
                raise APIError(413, f"a recording over the {config.max_recording_mb:g} MB limit",
                               f"messages.{i}.content")
    if chars > config.max_text_chars:
        raise APIError(422, f"{chars:,} characters of text; at most {config.max_text_chars:,} per request", "messages")
    if n_audio > config.max_recordings:
        raise APIError(422, f"at most {config.max_recordings} recordings per conversation", "messages")


def _b64(data: str, where: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise APIError(422, "audio data is not valid base64", where) from None


def _decode_url(part: AudioURLPart, config: APIConfig, where: str) -> Recording:
    url = part.audio_url.url
    m = _DATA_URL.match(url)
    if m:
        fmt = (m["fmt"] or "wav").replace("x-", "").replace("mpeg", "mp3")
        return _decode(_b64(m["data"], where), f".{fmt}", None, config, where)
    parsed = urlparse(url)
    if parsed.scheme in ("http", "https"):
        if not config.allow_remote_audio:
            raise APIError(403, "remote audio URLs are disabled on this server; send the audio inline", where)
        try:
            remote = fetch_audio(url, int(config.max_recording_mb * 1024 * 1024), config.remote_audio_timeout_s)
        except RemoteAudioError as e:
            raise APIError(422, f"{where}: {e}", where) from None
        return _decode(remote.data, remote.suffix, None, config, where)
    if parsed.scheme == "file":
        root = config.allowed_local_audio_dir
        if root is None:
            raise APIError(403, "file:// audio URLs are disabled on this server; send the audio inline", where)
        path = Path(parsed.path).resolve()
        if not path.is_relative_to(root.resolve()):
            raise APIError(403, "file:// audio URLs must point inside the allowed folder", where)
        return load_recording(path)
    raise APIError(422, "audio_url must be a data:, http(s):// or file:// URL", where)


def _decode(data: bytes, suffix: str, site: str | None, config: APIConfig, where: str) -> Recording:
    try:
        return decode_upload(data, suffix, site, config.upload_dir)
    except AudioError as e:
        status = 415 if isinstance(e, NotAudioError) else 422
        raise APIError(status, f"{where}: {anonymous(str(e))}", where) from None
