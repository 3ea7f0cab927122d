"""The model backend shares each transcript's prefix across its criteria: same P(true) as a plain forward,
and the soft verdict (p_met) reaches the client through the server's logprobs."""

from __future__ import annotations

import pytest

from judge_server_fixture import judge_config, judge_server
from rvpo.judge import JudgeClient, JudgeRequest, render_judge_messages

CRITERIA = ["Advises giving fluids.", "Mentions checking the temperature.", "Says when to see a doctor.",
            "Gives a paracetamol dose by weight.", "Recommends antibiotics.", "Uses plain language."]


def requests() -> list[JudgeRequest]:
    out = []
    for answer in ("Give fluids and check the temperature every four hours.", "Rest.", "See a doctor today."):
        conv = [{"role": "user", "content": "My child has a fever."}, {"role": "assistant", "content": answer}]
        out += [JudgeRequest(conv, c, -3 if "antibiotics" in c else 5) for c in CRITERIA]
    return out


def test_criteria_of_one_transcript_share_its_prefix_and_get_the_plain_forward_answer(tiny_llama, smollm2_tokenizer):
    import torch

    from rvpo.judge.backends import ModelBackend

    backend = ModelBackend(model_and_tokenizer=(tiny_llama, smollm2_tokenizer))
    msgs = [render_judge_messages(r.conversation, r.criterion, r.points) for r in requests()]
    user = [m[1]["content"] for m in msgs]
    assert user[0].split("Rubric item:")[0] == user[1].split("Rubric item:")[0]  # the nonce ignores the criterion
    with torch.inference_mode():
        shared = backend._constrained(msgs)
        tiny_llama.set_attn_implementation("eager")  # the additive-mask path
        try:
            shared_eager = backend._constrained(msgs)
        finally:
            tiny_llama.set_attn_implementation("sdpa")
        backend.share_prefix = False
        flat = backend._constrained(msgs)
        plain = []
        for m in msgs:
            ids = smollm2_tokenizer(backend._chat_text(m) + backend.JSON_PREFIX, add_special_tokens=False,
                                    return_tensors="pt")["input_ids"]
            last = tiny_llama(input_ids=ids).logits[0, -1]
            plain.append(torch.softmax(torch.stack([last[backend.true_id], last[backend.false_id]]), 0)[0].item())
    assert shared == pytest.approx(plain, abs=1e-4) and flat == pytest.approx(plain, abs=1e-4)
    assert shared_eager == pytest.approx(plain, abs=1e-4)
    with torch.inference_mode():  # no system message: no cached prefix, the tree forward starts at position 0
        backend.share_prefix = True
        bare = backend._constrained([m[1:] for m in msgs])
        backend.share_prefix = False
        assert bare == pytest.approx(backend._constrained([m[1:] for m in msgs]), abs=1e-4)
    assert len(set(round(p, 6) for p in shared)) > 1  # not a constant: the rows are really different


def test_model_backend_soft_verdicts_over_http(tiny_llama, smollm2_tokenizer):
    from rvpo.judge.backends import ModelBackend

    backend = ModelBackend(model_and_tokenizer=(tiny_llama, smollm2_tokenizer), max_batch=18, batch_wait_s=0.05)
    reqs = requests()
    with judge_server(backend) as srv:
        soft = JudgeClient(judge_config(srv.url, None, model="tiny", json_mode=True, logprobs=True, timeout_s=300,
                                        concurrency=18)).judge_many(reqs)
        hard = JudgeClient(judge_config(srv.url, None, model="tiny", json_mode=True, timeout_s=300)).judge_many(reqs)
    assert all(v.source == "soft" for v in soft) and all(v.source == "hard" for v in hard)
    assert [v.criteria_met for v in soft] == [v.criteria_met for v in hard] == [v.p_met > 0.5 for v in soft]
    for v in soft:  # the explanation reports the same probability the logprobs carry
        assert f"P(true)={v.p_met:.3f}" in v.explanation
