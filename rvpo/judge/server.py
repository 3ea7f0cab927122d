"""A small OpenAI-compatible judge server on loopback: dependency-free asyncio HTTP/1.1.

Endpoints: ``POST /v1/chat/completions`` (``model``, ``messages``, ``max_tokens``, ``temperature``,
``response_format={"type": "json_object"}`` -> constrained verdict with the model backend, ``logprobs``
-> ``choices[0].logprobs.content`` where the backend has probabilities, else ``null``),
``GET /v1/models``, and, not part of the OpenAI API, ``GET /v1/stats`` (requests, max in flight,
faults drawn, batch sizes) for tests and benchmarks. Keep-alive connections; no TLS, no streaming.

Start it with ``rvpo judge serve`` or, in Python, :func:`start_in_thread` (tests). With ``api_key``
set, requests without ``Authorization: Bearer <key>`` get 401. Headers are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

from rvpo.judge import backends
from rvpo.judge.faults import MALFORMED_CONTENT, FaultInjector

log = logging.getLogger("rvpo.judge.server")
MAX_BODY = 32 * 1024 * 1024
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
            411: "Length Required", 413: "Payload Too Large", 429: "Too Many Requests", 500: "Internal Server Error"}


class _HTTPError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class JudgeServer:
    """Serves one backend (see ``rvpo.judge.backends``) with optional fault injection."""

    def __init__(self, backend: Any, model_name: str = "local-judge", host: str = "127.0.0.1",
                 port: int = 8000, faults: FaultInjector | None = None, api_key: str | None = None):
        self.backend, self.model_name = backend, model_name
        self.host, self.port = host, port
        self.faults = faults or FaultInjector()
        self._api_key = api_key
        self.requests = 0
        self.completions = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.statuses: Counter = Counter()
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    @property
    def url(self) -> str:
        """Base URL for clients, ending in ``/v1``."""
        return f"http://{self.host}:{self.port}/v1"

    def stats(self) -> dict[str, Any]:
        """Counters served at ``GET /v1/stats``."""
        return {"requests": self.requests, "completions": self.completions, "in_flight": self.in_flight,
                "max_in_flight": self.max_in_flight, "statuses": {str(k): v for k, v in self.statuses.items()},
                "faults": dict(self.faults.counts), "backend": self.backend.name,
                "batch_sizes": list(getattr(self.backend, "batch_sizes", []))}

    async def start(self) -> None:
        """Bind and listen (port 0 is resolved to the actual port)."""
        self._server = await asyncio.start_server(self._connection, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]  # resolves port 0

    async def stop(self) -> None:
        """Stop listening, cancel open connections and close the backend."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.backend.close()

    # ---- HTTP ---------------------------------------------------------------------------------
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                request = await self._read_request(reader)
                if request is None:
                    break
                method, path, headers, body = request
                status, payload, extra = await self._dispatch(method, path, headers, body)
                keep = headers.get("connection", "").lower() != "close"
                await self._write(writer, status, payload, extra, keep)
                if not keep:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        except (asyncio.LimitOverrunError, ValueError):  # a header line over the stream limit
            await self._try_write(writer, 400, "request header too long")
        except _HTTPError as e:  # malformed request framing
            await self._try_write(writer, e.status, e.message)
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _try_write(self, writer: asyncio.StreamWriter, status: int, message: str) -> None:
        try:
            await self._write(writer, status, _error_body(message, status), {}, False)
        except ConnectionError:
            pass

    async def _read_request(self, reader: asyncio.StreamReader):
        line = await reader.readline()
        if not line:
            return None
        try:
            method, path, _ = line.decode("latin-1").split(" ", 2)
        except ValueError:
            raise _HTTPError(400, "bad request line") from None
        headers: dict[str, str] = {}
        while True:
            h = await reader.readline()
            if h in (b"\r\n", b"\n", b""):
                break
            name, _, value = h.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            raise _HTTPError(411, "chunked bodies are not supported: send Content-Length")
        try:
            length = int(headers.get("content-length", "0") or 0)
        except ValueError:
            raise _HTTPError(400, "bad Content-Length") from None
        if length < 0 or length > MAX_BODY:
            raise _HTTPError(413, "request body too large")
        body = await reader.readexactly(length) if length else b""
        return method.upper(), path.split("?", 1)[0], headers, body

    async def _write(self, writer, status: int, payload: bytes, extra: dict[str, str], keep: bool) -> None:
        head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}",
                "Content-Type: application/json", f"Content-Length: {len(payload)}",
                f"Connection: {'keep-alive' if keep else 'close'}"]
        head += [f"{k}: {v}" for k, v in extra.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload)
        await writer.drain()
        self.statuses[status] += 1

    async def _dispatch(self, method: str, path: str, headers: dict[str, str], body: bytes):
        path = path.rstrip("/")
        if self._api_key is not None:
            supplied = headers.get("authorization", "")
            if not secrets.compare_digest(supplied.encode(), f"Bearer {self._api_key}".encode()):
                return 401, _error_body("missing or wrong API key", 401), {}
        if path == "/v1/models" and method == "GET":
            data = {"object": "list", "data": [{"id": self.model_name, "object": "model",
                                                "created": 0, "owned_by": "rvpo"}]}
            return 200, _json(data), {}
        if path == "/v1/stats" and method == "GET":
            return 200, _json(self.stats()), {}
        if path == "/v1/chat/completions":
            if method != "POST":
                return 405, _error_body("use POST", 405), {}
            return await self._chat(body)
        return 404, _error_body(f"no route {method} {path}", 404), {}

    async def _chat(self, body: bytes):
        self.requests += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            try:
                req = json.loads(body)
                messages = req["messages"]
                if not isinstance(messages, list) or not messages:
                    raise ValueError
            except (ValueError, KeyError, TypeError):
                return 400, _error_body("body must be JSON with a non-empty 'messages' list", 400), {}
            fault = self.faults.draw()
            if fault == "500":
                return 500, _error_body("injected server error", 500), {}
            if fault == "429":
                return 429, _error_body("injected rate limit", 429), {"Retry-After": f"{self.faults.retry_after_s:g}"}
            if fault == "timeout":
                await asyncio.sleep(self.faults.hang_s)
            if fault == "slow":
                await asyncio.sleep(self.faults.slow_s)
            if fault == "badbody":
                return 200, b"<html>upstream hiccup", {}
            fmt = req.get("response_format") or {}
            params = {"max_tokens": req.get("max_tokens") or 256, "temperature": req.get("temperature") or 0.0,
                      "json_mode": isinstance(fmt, dict) and fmt.get("type") == "json_object",
                      "logprobs": req.get("logprobs") is True}
            logprobs = None
            if fault == "malformed":
                text = MALFORMED_CONTENT
            else:
                try:
                    text = await self.backend.complete(messages, params)
                    text, logprobs = text if isinstance(text, tuple) else (text, None)
                except Exception as e:  # a backend bug must not kill the connection
                    log.exception("backend failed")
                    return 500, _error_body(f"backend error: {type(e).__name__}", 500), {}
            self.completions += 1
            body = _completion(req.get("model") or self.model_name, text, messages)
            if params["logprobs"]:  # OpenAI shape; null where the backend has no probabilities
                body["choices"][0]["logprobs"] = {"content": logprobs} if logprobs is not None else None
            return 200, _json(body), {}
        finally:
            self.in_flight -= 1


