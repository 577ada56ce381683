"""`transalign serve`: the HTTP alignment service (needs the `serve` extra).

FastAPI and uvicorn are imported inside `run`, so `transalign --help` works without the extra.
We bind the listening socket ourselves (to report the real port of ``--port 0``) and own the
SIGTERM/SIGINT handlers around uvicorn: uvicorn drains in-flight requests on a signal and then
re-raises it, which would end the process with the signal instead of exit code 0.
"""

from __future__ import annotations

import signal
import socket
import sys

from transalign.cli.options import add_load_flags
from transalign.engine.defaults import MAX_BATCH_TOKENS
from transalign.serve import config as c


def register(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="serve alignments over HTTP with dynamic micro-batching",
        description="HTTP alignment service: POST /v1/align, GET /health, /ready, /v1/info, /metrics, "
                    "/openapi.json (and /docs with --docs). Concurrent requests are merged into one encoder "
                    "pass. Every limit below is checked before the server listens. Needs the `serve` extra: "
                    "pip install 'transalign[serve]'.",
    )
    p.add_argument("bundle", help="bundle directory made by `transalign export`")
    p.add_argument("--host", default=c.DEFAULT_HOST, help=f"address to listen on (default {c.DEFAULT_HOST}: "
                   "this machine only; 0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=c.DEFAULT_PORT, help=f"TCP port (default {c.DEFAULT_PORT}; "
                   "0: any free port, printed on stderr)")
    add_load_flags(p, pipeline=True)  # --provider, --precision, --batch-tokens (the encoder's budget), --threads
    p.add_argument("--max-batch-tokens", type=int, help=f"merge budget: real tokens (both sides) of concurrent "
                   f"requests merged into one align call, 1..{MAX_BATCH_TOKENS}; the engine cuts the call into "
                   "encoder batches of --batch-tokens padded tokens (default: the same number as --batch-tokens)")
    p.add_argument("--max-wait-ms", type=float, default=c.DEFAULT_MAX_WAIT_MS,
                   help=f"longest wait after a request arrives for others to join its batch "
                        f"(default {c.DEFAULT_MAX_WAIT_MS})")
    p.add_argument("--max-batch-requests", type=int, default=c.DEFAULT_MAX_BATCH_REQUESTS,
                   help=f"requests per batch; 1 turns cross-request batching off "
                        f"(default {c.DEFAULT_MAX_BATCH_REQUESTS})")
    p.add_argument("--max-pairs-per-request", type=int, default=c.DEFAULT_MAX_PAIRS_PER_REQUEST,
                   help=f"larger requests get 413 (default {c.DEFAULT_MAX_PAIRS_PER_REQUEST})")
    p.add_argument("--max-queue-pairs", type=int, default=c.DEFAULT_MAX_QUEUE_PAIRS,
                   help=f"pairs waiting for the worker; beyond it requests get 429 "
                        f"(default {c.DEFAULT_MAX_QUEUE_PAIRS})")
    p.add_argument("--max-body-bytes", type=int, default=c.DEFAULT_MAX_BODY_BYTES,
                   help=f"larger request bodies get 413 (default {c.DEFAULT_MAX_BODY_BYTES})")
    p.add_argument("--body-timeout", type=float, default=c.DEFAULT_BODY_TIMEOUT_S,
                   help=f"seconds a client has to send a request's headers (from connecting, or from its previous "
                        f"answer; else the connection is closed) and again for its whole body (else 408 and the "
                        f"connection is closed) (default {c.DEFAULT_BODY_TIMEOUT_S:g})")
    p.add_argument("--max-connections", type=int, default=c.DEFAULT_MAX_CONNECTIONS,
                   help=f"open connections, idle keep-alive ones included; a request arriving beyond it gets 503 "
                        f"overloaded and its connection is closed (default {c.DEFAULT_MAX_CONNECTIONS})")
    p.add_argument("--shutdown-timeout", type=float, default=c.DEFAULT_SHUTDOWN_TIMEOUT_S,
                   help=f"on SIGTERM or Ctrl-C, seconds requests already received may take to finish; what is left "
                        f"then is answered 503 shutting_down (default {c.DEFAULT_SHUTDOWN_TIMEOUT_S:g})")
    p.add_argument("--docs", action="store_true", help="serve Swagger UI at /docs (off by default: it loads its "
                   "scripts from a CDN and is blank offline; /openapi.json is always served)")
    p.add_argument("--api-key-file", help="file holding a token that /v1/* requires as 'Authorization: Bearer "
                   "TOKEN' (default: no authentication)")
    p.add_argument("--log-level", choices=("critical", "error", "warning", "info", "debug"), default="info",
                   help="uvicorn's log level (default info)")
    p.set_defaults(func=run)


def run(args) -> int:
    from transalign.cli import UserError

    try:
        import uvicorn

        from transalign.serve.app import create_app
        from transalign.serve.protocol import with_header_timeout
    except ImportError as exc:
        raise UserError(f"`transalign serve` needs the serve extra ({exc.name} is missing): "
                        "pip install 'transalign[serve]'") from None
    config = c.ServeConfig(  # an OptionError names its flag (transalign.cli.main)
        args.bundle, precision=args.precision, provider=args.provider, threads=args.threads,
        batch_tokens=args.batch_tokens, pipeline=args.pipeline, max_batch_tokens=args.max_batch_tokens, max_wait_ms=args.max_wait_ms,
        max_batch_requests=args.max_batch_requests, max_pairs_per_request=args.max_pairs_per_request,
        max_queue_pairs=args.max_queue_pairs, max_body_bytes=args.max_body_bytes, body_timeout=args.body_timeout,
        max_connections=args.max_connections, shutdown_timeout=args.shutdown_timeout, docs=args.docs,
        api_key=c.read_api_key(args.api_key_file) if args.api_key_file else None)
    _check_bundle(config)
    server: uvicorn.Server | None = None

    def stop(exc: BaseException) -> None:  # from the worker thread, if the model fails to load
        if server is not None:
            server.should_exit = True

    app = create_app(config, on_fatal=stop)
    sock = _bind(args.host, args.port)
    host, port = sock.getsockname()[:2]
    server = uvicorn.Server(uvicorn.Config(app, log_level=args.log_level, access_log=False,
                                           http=with_header_timeout(config.body_timeout),
                                           timeout_graceful_shutdown=config.shutdown_timeout))
    print(f"transalign serve: listening on http://{host}:{port}", file=sys.stderr, flush=True)
    previous = {sig: signal.signal(sig, _ignore) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run(sockets=[sock])  # returns after a graceful shutdown (signal or fatal error)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
    if app.state.batcher.load_error is not None:
        raise UserError(f"could not load {config.bundle}: {app.state.batcher.load_error}")
    return 0


def _check_bundle(config) -> None:
    """Refuse a missing bundle, precision or provider before listening, not after a 503 from the
    worker (the session itself is still checked when the worker loads it)."""
    from transalign.engine.bundle import read_manifest
    from transalign.engine.session import resolve_provider

    resolve_provider(config.provider)  # --provider cuda without CUDA: an OptionError naming the flag

    manifest = read_manifest(config.bundle, verify_hashes=False, precision=config.precision)
    if config.precision not in manifest.precisions:
        raise ValueError(f"bundle {config.bundle} has no {config.precision} model "
                         f"(it has {', '.join(manifest.precisions)})")


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must say TCP: asyncio sets TCP_NODELAY only on such sockets, and without it Nagle +
    # delayed ACKs add ~40 ms to every response (measured: p50 56 ms -> 13 ms for one pair)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _ignore(signum, frame) -> None:
    """Installed under uvicorn's own handlers: what uvicorn re-raises after draining lands here."""
