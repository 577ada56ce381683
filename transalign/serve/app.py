"""The FastAPI application: routes, error format, lifespan (starts and drains the batcher).

`create_app` builds everything from a `ServeConfig`; the CLI runs it under uvicorn and the
tests under Starlette's TestClient or a real uvicorn process.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from transalign.serve.batcher import Batcher, NotReady, QueueFull, ShuttingDown
from transalign.serve.config import RETRY_AFTER_S, ServeConfig
from transalign.serve.metrics import Metrics
from transalign.serve.middleware import TICKET, Guard
from transalign.serve.prepare import ApiError, RequestPreparer
from transalign.serve.schema import AlignRequest, AlignResponse, ErrorResponse, Info

log = logging.getLogger("uvicorn.error")  # uvicorn configures this one; ours shows beside its lines
ROUTES = ("/health", "/ready", "/metrics", "/v1/align", "/v1/info", "/openapi.json", "/docs")
_ERRORS = {status: {"model": ErrorResponse} for status in (400, 401, 413, 422, 429, 503)}


class _State:
    """What the worker fills in once the model is loaded (read by the request handlers)."""

    def __init__(self) -> None:
        self.preparer: RequestPreparer | None = None
        self.info: dict | None = None
        self.loop: asyncio.AbstractEventLoop | None = None  # the HTTP layer's, where requests are prepared
        self.started = time.monotonic()


def create_app(config: ServeConfig, *, load: Callable[[], object] | None = None,
               on_fatal: Callable[[BaseException], None] | None = None) -> FastAPI:
    """The service for `config`. ``load`` replaces `Aligner.load` (tests wrap the Aligner);
    ``on_fatal`` is called from the worker if loading fails (the CLI stops the server)."""
    from transalign import __version__

    state, metrics = _State(), Metrics()
    load = load or (lambda: _load_aligner(config))

    def on_ready(aligner) -> None:  # in the worker thread
        preparer = RequestPreparer(aligner, config.max_pairs_per_request)
        if state.loop is not None:  # load the HTTP thread's tokenizer now, not in the first request
            state.loop.call_soon_threadsafe(preparer.warm_up)
        state.preparer = preparer
        state.info = _info(aligner, config, batcher.max_batch_tokens, __version__)
        log.info("transalign serve: %s (%s, %s) loaded and warm in %.1f s", aligner.root, aligner.precision,
                 aligner.provider, time.monotonic() - state.started)

    batcher = Batcher(load, max_batch_tokens=config.max_batch_tokens, max_wait_ms=config.max_wait_ms,
                      max_batch_requests=config.max_batch_requests, max_queue_pairs=config.max_queue_pairs,
                      metrics=metrics, on_ready=on_ready, on_fatal=on_fatal)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.loop = asyncio.get_running_loop()
        batcher.start()
        yield
        await asyncio.to_thread(batcher.close)  # finish what is queued; uvicorn already drained HTTP

    def not_ready_reason() -> str | None:
        if batcher.load_error is not None:
            return f"the model failed to load: {batcher.load_error}"
        if not batcher.ready.is_set():
            return "the model is still loading; retry when GET /ready answers 200"
        return None

    app = FastAPI(title="transalign", version=__version__, lifespan=lifespan,
                  description="TransAlign word alignment over HTTP, with dynamic micro-batching.")
    app.state.batcher, app.state.metrics, app.state.config = batcher, metrics, config
    app.add_middleware(Guard, metrics=metrics, batcher=batcher, max_body_bytes=config.max_body_bytes,
                       api_key=config.api_key, is_ready=not_ready_reason, known_paths=frozenset(ROUTES))
    _add_error_handlers(app)

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

    @app.get("/v1/info", response_model=Info, summary="the loaded model and the server's limits",
             responses=_ERRORS)
    async def info():
        return JSONResponse(state.info)

    @app.post("/v1/align", response_model=AlignResponse, summary="align sentence pairs", responses=_ERRORS)
    async def align(body: AlignRequest, request: Request):
        ticket = request.scope.get(TICKET)
        try:
            prepared = state.preparer.prepare([(p.src, p.tgt) for p in body.pairs], body.src_lang, body.tgt_lang,
                                              body.threshold, body.method, body.word_level, body.scores)
        except ApiError:
            batcher.release(ticket)
            raise
        try:
            future = batcher.submit(prepared, ticket)
        except QueueFull as exc:
            raise ApiError(429, "overloaded", f"the server is overloaded: {exc}; retry after "
                           f"{RETRY_AFTER_S} s", headers={"Retry-After": str(RETRY_AFTER_S)}) from None
        except NotReady:
            raise ApiError(503, "not_ready", not_ready_reason() or "not ready", headers={"Retry-After": "1"}) from None
        except ShuttingDown:
            raise ApiError(503, "shutting_down", "the server is shutting down; retry on another instance") from None
        try:
            results = await asyncio.wrap_future(future)
        except ValueError as exc:  # the engine refused input the checks above let through
            raise ApiError(400, "invalid_request", str(exc)) from None
        if body.scores:
            return JSONResponse({"results": [{"links": r.links, "scores": r.scores} for r in results]})
        return JSONResponse({"results": [{"links": r.links} for r in results]})

    return app


def _load_aligner(config: ServeConfig):
    from transalign.engine.aligner import Aligner

    return Aligner.load(config.bundle, provider=config.provider, precision=config.precision, threads=config.threads)


def _info(aligner, config: ServeConfig, max_batch_tokens: int, version: str) -> dict:
    from transalign.kernels.names import METHODS, WORD_LEVELS

    m = aligner.manifest
    return {"model": m.base_model, "architecture": m.architecture, "layer": m.layer, "precision": aligner.precision,
            "provider": aligner.provider, "threshold": m.default_threshold, "max_positions": m.max_positions,
            "languages": sorted(m.tokenizer.lang_code_ids), "methods": list(METHODS),
            "word_levels": list(WORD_LEVELS), "version": version,
            "limits": {"max_batch_tokens": max_batch_tokens, "max_wait_ms": config.max_wait_ms,
                       "max_batch_requests": config.max_batch_requests,
                       "max_pairs_per_request": config.max_pairs_per_request,
                       "max_queue_pairs": config.max_queue_pairs, "max_body_bytes": config.max_body_bytes}}


def _add_error_handlers(app: FastAPI) -> None:
    """Every error, ours or the framework's, as {"error": {"code", "message", "pair"}}."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        described = list(dict.fromkeys(_describe(error) for error in exc.errors()))  # unions repeat
        message, pair = described[0] if described else ("invalid request", None)
        if len(described) > 1:
            message += f" (and {len(described) - 1} more problems)"
        return JSONResponse(ApiError(422, "invalid_request", message, pair).body(), status_code=422)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception):
        log.error("transalign serve: %s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse(ApiError(500, "internal", f"internal error ({type(exc).__name__}); see the server log")
                            .body(), status_code=500)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(ApiError(exc.status_code, code, str(exc.detail)).body(), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))


def _describe(error: dict) -> tuple[str, int | None]:
    """A pydantic error as one sentence and the index of the pair it is about."""
    if error.get("type") == "json_invalid":
        return f"the body is not valid JSON: {error.get('ctx', {}).get('error', error.get('msg'))}", None
    loc = [part for part in error.get("loc", ()) if part != "body"]
    if len(loc) >= 3 and loc[0] == "pairs" and isinstance(loc[1], int) and loc[2] in ("src", "tgt"):
        if error.get("type") in ("missing", "extra_forbidden"):
            return f"pairs[{loc[1]}].{loc[2]}: {error.get('msg')}", loc[1]
        return f"pairs[{loc[1]}].{loc[2]} must be a string (split on whitespace) or a list of strings", loc[1]
    pair = loc[1] if len(loc) > 1 and loc[0] == "pairs" and isinstance(loc[1], int) else None
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or "body"
    return f"{where}: {error.get('msg', 'invalid')}", pair
