"""Helpers to run the local judge server in tests (importable by any test module).

>>> from judge_server_fixture import judge_server, judge_config, rubric_requests
>>> with judge_server("rule") as srv:                                    # doctest: +SKIP
...     client = JudgeClient(judge_config(srv.url, tmp_path))
...     client.judge_many(rubric_requests(4))

- :func:`judge_server`: in-process server (a thread, real HTTP on 127.0.0.1, free port) with the
  ``rule``/``echo`` backend or any backend object, and optional faults.
- :func:`spawn_judge_server`: ``python -m rvpo judge serve ...`` as a subprocess (the real CLI),
  yielding its base URL once it listens; the process is terminated on exit.
- :func:`judge_config`: a :class:`JudgeConfig` for tests (cache in ``tmp_path``, tiny backoff).
- :func:`rubric_requests`: deterministic sample requests whose rule-backend verdicts are known.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from rvpo.judge import JudgeConfig, JudgeRequest
from rvpo.judge.faults import FaultInjector
from rvpo.judge.server import ServerThread, make_backend, spawn_server, start_in_thread

FAKE_KEY = "sk-test-SECRET123"


class SoftRuleBackend:
    """A rule judge with probabilities: ``P(true)`` = 0.1 + 0.8 x (share of the criterion's double-quoted
    phrases, or else of its 6+ letter words, found in the graded answer). Returns OpenAI ``logprobs``
    when asked (like the model backend in JSON mode), so soft verdicts can be tested over real HTTP."""

    name = "soft-rule"

    async def complete(self, messages: list[dict], params: dict) -> Any:
        import re

        from rvpo.judge.backends import extract_rubric_request, verdict_completion

        parsed = None
        for msg in reversed(messages):
            parsed = extract_rubric_request(str(msg.get("content", "")))
            if parsed is not None:
                break
        p = 0.1
        if parsed is not None:
            response, criterion = parsed
            words = re.findall(r'"([^"]+)"', criterion) or re.findall(r"[A-Za-z]{6,}", criterion)
            if words:
                p = 0.1 + 0.8 * sum(w.lower() in response.lower() for w in words) / len(words)
        return verdict_completion(p, bool(params.get("logprobs")))

    def close(self) -> None:
        pass


@contextlib.contextmanager
def judge_server(backend: Any = "rule", *, fault_rate: float = 0.0, fault_kinds: Any = None,
                 fault_script: list[str] | None = None, seed: int = 0, hang_s: float = 5.0,
                 slow_s: float = 0.3, latency_s: float = 0.0, api_key: str | None = None,
                 model_name: str = "rvpo-rule") -> Iterator[ServerThread]:
    """An in-process judge server; ``backend`` is ``"rule"``, ``"echo"``, ``"soft-rule"`` or a backend object."""
    if backend == "soft-rule":
        backend = SoftRuleBackend()
    if isinstance(backend, str):
        backend = make_backend(backend, latency_s=latency_s)
    faults = FaultInjector(rate=fault_rate, seed=seed, script=list(fault_script or []), hang_s=hang_s,
                           slow_s=slow_s, **({"kinds": fault_kinds} if fault_kinds else {}))
    srv = start_in_thread(backend, faults=faults, api_key=api_key, model_name=model_name)
    try:
        yield srv
    finally:
        srv.stop()


def spawn_judge_server(*args: str, timeout_s: float = 600.0, env: dict | None = None):
    """``rvpo judge serve --port 0 *args`` in a subprocess (context manager yielding the base URL)."""
    return spawn_server(*args, timeout_s=timeout_s, env=env)


def server_stats(url: str) -> dict:
    """``GET /v1/stats`` of a running server."""
    return httpx.get(url.rstrip("/") + "/stats", timeout=10).json()


def judge_config(url: str, tmp_path: Path | str | None = None, **overrides: Any) -> JudgeConfig:
    """Test config: given URL, cache under ``tmp_path`` (or none), short timeouts and backoff."""
    values: dict[str, Any] = dict(base_url=url, model="rvpo-rule", timeout_s=5.0, backoff_s=0.01,
                                  backoff_max_s=0.05, max_retries=3, max_reasks=2, concurrency=8,
                                  cache_path=str(Path(tmp_path) / "judge.sqlite") if tmp_path else None)
    values.update(overrides)
    return JudgeConfig(**values)


def rubric_requests(n: int, offset: int = 0) -> list[JudgeRequest]:
    """``n`` distinct requests; with the rule backend, even indices are met and odd ones are not."""
    out = []
    for i in range(offset, offset + n):
        convo = [{"role": "user", "content": f"Question {i}: my child has a fever, what should I do?"},
                 {"role": "assistant", "content": f"Answer {i}: give fluids and check the temperature."}]
        word = "fluids" if i % 2 == 0 else "antibiotics"
        out.append(JudgeRequest(convo, f'Mentions "{word}" (item {i}).', 5.0 if i % 3 else -2.0))
    return out


def expected_rule_verdicts(n: int, offset: int = 0) -> list[bool]:
    """What the rule backend answers for :func:`rubric_requests` (``n``, ``offset``)."""
    return [i % 2 == 0 for i in range(offset, offset + n)]
