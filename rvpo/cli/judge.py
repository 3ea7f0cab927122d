"""``rvpo judge serve``: run the local OpenAI-compatible judge server (see docs/judge.md)."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket

from rvpo.cli import UserError


def register(subparsers) -> None:
    """Add ``rvpo judge`` (and ``rvpo judge serve``) to the CLI."""
    p = subparsers.add_parser("judge", help="LLM judge utilities (local OpenAI-compatible server).")
    sub = p.add_subparsers(dest="judge_command", metavar="SUBCOMMAND", parser_class=type(p))
    s = sub.add_parser("serve", help="Serve a local judge on loopback: POST /v1/chat/completions, GET /v1/models.")
    s.add_argument("--model", default="smollm2-135m-instruct",
                   help="Model for --backend model: a local model folder or the embedded 'smollm2-135m-instruct'.")
    s.add_argument("--backend", choices=("model", "rule", "echo"), default="model",
                   help="model: a local LM with dynamic batching; rule: deterministic keyword judge (no model); "
                        "echo: returns the last message.")
    s.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                   help="Model precision for --backend model (auto: bf16 where the CPU has bf16 matrix units).")
    s.add_argument("--host", default="127.0.0.1", help="Interface to bind (keep loopback unless you mean it).")
    s.add_argument("--port", type=int, default=8000, help="TCP port; 0 picks a free one (printed at start).")
    s.add_argument("--max-batch", type=int, default=8, help="Most concurrent requests batched into one model call.")
    s.add_argument("--latency", type=float, default=0.0, help="Seconds the rule backend waits per request.")
    s.add_argument("--fault-rate", type=float, default=0.0, help="Probability that a request gets an injected fault.")
    s.add_argument("--fault-kinds", default="500,429,timeout,malformed,slow",
                   help="Comma list from 500,429,timeout,slow,malformed,badbody.")
    s.add_argument("--seed", type=int, default=0, help="Seed of the fault draws.")
    s.add_argument("--hang", type=float, default=3600.0, help="Seconds a 'timeout' fault holds the request.")
    s.add_argument("--slow", type=float, default=1.0, help="Seconds a 'slow' fault delays the answer.")
    s.add_argument("--retry-after", type=float, default=0.0,
                   help="Seconds of the Retry-After header a '429' fault carries.")
    s.add_argument("--served-name", default=None, help="Model id reported by GET /v1/models (default: --model).")
    s.add_argument("--require-key-env", default=None, metavar="VAR",
                   help="Require 'Authorization: Bearer $VAR' (the key is read from this environment variable).")
    s.set_defaults(func=_serve)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _serve(args) -> int:
    from rvpo.judge.faults import FaultInjector
    from rvpo.judge.server import JudgeServer, make_backend, serve_forever

    if args.port < 0 or args.port > 65535:
        raise UserError(f"--port must be in 0..65535, got {args.port}")
    if args.max_batch < 1:
        raise UserError(f"--max-batch must be >= 1, got {args.max_batch}")
    for opt in ("latency", "hang", "slow", "retry_after"):
        v = getattr(args, opt)
        if not (math.isfinite(v) and v >= 0):
            raise UserError(f"--{opt.replace('_', '-')} must be a finite number of seconds >= 0, got {v}")
    if not (math.isfinite(args.fault_rate) and 0 <= args.fault_rate <= 1):
        raise UserError(f"--fault-rate must be in [0, 1], got {args.fault_rate}")
    try:
        faults = FaultInjector(rate=args.fault_rate, kinds=args.fault_kinds, seed=args.seed,
                               hang_s=args.hang, slow_s=args.slow, retry_after_s=args.retry_after)
    except ValueError as e:
        raise UserError(f"--fault-rate/--fault-kinds/--retry-after: {e}") from None
    api_key = None
    if args.require_key_env:
        api_key = os.environ.get(args.require_key_env)
        if not api_key:
            raise UserError(f"--require-key-env: environment variable {args.require_key_env} is not set")
    if args.backend == "model":
        from rvpo.models import EMBEDDED_MODELS, ModelNotFoundError, resolve_model

        if args.model.strip().lower() not in EMBEDDED_MODELS:  # a folder or hub id: cheap to check now
            try:
                resolve_model(args.model)
            except ModelNotFoundError as e:
                raise UserError(f"--model: {e}") from None
    if args.port:
        _check_listen(args.host, args.port)  # before a model is loaded: a busy port fails in a second
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        backend = make_backend(args.backend, model=args.model, latency_s=args.latency, max_batch=args.max_batch,
                               precision=args.precision)
    except Exception as e:  # a missing folder or package: one line, not a traceback
        if type(e).__name__ in ("ModelNotFoundError", "OSError", "FileNotFoundError"):
            raise UserError(f"--model {args.model!r}: {e}") from None
        raise
    name = args.served_name or (args.model if args.backend == "model" else f"rvpo-{args.backend}")
    server = JudgeServer(backend, model_name=name, host=args.host, port=args.port, faults=faults, api_key=api_key)
    try:
        asyncio.run(serve_forever(server))
    except OSError as e:
        raise UserError(f"cannot listen on {args.host}:{args.port}: {e}") from None
    return 0


def _check_listen(host: str, port: int) -> None:
    """Raise :class:`UserError` if ``host:port`` cannot be bound now (in use, no such interface)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise UserError(f"--host {host!r}: {e.strerror or e}") from None
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(addr)
        except OSError as e:
            raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
