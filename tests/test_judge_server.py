"""The local judge server: routes, faults, the CLI, dynamic batching, and a real SmolLM2 judge."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from judge_server_fixture import judge_config, judge_server, rubric_requests, server_stats, spawn_judge_server
from rvpo.judge import JudgeClient, JudgeConfig, parse_verdict, render_judge_messages
from rvpo.judge.faults import FaultInjector, parse_kinds


def test_routes_and_errors():
    with judge_server("rule", model_name="my-judge") as srv:
        models = httpx.get(srv.url + "/models").json()
        assert models["object"] == "list" and models["data"][0]["id"] == "my-judge"
        assert httpx.get(srv.url + "/nope").status_code == 404
        assert httpx.get(srv.url + "/chat/completions").status_code == 405
        bad = httpx.post(srv.url + "/chat/completions", content=b"{not json")
        assert bad.status_code == 400 and "messages" in bad.json()["error"]["message"]
        msgs = render_judge_messages([{"role": "assistant", "content": "drink fluids"}], 'Says "fluids".', 1)
        r = httpx.post(srv.url + "/chat/completions", json={"model": "x", "messages": msgs}).json()
        assert r["object"] == "chat.completion" and r["model"] == "x"
        assert parse_verdict(r["choices"][0]["message"]["content"]).criteria_met is True
        assert srv.stats()["statuses"] == {"200": 2, "404": 1, "405": 1, "400": 1}


def _raw(url: str, data: bytes) -> bytes:
    import socket

    host, port = url.split("//")[1].split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_bad_framing_gets_an_error_and_the_server_survives():
    with judge_server("rule") as srv:
        assert _raw(srv.url, b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: x\r\n\r\n").startswith(
            b"HTTP/1.1 400")
        assert _raw(srv.url, b"POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                    ).startswith(b"HTTP/1.1 411")
        assert _raw(srv.url, b"GARBAGE\r\n\r\n").startswith(b"HTTP/1.1 400")
        assert _raw(srv.url, b"GET /v1/x HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n").startswith(b"HTTP/1.1 400")
        assert httpx.get(srv.url + "/models").status_code == 200


def test_fault_draws_are_seeded_and_follow_the_rate():
    injectors = [FaultInjector(rate=0.3, seed=s) for s in (7, 7, 8)]
    seqs = [[inj.draw() for _ in range(400)] for inj in injectors]
    assert seqs[0] == seqs[1] != seqs[2]
    rate = sum(k is not None for k in seqs[0]) / 400
    assert 0.22 < rate < 0.38 and set(seqs[0]) - {None} <= set(parse_kinds("500,429,timeout,slow,malformed,badbody"))
    scripted = FaultInjector(script=["ok", "500", "malformed"])
    assert [scripted.draw() for _ in range(4)] == [None, "500", "malformed", None]
    assert injectors[0].counts["ok"] == seqs[0].count(None)
    with pytest.raises(ValueError, match="fault kinds"):
        parse_kinds("500,oops")


def test_cli_server_with_faults_over_real_http(tmp_path):
    # The real `rvpo judge serve` process: 50% faults; every request ends as a verdict or a counted abstention.
    with spawn_judge_server("--backend", "rule", "--fault-rate", "0.5", "--fault-kinds", "500,429,malformed,slow",
                            "--slow", "0.05", "--seed", "3", timeout_s=120) as url:
        # concurrency 1: arrival order, hence the seeded fault sequence and the outcome, is deterministic
        client = JudgeClient(judge_config(url, tmp_path, max_retries=1, max_reasks=1, concurrency=1))
        out = client.judge_detailed(rubric_requests(20))
        st = client.stats.as_dict()
        assert len(out) == 20 and st["abstentions"] == sum(o.verdict is None for o in out) > 0
        assert st["retries"] > 0 and st["reasks"] > 0
        assert set(st["failures"]) <= {"http_500", "http_429", "malformed_verdict"}
        served = server_stats(url)
        assert served["requests"] == st["calls"] and served["faults"]["ok"] < served["requests"]


def test_cli_rejects_bad_options(capsys):
    from rvpo.cli import main

    assert main(["judge", "serve", "--backend", "rule", "--fault-kinds", "500,nope"]) == 2
    assert "--fault-kinds" in capsys.readouterr().err
    assert main(["judge", "serve", "--backend", "model", "--model", "/no/such/folder"]) == 2
    assert "/no/such/folder" in capsys.readouterr().err


def test_model_backend_batches_and_prefix_cache_match_a_plain_forward(tiny_llama, smollm2_tokenizer):
    # A random 2-layer Llama: the constrained verdict from (shared system KV + batched, right-padded
    # suffixes) must equal a plain full-prompt forward of each request alone.
    import torch

    from rvpo.judge.backends import ModelBackend

    backend = ModelBackend(model_and_tokenizer=(tiny_llama, smollm2_tokenizer), max_batch=8, batch_wait_s=0.05)
    reqs = rubric_requests(5)
    msgs = [render_judge_messages(r.conversation, r.criterion, r.points) for r in reqs]
    with judge_server(backend) as srv:
        client = JudgeClient(judge_config(srv.url, None, model="tiny", json_mode=True))
        verdicts = client.judge_many(reqs)
        batch_sizes = srv.stats()["batch_sizes"]
        assert all(v is not None for v in verdicts) and max(batch_sizes) > 1 and sum(batch_sizes) == 5
        # Free generation (no JSON mode): a random model writes no verdict -> re-asks, then abstentions.
        free = JudgeClient(judge_config(srv.url, None, model="tiny", max_tokens=4, max_reasks=1))
        out = free.judge_detailed(reqs[:3])
        assert [o.reason for o in out] == ["malformed_verdict"] * 3
        assert free.stats.reasks == 3 and free.stats.calls == 6
    with torch.inference_mode():
        for m, v in zip(msgs, verdicts, strict=True):
            text = backend._chat_text(m) + backend.JSON_PREFIX
            ids = smollm2_tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
            last = tiny_llama(input_ids=ids).logits[0, -1]
            p = torch.softmax(torch.stack([last[backend.true_id], last[backend.false_id]]), 0)[0].item()
            assert v.criteria_met == (p > 0.5) and f"P(true)={p:.3f}" in v.explanation


@pytest.mark.slow
def test_real_smollm2_server_answers_judge_requests(smollm2_dir, tmp_path):
    """End to end: `rvpo judge serve` with the embedded SmolLM2, the client over HTTP, constrained JSON."""
    with spawn_judge_server("--backend", "model", "--model", smollm2_dir, timeout_s=300) as url:
        assert httpx.get(url + "/models").json()["data"][0]["id"] == smollm2_dir
        cfg = JudgeConfig(base_url=url, model="smollm2", json_mode=True, cache_path=str(tmp_path / "j.sqlite"),
                          timeout_s=300, concurrency=2)
        client = JudgeClient(cfg)
        out = asyncio.run(client.ajudge_many(rubric_requests(2)))
        assert all(v is not None and isinstance(v.criteria_met, bool) for v in out)
        assert client.stats.calls == 2 and client.stats.abstentions == 0
        assert json.loads(out[0].to_json())["explanation"].startswith("constrained local judge")