def _json(obj: Any) -> bytes:
    return json.dumps(obj).encode("utf-8")


def _error_body(message: str, status: int) -> bytes:
    return _json({"error": {"message": message, "type": "server_error" if status >= 500 else "invalid_request",
                            "code": status}})


def _completion(model: str, text: str, messages: list | None = None) -> dict[str, Any]:
    """A chat.completion body. ``usage`` is approximate (characters / 4, as no tokenizer is consulted)."""
    n_in = -(-sum(len(str(m.get("content", ""))) for m in messages or [] if isinstance(m, dict)) // 4)
    n_out = -(-len(text) // 4)
    return {"id": f"chatcmpl-{secrets.token_hex(8)}", "object": "chat.completion", "created": int(time.time()),
            "model": model, "choices": [{"index": 0, "finish_reason": "stop",
                                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": n_in, "completion_tokens": n_out, "total_tokens": n_in + n_out}}


def make_backend(kind: str, model: str | None = None, latency_s: float = 0.0, max_batch: int = 8,
                 precision: str = "auto"):
    """``rule`` | ``echo`` | ``model`` (``model`` = folder path or embedded name, default SmolLM2)."""
    if kind == "rule":
        return backends.RuleBackend(latency_s=latency_s)
    if kind == "echo":
        return backends.EchoBackend()
    if kind == "model":
        return backends.ModelBackend(model, max_batch=max_batch, precision=precision)
    raise ValueError(f"backend {kind!r} unknown; choose rule, echo or model")


class ServerThread:
    """A :class:`JudgeServer` running in a daemon thread with its own event loop (for tests)."""

    def __init__(self, server: JudgeServer):
        self.server = server
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="rvpo-judge-server", daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self.server.start())
        except BaseException as e:  # e.g. port in use
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()

    def start(self) -> ServerThread:
        """Start the thread and wait until the server listens (raises if it cannot)."""
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise RuntimeError(f"judge server failed to start: {self._error}") from self._error
        return self

    @property
    def url(self) -> str:
        """Base URL, ending in ``/v1``."""
        return self.server.url

    def stats(self) -> dict[str, Any]:
        """The server's counters, read on its own loop."""
        return asyncio.run_coroutine_threadsafe(_call(self.server.stats), self._loop).result(10)

    def stop(self) -> None:
        """Stop the server and join the thread."""
        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(30)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)

    def __enter__(self) -> ServerThread:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


async def _call(fn):
    return fn()


def start_in_thread(backend: Any, **kwargs: Any) -> ServerThread:
    """Start ``JudgeServer(backend, **kwargs)`` (default ``port=0``: a free port) in a thread."""
    kwargs.setdefault("port", 0)
    return ServerThread(JudgeServer(backend, **kwargs)).start()


async def serve_forever(server: JudgeServer, announce=print) -> None:
    """Run until cancelled (Ctrl-C); prints the URL once listening."""
    await server.start()
    announce(f"rvpo judge server ({server.backend.name}) listening on {server.url}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


@contextlib.contextmanager
def spawn_server(*args: str, timeout_s: float = 600.0, env: dict | None = None) -> Iterator[str]:
    """Run ``python -m rvpo judge serve --port 0 *args`` as a subprocess; yield its base URL (``.../v1``).

    Waits for the "listening on" line (model loading included), keeps draining the process output,
    and terminates the process on exit. Raises ``RuntimeError`` with the output tail if it never listens.
    """
    cmd = [sys.executable, "-m", "rvpo", "judge", "serve", "--port", "0", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})})
    lines: list[str] = []
    try:
        deadline, url = time.monotonic() + timeout_s, None
        assert proc.stdout is not None
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            m = re.search(r"listening on (http://\S+/v1)", line)
            url = m.group(1) if m else None
        if url is None:
            raise RuntimeError("judge server did not start:\n" + "".join(lines[-30:]))
        threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # drain the pipe
        yield url
    finally:
        stop_process(proc, grace_s=20)


def stop_process(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM ``proc`` if it still runs, then SIGKILL after ``grace_s`` seconds; reap it."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
