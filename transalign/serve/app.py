"""The FastAPI application: routes, error format, lifespan (starts and drains the batcher).

`create_app` builds everything from a `ServeConfig`; the CLI runs it under uvicorn and the
tests under Starlette's TestClient or a real uvicorn process.

A /v1/align request: the body (read, bounded in size and time, by `middleware.Guard`) is parsed,
checked and tokenized in a preparation thread (`RequestPreparer.prepare_body`), never on the
event loop; the prepared pairs are queued for the worker (`batcher`). While the request waits,
its receive channel is watched: a client that disconnects has its queued work dropped before it
reaches the encoder (`Batcher.abandon`), counted in /metrics.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from transalign.serve.batcher import Batcher, NotReady, QueueFull, ShuttingDown
from transalign.serve.config import RETRY_AFTER_S, ServeConfig
from transalign.serve.metrics import Metrics
from transalign.serve.middleware import TICKET, Guard
from transalign.serve.openapi import REQUEST_BODY, openapi_document
from transalign.serve.errors import ApiError
from transalign.serve.prepare import RequestPreparer
from transalign.serve.schema import AlignResponse, ErrorResponse, Info

log = logging.getLogger("uvicorn.error")  # uvicorn configures this one; ours shows beside its lines
ROUTES = ("/health", "/ready", "/metrics", "/v1/align", "/v1/info", "/openapi.json", "/docs")
_ERRORS = {status: {"model": ErrorResponse} for status in (400, 401, 408, 413, 422, 429, 503)}
# threads that parse, check and tokenize request bodies (each with its own tokenizer); two keep
# one huge body from delaying every other request, more would only contend with the encoder
PREPARE_THREADS = 2
CLIENT_GONE = 499  # the status /metrics records for a request whose client disconnected (nginx's)


class AsciiJSONResponse(JSONResponse):
    """JSON with non-ASCII escaped: an error message quoting odd input always encodes."""

    def render(self, content) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode()


class Public:
    """Server paths out of what clients read: the bundle's path becomes its name."""

    def __init__(self, bundle: Path):
        real = os.path.realpath(bundle)
        self.name = Path(real).name or "bundle"
        paths = {str(bundle.absolute()), real} | ({str(bundle)} if os.sep in str(bundle) else set())
        self.paths = sorted(paths, key=len, reverse=True)  # longest first: a path, not its prefix

    def __call__(self, text: str) -> str:
        for path in self.paths:
            text = text.replace(path, self.name)
        return text


def model_name(base_model: str) -> str:
    """A hub id as it is; a local checkpoint path as its last component."""
    return Path(base_model).name if os.path.isabs(base_model) or base_model.startswith((".", "~")) else base_model


class _State:
    """What the worker fills in once the model is loaded (read by the request handlers)."""

    def __init__(self) -> None:
        self.preparer: RequestPreparer | None = None
        self.info: dict | None = None
        self.manifest = None
        self.openapi: dict | None = None
        self.started = time.monotonic()


