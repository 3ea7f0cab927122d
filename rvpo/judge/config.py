"""Judge client configuration: one frozen dataclass, defaults stated once, secrets hidden.

The API key is a field like the others but is excluded from ``repr``/``str``/``as_dict`` so that a
config can be logged, written to a run directory or shown in an error without leaking it.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from rvpo.runs import redact_url
from rvpo.settings import Rule, check_rules, integer, load_settings, number, optional


def check_http_url(url: Any, field: str) -> str:
    """``url`` if it is ``http(s)://HOST[:PORT]/...`` with a host and a port in 1..65535; else a
    ``ValueError`` naming ``field`` (the URL redacted: no ``user:password@`` in the message)."""
    text = str(url)
    shown = redact_url(text)
    if not text.startswith(("http://", "https://")):
        raise ValueError(f"{field} must start with http:// or https://, got {shown!r}")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError(f"{field}: the port in {shown!r} is not a number in 1..65535") from None
    if not parts.hostname:
        raise ValueError(f"{field}: {shown!r} has no host (expected e.g. http://127.0.0.1:8000/v1)")
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"{field}: the port in {shown!r} is not a number in 1..65535")
    return text

DEFAULT_CACHE_PATH = os.path.join("~", ".cache", "rvpo", "judge.sqlite")
DEFAULT_MODEL = "smollm2-135m-instruct"

# Environment variables, first match wins.
ENV_BASE_URL = ("RVPO_JUDGE_BASE_URL", "OPENAI_BASE_URL")
ENV_MODEL = ("RVPO_JUDGE_MODEL",)
ENV_API_KEY = ("RVPO_JUDGE_API_KEY", "OPENAI_API_KEY")
ENV_CACHE_PATH = ("RVPO_JUDGE_CACHE",)
ENV_NUMBERS = {"requests_per_minute": "RVPO_JUDGE_RPM", "tokens_per_minute": "RVPO_JUDGE_TPM"}


def _env(names: tuple[str, ...]) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


@dataclass(frozen=True)
class JudgeConfig:
    """Where and how to call an OpenAI-compatible Chat Completions judge.

    Build it with :meth:`from_env` to fill ``base_url``, ``model``, ``api_key`` and ``cache_path`` from
    the environment. ``repr``/``str`` never show the API key (only whether one is set).
    """

    base_url: str | None = None
    """Server root including ``/v1``, e.g. ``http://127.0.0.1:8000/v1`` (env RVPO_JUDGE_BASE_URL, OPENAI_BASE_URL)."""
    model: str = DEFAULT_MODEL
    """Judge model name sent in each request (env RVPO_JUDGE_MODEL); part of the cache key."""
    api_key: str | None = field(default=None, repr=False)
    """Bearer token (env RVPO_JUDGE_API_KEY, OPENAI_API_KEY). Never logged, cached or shown."""
    concurrency: int = 8
    """Maximum judge requests in flight at once."""
    timeout_s: float = 60.0
    """Per-attempt HTTP timeout in seconds (connect + read)."""
    max_retries: int = 3
    """Extra attempts after a 429, a 5xx, a timeout, a connection error or an unreadable body."""
    max_reasks: int = 2
    """Extra turns asking the judge to fix a reply that is not a valid verdict JSON."""
    cache_path: str | None = DEFAULT_CACHE_PATH
    """sqlite verdict cache (env RVPO_JUDGE_CACHE, ``none`` = off); ``None`` or ``""`` disables caching."""
    temperature: float = 0.0
    """Sampling temperature sent to the judge (part of the cache key)."""
    max_tokens: int = 256
    """Maximum tokens of one judge answer (part of the cache key)."""
    json_mode: bool = False
    """Send ``response_format={"type": "json_object"}`` (the local server then constrains its output; part of the cache key)."""
    top_p: float | None = None
    """Nucleus sampling ``top_p`` sent to the judge; ``None`` = not sent (part of the cache key)."""
    seed: int | None = None
    """Sampling seed sent to the judge; ``None`` = not sent (part of the cache key)."""
    backoff_s: float = 0.5
    """First retry delay in seconds; doubles per retry with jitter, capped at ``backoff_max_s``."""
    backoff_max_s: float = 8.0
    """Upper bound of one backoff delay (without a ``Retry-After`` header)."""
    retry_after_max_s: float = 120.0
    """A ``Retry-After`` is honoured (by every request of the client) up to this many seconds."""
    requests_per_minute: float | None = None
    """Client-side limit on HTTP attempts per rolling minute (hosted APIs); ``None`` = no limit."""
    tokens_per_minute: float | None = None
    """Client-side limit on tokens per rolling minute (prompt estimate + ``max_tokens``, corrected by the reply's usage)."""
    logprobs: bool = False
    """Ask for token log-probabilities (``logprobs``, ``top_logprobs``) to read a soft verdict ``p_met`` from
    the reply (:func:`rvpo.judge.parse.p_met_from_logprobs`); a server without them gives hard verdicts.
    Part of the cache key only when on (so hard-verdict caches stay valid)."""
    top_logprobs: int = 5
    """Alternatives per token asked for with ``logprobs`` (OpenAI allows 0..20)."""
    threshold: float | None = None
    """Per-judge decision threshold: with it, a verdict that has ``p_met`` is "met" iff ``p_met >= threshold``
    (applied after the cache, which keeps the judge's own answer). ``None``: the judge's own answer."""
    cache_read_v1: bool = False
    """Also accept verdicts cached by rvpo before the sampling settings were keyed (v1 keys). Only safe if
    they were made with the same temperature, max_tokens, JSON mode (and no top_p / seed)."""

    def __post_init__(self):
        check_rules(self, _RULES, label=lambda name: f"JudgeConfig.{name}")
        if not self.model:
            raise ValueError("JudgeConfig.model must be a non-empty model name (env RVPO_JUDGE_MODEL)")
        if self.base_url is not None:
            check_http_url(self.base_url, "JudgeConfig.base_url")

    @classmethod
    def from_env(cls, **overrides: Any) -> JudgeConfig:
        """Config from the environment; keyword ``overrides`` win over it (values are coerced to the
        field types; an unknown name raises ``TypeError`` with the closest field).

        A ``None`` override means "not given" (so CLI options can be passed through as they are):
        disable the cache with ``cache_path=""`` (or ``RVPO_JUDGE_CACHE=none``), not with ``None``.

        >>> JudgeConfig.from_env(model="m", base_url="http://127.0.0.1:8000/v1").model
        'm'
        """
        values: dict[str, Any] = {}
        for name, env in (("base_url", ENV_BASE_URL), ("model", ENV_MODEL), ("api_key", ENV_API_KEY),
                          ("cache_path", ENV_CACHE_PATH)):
            value = _env(env)
            if value is not None:
                values[name] = "" if name == "cache_path" and value.lower() in ("none", "off") else value
        for name, var in ENV_NUMBERS.items():
            raw = os.environ.get(var)
            if raw:
                try:
                    values[name] = float(raw)
                except ValueError:
                    raise ValueError(f"environment variable {var}={raw!r}: expected a number") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return load_settings(cls, values, where="JudgeConfig: ", label=lambda name: f"JudgeConfig.{name}",
                             error=TypeError)

    @property
    def resolved_cache_path(self) -> str | None:
        """``cache_path`` with ``~`` expanded, or ``None`` when caching is off."""
        return os.path.expanduser(self.cache_path) if self.cache_path else None

    def as_dict(self) -> dict[str, Any]:
        """Fields as a dict safe to log or save: the API key is replaced by whether one is set, and any
        ``user:password@`` in ``base_url`` by ``***@``."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "api_key"}
        if out["base_url"] is not None:
            out["base_url"] = redact_url(out["base_url"])
        out["api_key_set"] = bool(self.api_key)
        return out

    def verdict_settings(self) -> dict[str, Any]:
        """The request settings that can change a verdict (all part of the cache key, besides the model and prompt)."""
        out = {"temperature": float(self.temperature), "top_p": self.top_p, "max_tokens": int(self.max_tokens),
               "json_mode": bool(self.json_mode), "seed": self.seed}
        if self.logprobs:  # only when on: keys of hard-verdict configs are unchanged
            out["logprobs"] = int(self.top_logprobs)
        return out

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items())
        return f"JudgeConfig({inner})"

    __str__ = __repr__


_RULES: dict[str, Rule] = {
    "concurrency": integer(1), "timeout_s": number(0, above=True), "max_retries": integer(0),
    "max_reasks": integer(0), "max_tokens": integer(1), "backoff_s": number(0), "backoff_max_s": number(0),
    "retry_after_max_s": number(0), "temperature": number(0, 2), "top_p": optional(number(0, 1, above=True)),
    "requests_per_minute": optional(number(0, above=True)), "tokens_per_minute": optional(number(0, above=True)),
    "top_logprobs": integer(0, 20), "threshold": optional(number(0, 1)),
}
"""Range rules of the :class:`JudgeConfig` fields (:func:`rvpo.settings.check_rules`)."""
