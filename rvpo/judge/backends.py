"""Backends of the local judge server: ``rule`` and ``echo`` (no model) and ``model`` (transformers).

A backend turns one chat request into the assistant's text: ``await backend.complete(messages,
params)`` with ``params = {"max_tokens", "temperature", "json_mode"}``.

- ``rule``: deterministic, instant (plus an optional fixed ``latency_s``). It reads the rubric item
  and the graded response from an rvpo judge prompt and says ``criteria_met`` is true when every
  double-quoted phrase of the criterion (or, with none, any word of 6+ letters of it) occurs in the
  response. Good for exact, fast tests over real HTTP.
- ``echo``: answers with the last message's content (never a verdict, unless the judge prompt
  itself were one).
- ``model``: a local causal LM (the embedded SmolLM2 by default). Concurrent requests are batched
  dynamically into one forward/generate call. With ``json_mode`` (``response_format={"type":
  "json_object"}``) the output is constrained: the answer is forced to start with
  ``{"criteria_met":`` and the verdict is whichever of `` true`` / `` false`` has the larger next-token
  logit; the explanation reports that probability. The system prompt's KV cache is computed once and
  reused (every judge call shares ``GRADER_TEMPLATE``), so only the request-specific tokens are
  processed. Without ``json_mode`` the model generates freely (greedy at temperature 0) and, being
  small, often produces no valid JSON: the client then re-asks.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import inspect
import json
import re
from typing import Any

_ID = re.compile(r"Transcript id: (\w+)")
_ITEM = re.compile(r"^Rubric item: \[(-?[\d.]+)\] (.*)$", re.M)


def extract_rubric_request(text: str) -> tuple[str, str] | None:
    """``(graded response, criterion)`` from an rvpo judge user message, or ``None``."""
    m_id = _ID.search(text)
    if not m_id:
        return None
    nonce = m_id.group(1)
    begin, end = f"BEGIN TRANSCRIPT {nonce}\n", f"\nEND TRANSCRIPT {nonce}"
    if begin not in text or end not in text:
        return None
    transcript = text[text.index(begin) + len(begin):text.rindex(end)]
    m_item = _ITEM.search(text, text.rindex(end))  # the item AFTER the transcript, not one quoted in it
    if not m_item:
        return None
    marker = "[assistant - response to grade]\n"
    response = transcript[transcript.rindex(marker) + len(marker):] if marker in transcript else ""
    return response, m_item.group(2)


def rule_verdict(response: str, criterion: str) -> tuple[bool, str]:
    """The rule backend's decision (see module docstring)."""
    low = response.lower()
    phrases = re.findall(r'"([^"]+)"', criterion)
    if phrases:
        missing = [p for p in phrases if p.lower() not in low]
        return (not missing, f"missing {missing}" if missing else f"contains all of {phrases}")
    words = [w for w in re.findall(r"[A-Za-z]{6,}", criterion)]
    hits = [w for w in words if w.lower() in low]
    return (bool(hits), f"shares {hits[:3]}" if hits else "shares no long word with the criterion")


class RuleBackend:
    """Keyword rule judge; ``latency_s`` simulates model time (per request, concurrent)."""

    name = "rule"

    def __init__(self, latency_s: float = 0.0):
        self.latency_s = latency_s

    async def complete(self, messages: list[dict], params: dict[str, Any]) -> str:
        """The assistant text for one chat request."""
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        parsed = None
        for msg in reversed(messages):  # after a re-ask the rubric request is an earlier turn
            parsed = extract_rubric_request(str(msg.get("content", "")))
            if parsed is not None:
                break
        if parsed is None:
            met, why = False, "no rvpo rubric request found in the last message"
        else:
            met, why = rule_verdict(*parsed)
        return json.dumps({"explanation": why, "criteria_met": met})

    def close(self) -> None:
        """Release resources (the server calls it on stop)."""
        pass


class EchoBackend:
    """Answers with the last message's content."""

    name = "echo"

    async def complete(self, messages: list[dict], params: dict[str, Any]) -> str:
        """The assistant text for one chat request."""
        return str(messages[-1].get("content", "")) if messages else ""

    def close(self) -> None:
        """Release resources (the server calls it on stop)."""
        pass