def create_app(config: ServeConfig, *, load: Callable[[], object] | None = None,
               on_fatal: Callable[[BaseException], None] | None = None) -> FastAPI:
    """The service for `config`. ``load`` replaces `Aligner.load` (tests wrap the Aligner);
    ``on_fatal`` is called from the worker if loading fails (the CLI stops the server)."""
    from transalign import __version__

    state, metrics, public = _State(), Metrics(), Public(config.bundle)
    load = load or (lambda: _load_aligner(config))
    pool = ThreadPoolExecutor(PREPARE_THREADS, thread_name_prefix="transalign-prepare")

    def on_ready(aligner) -> None:  # in the worker thread
        preparer = RequestPreparer(aligner, config.max_pairs_per_request, public)
        _warm_threads(pool, preparer.warm_up)
        state.preparer, state.manifest = preparer, aligner.manifest
        state.info = _info(aligner, config, batcher.max_batch_tokens, __version__, public)
        log.info("transalign serve: %s (%s, %s) loaded and warm in %.1f s", public.name, state.info["precision"],
                 state.info["provider"], time.monotonic() - state.started)

    batcher = Batcher(load, max_batch_tokens=config.max_batch_tokens, max_wait_ms=config.max_wait_ms,
                      max_batch_requests=config.max_batch_requests, max_queue_pairs=config.max_queue_pairs,
                      metrics=metrics, on_ready=on_ready, on_fatal=on_fatal)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        await asyncio.to_thread(batcher.close)  # finish what is queued; uvicorn already drained HTTP
        pool.shutdown(wait=False, cancel_futures=True)

    def not_ready_reason() -> str | None:
        if batcher.load_error is not None:
            return public(f"the model failed to load: {batcher.load_error}")
        if not batcher.ready.is_set():
            return "the model is still loading; retry when GET /ready answers 200"
        return None

    app = FastAPI(title="transalign", version=__version__, lifespan=lifespan, redoc_url=None,
                  docs_url="/docs" if config.docs else None, default_response_class=AsciiJSONResponse,
                  description="TransAlign word alignment over HTTP, with dynamic micro-batching.")
    app.state.batcher, app.state.metrics, app.state.config = batcher, metrics, config
    app.add_middleware(Guard, metrics=metrics, batcher=batcher, max_body_bytes=config.max_body_bytes,
                       body_timeout=config.body_timeout, max_connections=config.max_connections,
                       api_key=config.api_key, is_ready=not_ready_reason,
                       known_paths=frozenset(ROUTES))
    _add_error_handlers(app)

    def openapi() -> dict:
        if state.openapi is None:
            document = openapi_document(app, state.manifest, config.max_pairs_per_request)
            if state.manifest is None:
                return document  # before the model is loaded: not kept
            state.openapi = document
        return state.openapi

    app.openapi = openapi

    @app.get("/health", summary="the process is alive")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/ready", summary="200 once the model is loaded and warm, 503 before",
             responses={503: {"model": ErrorResponse}})
    async def ready():
        reason = not_ready_reason()
        if reason is not None:
            raise ApiError(503, "not_ready", reason, headers={"Retry-After": "1"})
        return {"status": "ready"}

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics_text() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    @app.get("/v1/info", response_model=Info, summary="the loaded model, what runs it, and the server's limits",
             responses={status: {"model": ErrorResponse} for status in (401, 503)})
    async def info():
        return AsciiJSONResponse(state.info)

    @app.post("/v1/align", response_model=AlignResponse, summary="align sentence pairs", responses=_ERRORS,
              openapi_extra={"requestBody": REQUEST_BODY})
    async def align(request: Request):
        body = await request.body()
        gone = asyncio.ensure_future(_disconnected(request.receive))
        try:
            return await _align(request.scope.get(TICKET), body, gone)
        finally:
            gone.cancel()

    async def _align(ticket, body: bytes, gone: asyncio.Future):
        left = threading.Event()  # what the preparation thread can see of ``gone``
        gone.add_done_callback(lambda _: left.set())
        preparing = asyncio.get_running_loop().run_in_executor(pool, state.preparer.prepare_body, body, left.is_set)
        if not await _first(preparing, gone):
            return _abandoned(metrics)  # the client left while its body was being prepared
        try:
            prepared = preparing.result()
        except ApiError:
            batcher.release(ticket)
            raise
        try:
            job = batcher.submit(prepared, ticket)
        except QueueFull as exc:
            raise ApiError(429, "overloaded", f"the server is overloaded: {exc}; retry after "
                           f"{RETRY_AFTER_S} s", headers={"Retry-After": str(RETRY_AFTER_S)}) from None
        except NotReady:
            raise ApiError(503, "not_ready", not_ready_reason() or "not ready", headers={"Retry-After": "1"}) from None
        except ShuttingDown:
            raise ApiError(503, "shutting_down", "the server is shutting down; retry on another instance") from None
        answer = asyncio.wrap_future(job.future)
        try:
            if not await _first(answer, gone):
                batcher.abandon(job)
                return _abandoned(metrics)
        finally:  # also when uvicorn cancels this request at the end of a shutdown's drain
            if not job.future.done():
                batcher.abandon(job)
        try:
            results = answer.result()
        except ValueError as exc:  # the engine refused input the checks above let through
            raise ApiError(400, "invalid_request", public(str(exc))) from None
        headers = {"X-Transalign-Ignored": ", ".join(prepared.ignored)} if prepared.ignored else None
        if prepared.extraction.scores:
            return AsciiJSONResponse({"results": [{"links": r.links, "scores": r.scores} for r in results]},
                                     headers=headers)
        return AsciiJSONResponse({"results": [{"links": r.links} for r in results]}, headers=headers)

    return app


