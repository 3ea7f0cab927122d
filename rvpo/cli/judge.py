"""``rvpo judge serve`` (the local OpenAI-compatible judge server) and ``rvpo judge check`` (can the judge
separate answers that meet a rubric item from answers that do not?). See docs/judge.md."""

from __future__ import annotations

import argparse
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
    s.add_argument("--model", "--judge-model", dest="model", default="smollm2-135m-instruct",
                   help="Model for --backend model: a local model folder, a .gguf file, or the embedded "
                        "'smollm2-135m-instruct'.")
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
    s.add_argument("--exit-with-stdin", action="store_true",
                   help="Exit when standard input closes: how a parent process (the rubric task's embedded judge) "
                        "keeps this server from outliving it.")
    s.set_defaults(func=_serve)
    c = sub.add_parser("check", help="Judge 12 built-in rubric items x (an answer that meets it, one that does not) "
                                     "and report the AUC; exit 1 when the judge cannot separate them.")
    c.add_argument("--judge-url", default=None,
                   help="OpenAI-compatible endpoint incl. /v1 (env RVPO_JUDGE_BASE_URL); default: start a local judge.")
    c.add_argument("--judge-model", default=None,
                   help="With --judge-url: the model name it serves. Without: the local judge's model (a model "
                        "folder, a .gguf file or the embedded 'smollm2-135m-instruct', the default).")
    c.add_argument("--backend", choices=("model", "rule"), default="model", help="Local judge backend (no --judge-url).")
    c.add_argument("--json-mode", action=argparse.BooleanOptionalAction, default=None,
                   help="Send response_format json_object (default: on for the local judge, off for an endpoint).")
    c.add_argument("--logprobs", action=argparse.BooleanOptionalAction, default=True,
                   help="Ask for token log-probabilities to read soft verdicts (p_met).")
    c.add_argument("--threshold", type=float, default=None, help="Per-judge decision threshold on p_met (hard AUC).")
    c.add_argument("--min-auc", type=float, default=0.65,
                   help="Exit 1 when the best AUC (soft or hard) is below this (0.5 = chance).")
    c.add_argument("--timeout", type=float, default=600.0, help="Seconds per judge request (a CPU judge is slow).")
    c.add_argument("--json", action="store_true", help="Print the full result as JSON.")
    c.set_defaults(func=_check)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _check(args) -> int:
    import contextlib
    import json

    from rvpo.judge import JudgeClient, JudgeConfig
    from rvpo.judge.check import run_check

    if not (math.isfinite(args.min_auc) and 0 <= args.min_auc <= 1):
        raise UserError(f"--min-auc must be in [0, 1], got {args.min_auc}")
    if args.threshold is not None and not (0 <= args.threshold <= 1):
        raise UserError(f"--threshold must be in [0, 1], got {args.threshold}")
    url = args.judge_url or os.environ.get("RVPO_JUDGE_BASE_URL")
    local = url is None
    model = args.judge_model or ("smollm2-135m-instruct" if args.backend == "model" else "rvpo-rule")
    if local and args.backend == "model":
        from rvpo.judge.backends import judge_model_problem

        problem = judge_model_problem(model)
        if problem:
            raise UserError(f"--judge-model: {problem}")
    json_mode = local if args.json_mode is None else args.json_mode
    with contextlib.ExitStack() as stack:
        if local:
            from rvpo.judge.server import spawn_server

            print(f"starting a local judge ({args.backend} {model if args.backend == 'model' else ''})...", flush=True)
            serve = ["--backend", args.backend, "--served-name", model, "--max-batch", "8"]
            if args.backend == "model":
                serve += ["--model", model]
            try:
                url = stack.enter_context(spawn_server(*serve, timeout_s=900))
            except RuntimeError as e:
                raise UserError(f"the local judge did not start: {str(e).splitlines()[-1]}") from None
        try:
            cfg = JudgeConfig.from_env(base_url=url, model=model, json_mode=json_mode, logprobs=args.logprobs,
                                       threshold=args.threshold, cache_path="", timeout_s=args.timeout)
        except ValueError as e:
            raise UserError(f"judge settings: {e}") from None
        with JudgeClient(cfg) as judge:
            res = run_check(judge)
    if args.json:
        print(json.dumps(res, indent=1))
    best = max((a for a in (res["auc_soft"], res["auc_hard"]) if math.isfinite(a)), default=math.nan)
    print(f"judge {model}: {res['n']} answers ({res['n'] // 2} rubric items x met/unmet), {res['abstained']} "
          f"abstained, {res['soft']} with a probability")
    print(f"  AUC soft (p_met) {res['auc_soft']:.3f}, AUC hard (yes/no) {res['auc_hard']:.3f}, "
          f"accuracy hard {res['accuracy_hard']:.3f}; mean p_met met {res['mean_p_met']['met']:.3f} / unmet "
          f"{res['mean_p_met']['unmet']:.3f}")
    if not math.isfinite(best) or best < args.min_auc:
        print(f"rvpo judge check: FAILED: the judge cannot tell answers that meet a rubric item from answers that "
              f"do not (best AUC {best:.3f} < {args.min_auc}; 0.5 is chance). Rubric rewards from it carry no "
              "signal: use a stronger judge model.", flush=True)
        return 1
    print(f"rvpo judge check: ok (best AUC {best:.3f} >= {args.min_auc})")
    return 0


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
        from rvpo.judge.backends import judge_model_problem

        problem = judge_model_problem(args.model)  # a folder, a .gguf file or a hub id: cheap to check now
        if problem:
            raise UserError(f"--model: {problem}")
    if args.port:
        _check_listen(args.host, args.port)  # before a model is loaded: a busy port fails in a second
    if args.exit_with_stdin:
        from rvpo.judge.session import exit_when_stdin_closes

        exit_when_stdin_closes()  # before the model loads: a parent that dies meanwhile takes us with it
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        backend = make_backend(args.backend, model=args.model, latency_s=args.latency, max_batch=args.max_batch,
                               precision=args.precision)
    except Exception as e:  # a missing folder or package: one line, not a traceback
        if isinstance(e, OSError) or type(e).__name__ == "ModelNotFoundError":
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
