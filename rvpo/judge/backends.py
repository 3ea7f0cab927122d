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
import math
import os
import re
from pathlib import Path
from typing import Any

from rvpo.model.loading import EMBEDDED_MODELS, ModelNotFoundError, prepare_tokenizer, resolve_model
from rvpo.model.policy import load_policy, policy_folder
from rvpo.model.precision import resolve_cached

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


def verdict_completion(p_true: float, logprobs: bool) -> str | tuple[str, list[dict]]:
    """The constrained answer for ``P(true) = p_true``: the verdict JSON (met iff ``p_true > 0.5``), and with
    ``logprobs`` its OpenAI ``logprobs.content`` (three pieces: the text up to ``"criteria_met":``, the
    verdict token `` true``/`` false`` with both alternatives' log-probabilities, the closing brace).

    >>> verdict_completion(0.25, False)
    '{"explanation": "constrained local judge: P(true)=0.250", "criteria_met": false}'
    """
    text = json.dumps({"explanation": f"constrained local judge: P(true)={p_true:.3f}", "criteria_met": p_true > 0.5})
    if not logprobs:
        return text
    lp = {" true": math.log(max(p_true, 1e-12)), " false": math.log(max(1.0 - p_true, 1e-12))}
    chosen = " true" if p_true > 0.5 else " false"
    head = text[:text.rindex('"criteria_met":') + len('"criteria_met":')]
    pieces = [{"token": head, "logprob": 0.0, "top_logprobs": []},
              {"token": chosen, "logprob": lp[chosen],
               "top_logprobs": [{"token": t, "logprob": v} for t, v in lp.items()]},
              {"token": text[len(head) + len(chosen):], "logprob": 0.0, "top_logprobs": []}]
    assert "".join(d["token"] for d in pieces) == text
    return text, pieces


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


def judge_model_problem(model: str | None) -> str | None:
    """Why ``model`` cannot be a local judge model (a sentence naming the path), or ``None`` if it can.

    Accepted: the embedded name (``smollm2-135m-instruct``), a model folder (``config.json``), a
    run/checkpoint folder :func:`rvpo.model.policy.load_policy` reads, a ``.gguf`` file, or a hub id
    (``org/name``, loaded only with a network).
    """
    if model is None or str(model).strip().lower() in EMBEDDED_MODELS:
        return None
    path = Path(os.path.expanduser(str(model)))
    if str(model).lower().endswith(".gguf"):
        return None if path.is_file() else f"no such GGUF file {str(model)!r}"
    if path.is_dir():
        try:
            policy_folder(path)
        except FileNotFoundError:
            return (f"{str(model)!r} is a folder but holds no model (config.json), LoRA adapter, final/ or "
                    "checkpoint; expected a model folder, a .gguf file or 'smollm2-135m-instruct'")
        return None
    if path.exists():
        return f"{str(model)!r} is a file but not a .gguf model; expected a model folder or a .gguf file"
    if str(model).startswith(("/", ".", "~")) or str(model).count("/") > 1:
        return f"no such model folder or file {str(model)!r}"
    try:
        resolve_model(str(model))
    except ModelNotFoundError as e:
        return str(e)
    return None


def load_judge_model(model: str | None, precision: str = "auto") -> tuple[Any, Any]:
    """``(model, tokenizer)`` of a local judge: a ``.gguf`` file (dequantised by transformers, which needs the
    ``gguf`` package) or anything :func:`rvpo.model.policy.load_policy` loads. Errors name the path."""
    problem = judge_model_problem(model)
    if problem:
        raise FileNotFoundError(f"judge model: {problem}")
    if model is not None and str(model).lower().endswith(".gguf"):
        from transformers import AutoModelForCausalLM, AutoTokenizer  # deferred: optional dependency (rvpo[trl])

        path = Path(os.path.expanduser(str(model)))
        dtype = resolve_cached(precision, "cpu").dtype
        try:
            tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
            lm = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=dtype)
        except Exception as e:  # an unsupported architecture or a damaged file: say which file
            raise OSError(f"judge model: cannot load GGUF file {str(model)!r}: {type(e).__name__}: {e}") from None
        prepare_tokenizer(tok)
        lm.config.pad_token_id = tok.pad_token_id
        return lm, tok
    return load_policy(model, precision=precision)


def _share_key(text: str) -> str:
    """Requests with equal keys share a prefix: the user message up to the rubric item (the transcript)."""
    cut = text.rfind("\n\nRubric item:")
    return text[:cut] if cut > 0 else text