async def _disconnected(receive) -> None:
    """Returns when the client has disconnected (the body was read already: the next message
    on the receive channel is the disconnect, or comes once the response is sent)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def _first(work: asyncio.Future, gone: asyncio.Future) -> bool:
    """Wait for ``work`` or the client's disconnect; True if the work finished (it wins a tie).
    An abandoned ``work``'s outcome is still collected, so it is never logged as unretrieved."""
    await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
    if work.done():
        return True
    work.add_done_callback(lambda f: f.cancelled() or f.exception())
    return False


def _abandoned(metrics: Metrics) -> Response:
    metrics.abandoned.inc()
    return Response(status_code=CLIENT_GONE)  # nobody reads it; uvicorn drops it


def _warm_threads(pool: ThreadPoolExecutor, warm_up: Callable[[], None]) -> None:
    """Run ``warm_up`` once in each preparation thread (a barrier keeps each task on its own
    thread), so no request pays for loading a thread's tokenizer."""
    barrier = threading.Barrier(PREPARE_THREADS, timeout=60)

    def task() -> None:
        barrier.wait()
        warm_up()

    for future in [pool.submit(task) for _ in range(PREPARE_THREADS)]:
        future.result()


def _load_aligner(config: ServeConfig):
    from transalign.engine.aligner import Aligner

    return Aligner.load(config.bundle, options=config.load_options)


def _info(aligner, config: ServeConfig, merge_budget: int, version: str, public: Public) -> dict:
    from transalign.engine.options import max_sentence_chars
    from transalign.engine.session import session_provider
    from transalign.kernels.names import METHODS, WORD_LEVELS

    m = aligner.manifest
    codes = sorted(m.tokenizer.lang_code_ids)
    return {"bundle": public.name, "model": model_name(m.base_model), "architecture": m.architecture,
            "layer": m.layer, "precision": aligner.precision, "provider": session_provider(aligner.session),
            "pipeline": bool(getattr(aligner, "pipelined", False)), "threshold": m.default_threshold,
            "default_extraction": {"method": m.default_method, "word_level": m.default_word_level,
                                   "threshold": m.default_threshold},
            "max_positions": m.max_positions, "max_sentence_chars": max_sentence_chars(m.max_positions),
            "languages": codes, "languages_required": bool(codes), "methods": list(METHODS),
            "word_levels": list(WORD_LEVELS), "version": version,
            "limits": {"max_batch_tokens": merge_budget, "encoder_batch_tokens": aligner.batch_tokens,
                       "max_wait_ms": config.max_wait_ms, "max_batch_requests": config.max_batch_requests,
                       "max_pairs_per_request": config.max_pairs_per_request,
                       "max_queue_pairs": config.max_queue_pairs, "max_body_bytes": config.max_body_bytes,
                       "body_timeout": config.body_timeout, "max_connections": config.max_connections,
                       "shutdown_timeout": config.shutdown_timeout}}


def _add_error_handlers(app: FastAPI) -> None:
    """Every error, ours or the framework's, as {"error": {"code", "message", "pair"}}."""
    from transalign.serve.body import validation_error

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return AsciiJSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        error = validation_error(exc.errors())
        return AsciiJSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception):
        log.error("transalign serve: %s %s failed", request.method, request.url.path, exc_info=exc)
        return AsciiJSONResponse(ApiError(500, "internal", f"internal error ({type(exc).__name__}); see the server "
                                          "log").body(), status_code=500)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return AsciiJSONResponse(ApiError(exc.status_code, code, str(exc.detail)).body(), status_code=exc.status_code,
                                 headers=getattr(exc, "headers", None))
