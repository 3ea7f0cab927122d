"""A local judge as a child process that is never orphaned (the rubric task's embedded judge).

:class:`EmbeddedJudge` starts ``python -m rvpo judge serve --port 0 --exit-with-stdin ARGS`` on a free
loopback port, waits until it listens and answers
``GET /v1/models``, and stops it on :meth:`EmbeddedJudge.stop` (context-manager exit, an exception,
Ctrl-C, ``sys.exit``: all go through ``stop``; ``atexit`` is a second net). The child cannot outlive
its parent even when the parent is killed with SIGKILL: it holds the read end of a pipe whose write
end only the parent holds, and exits as soon as that pipe reaches end-of-file (the kernel closes it
when the parent dies; :func:`exit_when_stdin_closes`, which ``--exit-with-stdin`` starts). It runs in its own session, so a terminal Ctrl-C (which ``rvpo train`` turns
into "finish this step") does not kill the judge mid-step.

The server's output goes to ``<log_path>`` (``judge_server.log`` in the run directory).
"""

from __future__ import annotations

import atexit
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from rvpo.judge.server import stop_process

_LISTENING = re.compile(r"listening on (http://\S+/v1)")


class JudgeStartError(RuntimeError):
    """The embedded judge exited or did not listen in time; the message holds its output tail."""


class EmbeddedJudge:
    """A ``rvpo judge serve`` child process.

    Args:
        serve_args: extra ``rvpo judge serve`` arguments (``--backend rule``, ``--model PATH``, ...).
        log_path: file receiving the server's stdout and stderr.
        start_timeout_s: seconds to wait for "listening" (model loading included).
    """

    def __init__(self, serve_args: Sequence[str], log_path: str | os.PathLike, start_timeout_s: float = 600.0):
        self.serve_args = [str(a) for a in serve_args]
        self.log_path = Path(log_path)
        self.start_timeout_s = float(start_timeout_s)
        self.proc: subprocess.Popen | None = None
        self.url: str | None = None
        self._log = None
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def start(self) -> str:
        """Start the server and return its base URL (``http://127.0.0.1:PORT/v1``) once it answers."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        cmd = [sys.executable, "-m", "rvpo", "judge", "serve", "--port", "0", "--exit-with-stdin", *self.serve_args]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True, close_fds=True)
        atexit.register(self.stop)
        try:
            self.url = self._wait_listening()
            self._wait_ready(self.url)
        except BaseException:
            self.stop()
            raise
        return self.url

    def _tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no output)"

    def _wait_listening(self) -> str:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            m = _LISTENING.search(self.log_path.read_text(errors="replace"))
            if m:
                return m.group(1)
            if self.proc.poll() is not None:
                raise JudgeStartError(f"embedded judge exited with code {self.proc.returncode} before listening "
                                      f"(log: {self.log_path}):\n{self._tail()}")
            time.sleep(0.2)
        raise JudgeStartError(f"embedded judge did not listen within {self.start_timeout_s:.0f} s "
                              f"(log: {self.log_path}):\n{self._tail()}")

    def _wait_ready(self, url: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if httpx.get(url + "/models", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise JudgeStartError(f"embedded judge at {url} does not answer GET /v1/models:\n{self._tail()}")
            time.sleep(0.2)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Stop the server (idempotent): close its lifeline pipe, SIGTERM, then SIGKILL after 10 s."""
        with self._lock:
            proc, self.proc = self.proc, None
            if proc is not None:
                try:
                    if proc.stdin is not None:
                        proc.stdin.close()
                except OSError:
                    pass
                stop_process(proc, grace_s=10)
            if self._log is not None:
                self._log.close()
                self._log = None
        atexit.unregister(self.stop)

    def __enter__(self) -> EmbeddedJudge:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def exit_when_stdin_closes() -> None:
    """Start a daemon thread that exits this process when standard input (the parent's pipe) reaches end-of-file."""

    def watch() -> None:
        try:
            while sys.stdin.buffer.read(4096):
                pass
        except (OSError, ValueError):
            pass
        os._exit(0)

    threading.Thread(target=watch, name="parent-lifeline", daemon=True).start()
