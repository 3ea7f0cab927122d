"""The policy under evaluation: something that answers conversations.

One method: ``policy.answer(conversations) -> list[str]``, ``P`` conversations (lists of
``{"role", "content"}`` messages) in, ``P`` answer strings out, in order.

- :class:`LocalPolicy`: a model ``rvpo`` can load (a local folder, the embedded SmolLM2 default, a
  hub id if the user has a network), run with :func:`rvpo.model.generation.generate` (greedy by default).
- :class:`OpenAIPolicy`: any OpenAI-compatible Chat Completions endpoint (vLLM, llama.cpp server,
  ``rvpo judge serve``, a hosted API) through the ``openai`` SDK. The API key is read from an
  environment variable (never an argument that could land in a shell history or a log); a local
  server that needs no key gets the placeholder ``"EMPTY"``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, runtime_checkable

from rvpo.model.generation import generate
from rvpo.model.loading import ModelNotFoundError
from rvpo.model.policy import load_policy
from rvpo.runs import redact_url

Conversation = list[dict]


class PolicyError(RuntimeError):
    """The policy could not answer: a model that cannot be loaded, or an endpoint request that failed."""


@runtime_checkable
class Policy(Protocol):
    """What an eval needs from the model under test."""

    def answer(self, conversations: Sequence[Conversation]) -> list[str]:
        """``P`` conversations in, ``P`` answers out, in order."""
        ...

    def describe(self) -> dict[str, Any]:
        """Settings to record in the run directory (never secrets)."""
        ...


class LocalPolicy:
    """A local causal LM: greedy (``temperature=0``) or sampled answers, ``batch_size`` prompts per call.

    Args:
        model_or_path: anything :func:`rvpo.model.policy.load_policy` accepts (``None``: the embedded default;
            a model folder, a run directory, a checkpoint; LoRA adapters are merged), or an already
            loaded model (then pass ``tokenizer``).
        precision: ``auto``, ``fp32`` or ``bf16`` for a model loaded here (:mod:`rvpo.model.precision`).
        tokenizer: the tokenizer when ``model_or_path`` is a model object.
        max_new_tokens, batch_size, temperature, seed: passed to :func:`rvpo.model.generation.generate`.
    The model is loaded on the first :meth:`answer` call.
    """

    def __init__(self, model_or_path: Any = None, max_new_tokens: int = 512, batch_size: int = 8,
                 temperature: float = 0.0, seed: int | None = None, tokenizer: Any = None,
                 precision: str = "auto"):
        if max_new_tokens < 1 or batch_size < 1:
            raise ValueError(f"max_new_tokens and batch_size must be >= 1, got {max_new_tokens}, {batch_size}")
        self._spec = model_or_path
        self._model = None if model_or_path is None or isinstance(model_or_path, (str, os.PathLike)) else model_or_path
        self._tokenizer = tokenizer
        if self._model is not None and tokenizer is None:
            raise ValueError("LocalPolicy: pass tokenizer= with a loaded model")
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.temperature = temperature
        self.seed = seed
        self.precision = precision

    def load(self) -> LocalPolicy:
        """Load the model now (otherwise on the first :meth:`answer`); :class:`PolicyError` if it cannot be."""
        if self._model is None:
            try:
                self._model, self._tokenizer = load_policy(self._spec, precision=self.precision)
            except (ModelNotFoundError, OSError) as e:
                raise PolicyError(f"policy model: {e}") from None
        return self

    def answer(self, conversations: Sequence[Conversation]) -> list[str]:
        """Generate one answer per conversation (loads the model on first use)."""
        if not conversations:
            return []
        self.load()
        return generate(self._model, self._tokenizer, list(conversations), max_new_tokens=self.max_new_tokens,
                        temperature=self.temperature, batch_size=self.batch_size, seed=self.seed)

    def describe(self) -> dict[str, Any]:
        """Model and generation settings."""
        name = self._spec if isinstance(self._spec, (str, os.PathLike, type(None))) else type(self._spec).__name__
        return {"kind": "local", "model": str(name) if name is not None else "default",
                "max_new_tokens": self.max_new_tokens, "batch_size": self.batch_size,
                "temperature": self.temperature, "seed": self.seed, "precision": self.precision}


class OpenAIPolicy:
    """An OpenAI-compatible Chat Completions endpoint as the policy.

    Args:
        base_url: server root including ``/v1``.
        model: model name sent with each request.
        api_key_env: environment variable holding the API key (``"EMPTY"`` is sent if it is unset).
        max_new_tokens: ``max_tokens`` per answer.
        temperature: sampling temperature (0: greedy where the server supports it).
        concurrency: requests in flight at once (a thread pool).
        timeout_s, max_retries: per request, handled by the ``openai`` SDK (it retries 429/5xx/timeouts
            with backoff). A request that still fails raises :class:`PolicyError` naming its index: an
            eval never scores a missing answer as a wrong one silently.
    """

    def __init__(self, base_url: str, model: str, api_key_env: str = "RVPO_POLICY_API_KEY",
                 max_new_tokens: int = 512, temperature: float = 0.0, concurrency: int = 8,
                 timeout_s: float = 120.0, max_retries: int = 3, seed: int | None = None):
        from rvpo.judge.config import check_http_url  # deferred: optional dependency httpx (rvpo.judge imports it)

        check_http_url(base_url, "policy base_url")
        if concurrency < 1 or max_new_tokens < 1:
            raise ValueError("concurrency and max_new_tokens must be >= 1")
        self.base_url, self.model, self.api_key_env = base_url, model, api_key_env
        self.max_new_tokens, self.temperature, self.concurrency = max_new_tokens, temperature, concurrency
        self.timeout_s, self.max_retries, self.seed = timeout_s, max_retries, seed
        self._client = None

    @property
    def _shown_url(self) -> str:
        """``base_url`` as it may be printed or stored: any ``user:password@`` replaced by ``***@``."""
        return redact_url(self.base_url)

    def _scrub(self, text: object) -> str:
        """``text`` with URL userinfo and the API key (if one is set) removed."""
        text = redact_url(text)
        key = os.environ.get(self.api_key_env)
        return text.replace(key, "***") if key and len(key) >= 4 else text

    def _get_client(self):
        if self._client is None:
            from openai import OpenAI  # deferred: optional dependency openai (rvpo[judge])

            self._client = OpenAI(base_url=self.base_url, api_key=os.environ.get(self.api_key_env) or "EMPTY",
                                  timeout=self.timeout_s, max_retries=self.max_retries)
        return self._client

    def _one(self, i: int, conv: Conversation) -> str:
        client = self._get_client()
        kwargs: dict[str, Any] = {"model": self.model, "messages": conv, "max_tokens": self.max_new_tokens,
                                  "temperature": self.temperature}
        if self.seed is not None and self.temperature > 0:
            kwargs["seed"] = self.seed
        try:
            resp = client.chat.completions.create(**kwargs)
        except Exception as e:  # keep only the type and message, with any key or URL userinfo scrubbed
            raise PolicyError(f"policy endpoint {self._shown_url}: request {i} failed: "
                              f"{type(e).__name__}: {self._scrub(e)}") from None
        if not resp.choices:
            raise PolicyError(f"policy endpoint {self._shown_url}: request {i}: no choices in the reply")
        return resp.choices[0].message.content or ""

    def answer(self, conversations: Sequence[Conversation]) -> list[str]:
        """One chat completion per conversation, ``concurrency`` in flight; raises on a failed request."""
        if not conversations:
            return []
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(conversations))) as pool:
            return list(pool.map(self._one, range(len(conversations)), conversations))

    def describe(self) -> dict[str, Any]:
        """Endpoint and sampling settings (the key's variable name, never the key)."""
        return {"kind": "openai", "base_url": self._shown_url, "model": self.model, "api_key_env": self.api_key_env,
                "max_new_tokens": self.max_new_tokens, "temperature": self.temperature,
                "concurrency": self.concurrency}


def make_policy(model: str | None = None, base_url: str | None = None, policy_model: str | None = None,
                api_key_env: str = "RVPO_POLICY_API_KEY", max_new_tokens: int = 512, batch_size: int = 8,
                temperature: float = 0.0, seed: int | None = None, concurrency: int = 8,
                precision: str = "auto") -> Policy:
    """A :class:`OpenAIPolicy` when ``base_url`` is given (needs ``policy_model``), else a :class:`LocalPolicy`."""
    if base_url:
        if model:
            raise ValueError("give either a local model or a policy endpoint, not both")
        if not policy_model:
            raise ValueError("a policy endpoint needs a model name (--policy-model)")
        return OpenAIPolicy(base_url, policy_model, api_key_env=api_key_env, max_new_tokens=max_new_tokens,
                            temperature=temperature, concurrency=concurrency, seed=seed)
    return LocalPolicy(model, max_new_tokens=max_new_tokens, batch_size=batch_size, temperature=temperature, seed=seed,
                       precision=precision)