class ModelBackend:
    """A local transformers causal LM with dynamic batching (one model call at a time)."""

    name = "model"
    JSON_PREFIX = '{"criteria_met":'

    def __init__(self, model: str | None = None, max_batch: int = 8, batch_wait_s: float = 0.02,
                 model_and_tokenizer: tuple[Any, Any] | None = None, precision: str = "auto"):
        import torch

        from rvpo.policy import load_policy

        self.torch = torch
        # precision: auto | fp32 | bf16, as everywhere (rvpo.precision); bf16 where the CPU has bf16 units
        self.model, self.tok = model_and_tokenizer or load_policy(model, precision=precision)
        self.model.eval()
        self.max_batch, self.batch_wait_s = max_batch, batch_wait_s
        ids = [self.tok.encode(w, add_special_tokens=False)[0] for w in (" true", " false")]
        self.true_id, self.false_id = ids
        params = inspect.signature(self.model.base_model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"  # renamed in transformers 5.x
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="judge-model")
        self._prefix_cache: dict[str, tuple[str, int, Any]] = {}
        self.batch_sizes: list[int] = []

    async def complete(self, messages: list[dict], params: dict[str, Any]) -> str:
        """The assistant text for one chat request."""
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._run())
        fut = asyncio.get_running_loop().create_future()
        await self._queue.put((messages, params, fut))
        return await fut

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            await asyncio.sleep(self.batch_wait_s)  # let concurrent requests join this batch
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            live = [b for b in batch if not b[2].done()]  # a cancelled request needs no answer
            if not live:
                continue
            self.batch_sizes.append(len(live))
            try:
                texts = await loop.run_in_executor(self._pool, self._run_batch, [(m, p) for m, p, _ in live])
            except Exception as e:  # surfaced to every request of the batch as a 500
                for _, _, fut in live:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            for (_, _, fut), text in zip(live, texts, strict=True):
                if not fut.done():
                    fut.set_result(text)

    def _run_batch(self, items: list[tuple[list[dict], dict]]) -> list[str]:
        out: list[str | None] = [None] * len(items)
        json_idx = [i for i, (_, p) in enumerate(items) if p.get("json_mode")]
        free_idx = [i for i, (_, p) in enumerate(items) if not p.get("json_mode")]
        with self.torch.inference_mode():
            if json_idx:
                for i, text in zip(json_idx, self._constrained([items[i][0] for i in json_idx]), strict=True):
                    out[i] = text
            if free_idx:
                for i, text in zip(free_idx, self._generate([items[i] for i in free_idx]), strict=True):
                    out[i] = text
        return out  # type: ignore[return-value]

    def _chat_text(self, messages: list[dict]) -> str:
        return self.tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def _prefix(self, system: str) -> tuple[str, int, Any]:
        """(text, length, KV cache) of the chat-formatted system message; computed once per system prompt."""
        if system not in self._prefix_cache:
            text = self.tok.apply_chat_template([{"role": "system", "content": system}], tokenize=False)
            ids = self.tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
            out = self.model.base_model(input_ids=ids, use_cache=True)
            cache = getattr(out, "cache", None)
            cache = out.past_key_values if cache is None else cache
            if len(self._prefix_cache) >= 4:
                self._prefix_cache.pop(next(iter(self._prefix_cache)))
            self._prefix_cache[system] = (text, ids.shape[1], cache)
        return self._prefix_cache[system]

    def _constrained(self, batch: list[list[dict]]) -> list[str]:
        """Verdicts by comparing the `` true`` / `` false`` logits after a forced ``{"criteria_met":``."""
        torch = self.torch
        groups: dict[str | None, list[int]] = {}
        for i, msgs in enumerate(batch):
            system = msgs[0]["content"] if msgs and msgs[0].get("role") == "system" else None
            groups.setdefault(system, []).append(i)
        out: list[str] = [""] * len(batch)
        for system, idx in groups.items():
            texts = [self._chat_text(batch[i]) + self.JSON_PREFIX for i in idx]
            past, offset = None, 0
            if system is not None:
                prefix_text, offset, cache = self._prefix(system)
                if all(t.startswith(prefix_text) for t in texts):
                    texts = [t[len(prefix_text):] for t in texts]
                    past = copy.deepcopy(cache)
                    past.batch_repeat_interleave(len(idx))
                else:
                    offset = 0
            enc = [self.tok(t, add_special_tokens=False)["input_ids"] for t in texts]
            lengths = [len(e) for e in enc]
            width = max(lengths)
            pad = self.tok.pad_token_id or 0
            ids = torch.tensor([e + [pad] * (width - len(e)) for e in enc])  # right padding: (b, S)
            mask = torch.tensor([[1] * (offset + n) + [0] * (width - n) for n in lengths])  # (b, P+S)
            pos = (offset + torch.arange(width)).unsqueeze(0).expand(len(idx), -1)
            kwargs = {self._cache_kw: past} if past is not None else {}
            hidden = self.model.base_model(input_ids=ids, attention_mask=mask, position_ids=pos,
                                           use_cache=past is not None, **kwargs).last_hidden_state  # (b, S, H)
            # The LM head only at each row's last real token: (b, H) -> (b, V), not (b, S, V).
            last = self.model.get_output_embeddings()(hidden[torch.arange(len(idx)), torch.tensor(lengths) - 1])
            pair = torch.stack([last[:, self.true_id], last[:, self.false_id]], dim=-1).float()
            p_true = torch.softmax(pair, dim=-1)[:, 0]
            for j, i in enumerate(idx):
                p = float(p_true[j])
                out[i] = json.dumps({"explanation": f"constrained local judge: P(true)={p:.3f}",
                                     "criteria_met": p > 0.5})
        return out

    def _generate(self, items: list[tuple[list[dict], dict]]) -> list[str]:
        """Free generation for a batch (left padding); each row trimmed to its own ``max_tokens``."""
        texts = [self._chat_text(m) for m, _ in items]
        enc = self.tok(texts, add_special_tokens=False, return_tensors="pt", padding=True)
        max_new = max(int(p.get("max_tokens") or 256) for _, p in items)
        temperature = max(float(p.get("temperature") or 0.0) for _, p in items)
        kwargs: dict[str, Any] = {"do_sample": temperature > 0}
        if temperature > 0:
            kwargs["temperature"] = temperature
        gen = self.model.generate(**enc, max_new_tokens=max_new, pad_token_id=self.tok.pad_token_id, **kwargs)
        new = gen[:, enc["input_ids"].shape[1]:]
        return [self.tok.decode(row[: int(p.get("max_tokens") or 256)], skip_special_tokens=True).strip()
                for row, (_, p) in zip(new, items, strict=True)]

    def close(self) -> None:
        """Release resources (the server calls it on stop)."""
        if self._worker is not None:
            self._worker.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)