class ModelBackend:
    """A local transformers causal LM with dynamic batching (one model call at a time)."""

    name = "model"
    JSON_PREFIX = '{"criteria_met":'

    def __init__(self, model: str | None = None, max_batch: int = 8, batch_wait_s: float = 0.02,
                 model_and_tokenizer: tuple[Any, Any] | None = None, precision: str = "auto",
                 share_prefix: bool = True):
        import torch  # deferred: torch (start-up time: the rule and echo backends need none)

        self.torch = torch
        # precision: auto | fp32 | bf16, as everywhere (rvpo.model.precision); bf16 where the CPU has bf16 units
        self.model, self.tok = model_and_tokenizer or load_judge_model(model, precision=precision)
        self.model.eval()
        self.max_batch, self.batch_wait_s = max_batch, batch_wait_s
        self.share_prefix = share_prefix
        ids = [self.tok.encode(w, add_special_tokens=False)[0] for w in (" true", " false")]
        self.true_id, self.false_id = ids
        params = inspect.signature(self.model.base_model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"  # renamed in transformers 5.x
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="judge-model")
        self._prefix_cache: dict[str, tuple[str, int, Any]] = {}
        self.batch_sizes: list[int] = []

    async def complete(self, messages: list[dict], params: dict[str, Any]) -> Any:
        """The assistant text for one chat request (with ``params["logprobs"]`` in JSON mode: ``(text, logprobs)``)."""
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

    def _run_batch(self, items: list[tuple[list[dict], dict]]) -> list[Any]:
        out: list[Any] = [None] * len(items)
        json_idx = [i for i, (_, p) in enumerate(items) if p.get("json_mode")]
        free_idx = [i for i, (_, p) in enumerate(items) if not p.get("json_mode")]
        with self.torch.inference_mode():
            if json_idx:
                for i, p in zip(json_idx, self._constrained([items[i][0] for i in json_idx]), strict=True):
                    out[i] = verdict_completion(p, bool(items[i][1].get("logprobs")))
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

    def _constrained(self, batch: list[list[dict]]) -> list[float]:
        """``P(true)`` over `` true`` / `` false`` at the next token after a forced ``{"criteria_met":``, per request.

        Requests are grouped by system prompt (its KV cache is computed once per process). With
        ``share_prefix`` (the default), requests whose user messages agree up to ``Rubric item:`` (the
        criteria of one graded transcript) also share that transcript: it runs once per group and only
        each criterion's tail runs per request (:meth:`_shared_forward`); else every request runs its
        whole user message (:meth:`_flat_forward`, kept for the benchmark and the equivalence test).
        """
        groups: dict[str | None, list[int]] = {}
        for i, msgs in enumerate(batch):
            system = msgs[0]["content"] if msgs and msgs[0].get("role") == "system" else None
            groups.setdefault(system, []).append(i)
        out: list[float] = [0.0] * len(batch)
        for system, idx in groups.items():
            texts = [self._chat_text(batch[i]) + self.JSON_PREFIX for i in idx]
            cache, offset = None, 0
            if system is not None:
                prefix_text, n_prefix, prefix_cache = self._prefix(system)
                if all(t.startswith(prefix_text) for t in texts):
                    texts = [t[len(prefix_text):] for t in texts]
                    cache, offset = prefix_cache, n_prefix
            enc = [self.tok(t, add_special_tokens=False)["input_ids"] for t in texts]
            forward = self._shared_forward if self.share_prefix else self._flat_forward
            logits = forward(enc, [_share_key(t) for t in texts], cache, offset)  # (b, 2)
            p_true = self.torch.softmax(logits.float(), dim=-1)[:, 0]
            for j, i in enumerate(idx):
                out[i] = float(p_true[j])
        return out

    def _past(self, cache: Any, rows: int) -> Any:
        """A private copy of the system prompt's KV cache, repeated for ``rows`` rows (None: no cache)."""
        if cache is None:
            return None
        past = copy.deepcopy(cache)
        past.batch_repeat_interleave(rows)
        return past

    def _forward_rows(self, ids: list[list[int]], past: Any, mask_head: Any, starts: list[int]) -> tuple[Any, Any]:
        """One forward of right-padded rows ``ids`` after ``past``; returns ``(hidden (b, S, H), lengths)``.

        ``mask_head``: ``(b, K)`` attention mask of the ``K`` cached positions (None when no cache);
        ``starts[r]``: the position id of row ``r``'s first token.
        """
        torch = self.torch
        lengths = torch.tensor([len(e) for e in ids])
        width = int(lengths.max())
        pad = self.tok.pad_token_id or 0
        x = torch.tensor([e + [pad] * (width - len(e)) for e in ids])  # (b, S)
        mask = (torch.arange(width).unsqueeze(0) < lengths.unsqueeze(1)).long()  # (b, S)
        if mask_head is not None:
            mask = torch.cat([mask_head, mask], dim=1)  # (b, K + S)
        pos = torch.tensor(starts).unsqueeze(1) + torch.arange(width).unsqueeze(0)  # (b, S)
        kwargs = {self._cache_kw: past} if past is not None else {}
        hidden = self.model.base_model(input_ids=x, attention_mask=mask, position_ids=pos, use_cache=True,
                                       **kwargs).last_hidden_state
        return hidden, lengths

    def _verdict_logits(self, hidden: Any, lengths: Any) -> Any:
        """``(b, 2)`` logits of `` true`` / `` false``: the LM head only at each row's last real token."""
        torch = self.torch
        last = self.model.get_output_embeddings()(hidden[torch.arange(hidden.shape[0]), lengths - 1])  # (b, V)
        return torch.stack([last[:, self.true_id], last[:, self.false_id]], dim=-1)

    def _flat_forward(self, enc: list[list[int]], keys: list[str], cache: Any, offset: int) -> Any:
        """Every request's whole text after the system prompt in one batch: ``(b, 2)`` logits."""
        b = len(enc)
        head = self.torch.ones(b, offset, dtype=self.torch.long) if cache is not None else None
        hidden, lengths = self._forward_rows(enc, self._past(cache, b), head, [offset] * b)
        return self._verdict_logits(hidden, lengths)

    def _shared_forward(self, enc: list[list[int]], keys: list[str], cache: Any, offset: int) -> Any:
        """Shared transcripts run once: ``(b, 2)`` logits, equal to :meth:`_flat_forward`'s up to rounding.

        One forward, one row per share group (requests with equal ``keys``): the group's longest common
        token prefix (at least one token left per request), then every request's remaining tokens in turn.
        A ``(g, 1, S, P + S)`` attention mask lets the prefix attend causally to itself and each tail to the
        prefix and causally to itself only, with position ids that restart after the prefix, so every tail
        sees exactly what it would see alone. No KV cache is copied per criterion: the rows are the groups.
        """
        torch = self.torch
        impl = getattr(self.model.config, "_attn_implementation", None)
        if impl not in ("sdpa", "eager"):  # other kernels take no custom 4D mask
            return self._flat_forward(enc, keys, cache, offset)
        order: dict[str, list[int]] = {}
        for r, k in enumerate(keys):
            order.setdefault(k, []).append(r)
        rows, segs, pos = [], [], []
        last: list[tuple[int, int]] = [(0, 0)] * len(enc)  # request -> (group row, index of its last token)
        for gi, members in enumerate(order.values()):
            first, n = enc[members[0]], min(len(enc[r]) for r in members) - 1
            lcp = 0
            while lcp < n and all(enc[r][lcp] == first[lcp] for r in members):
                lcp += 1
            row, seg, p = list(first[:lcp]), [0] * lcp, list(range(lcp))
            for j, r in enumerate(members, start=1):
                tail = enc[r][lcp:]
                row += tail
                seg += [j] * len(tail)
                p += range(lcp, lcp + len(tail))
                last[r] = (gi, len(row) - 1)
            rows.append(row)
            segs.append(seg)
            pos.append(p)
        width, g = max(len(r) for r in rows), len(rows)
        pad = self.tok.pad_token_id or 0
        x = torch.tensor([r + [pad] * (width - len(r)) for r in rows])  # (g, S)
        seg = torch.tensor([s + [-1] * (width - len(s)) for s in segs])  # (g, S): 0 prefix, j tail j, -1 pad
        position = torch.tensor([p + [0] * (width - len(p)) for p in pos]) + offset  # (g, S)
        sq, sk = seg.unsqueeze(2), seg.unsqueeze(1)  # (g, S, 1), (g, 1, S)
        causal = torch.ones(width, width, dtype=torch.bool).tril()  # (S, S)
        allowed = causal & (sk >= 0) & ((sk == 0) | (sk == sq))  # (g, S, S)
        allowed |= torch.eye(width, dtype=torch.bool) & (sq < 0)  # a padding query sees itself: no empty row
        if cache is not None:
            allowed = torch.cat([torch.ones(g, width, offset, dtype=torch.bool), allowed], dim=2)  # (g, S, P + S)
        mask = allowed.unsqueeze(1)  # (g, 1, S, P + S)
        if impl == "eager":  # additive mask
            dtype = next(self.model.parameters()).dtype
            mask = torch.zeros(mask.shape, dtype=dtype).masked_fill(~mask, torch.finfo(dtype).min)
        past = self._past(cache, g)
        kwargs = {self._cache_kw: past} if past is not None else {}
        hidden = self.model.base_model(input_ids=x, attention_mask=mask, position_ids=position, use_cache=past is not None,
                                       **kwargs).last_hidden_state  # (g, S, H)
        index = torch.tensor(last)  # (b, 2)
        picked = hidden[index[:, 0], index[:, 1]]  # (b, H)
        return self._verdict_logits(picked.unsqueeze(1), torch.ones(len(enc), dtype=torch.long))

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
